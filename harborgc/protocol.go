package harborgc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/harbordb"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/sweep"
	"github.com/regsweep/regsweep/walker"
)

// Protocol runs one deleting gc inside Harbor's deletion protocol:
//
//  1. Prepare: blobs stuck in `deleting` whose data is still in storage
//     are reset, untagged artifacts (with --delete-untagged) go to Harbor's
//     trash by Harbor's own delete path, so the database never names what
//     storage is about to lose, project_blob rows no artifact of their
//     project uses are pruned, as Harbor's GC does, and garbage rows whose
//     data the walk did not find are removed (a run whose database side
//     failed leaves some);
//  2. CheckBatch, just before each batch of links: a link whose artifact
//     the database has now, or whose blob row a push touched, stays; so
//     does a storage-only blob that gained a row;
//  3. Claim, just before each batch of blobs is deleted: every blob of
//     the batch with a row goes none/delete/deletefailed -> delete ->
//     deleting by compare-and-set; a row that loses (a push touched it)
//     leaves the batch (and its segments stay with it), and so does a
//     blob that gained a row since the snapshot (CheckBatch);
//  4. Finish, after the sweep: rows of deleted blobs, artifact_blob and
//     trash rows of swept manifests go, quotas are recomputed, claimed
//     blobs whose deletion failed become deletefailed, and so do the rows
//     of deleted blobs when the database cannot delete them.
type Protocol struct {
	DB     *harbordb.DB
	Snap   *harbordb.Snapshot
	Live   *Liveness
	Window time.Duration
	Log    *slog.Logger

	mu       sync.Mutex
	claimed  map[digest.Digest]harbordb.Blob
	outcomes map[digest.Digest]blobOutcome // blob digest -> its deletion
	swept    []harbordb.ManifestRef
	// manifests holds the digests that revision links in storage name and
	// that have no blob row: a row-less blob deleted is counted as a
	// manifest when one of them.
	manifests map[digest.Digest]bool
	lines     []string
	Stats     Stats
}

type blobOutcome struct {
	size int64
	err  error
}

// Stats are what the protocol did in the database.
type Stats struct {
	StuckReset int `json:"stuck_reset"`
	// StuckRemoved counts rows in deleting whose data was gone, removed;
	// RemovedWithoutData the other garbage rows whose data was gone
	// (deletefailed, or none and older than the window).
	StuckRemoved       int `json:"stuck_removed"`
	RemovedWithoutData int `json:"removed_without_data"`
	TrashedUntagged    int `json:"trashed_untagged"`
	Claimed            int `json:"claimed"`
	LostRace           int `json:"lost_race"`
	NewRows            int `json:"gained_row"`
	DeletedBlobRows    int `json:"deleted_blob_rows"`
	// PrunedProjectBlobs counts project_blob rows no artifact of their
	// project used.
	PrunedProjectBlobs int64 `json:"pruned_project_blobs"`
	// KeptLinks counts links a check just before their batch kept.
	KeptLinks int `json:"kept_links"`
	// Harbor's GC history counts (saveGCRes): blobs deleted that are not
	// manifests, manifest blobs deleted, and the bytes removed from
	// storage, all of them with or without a row.
	PurgedBlobs     int   `json:"purged_blobs"`
	PurgedManifests int   `json:"purged_manifests"`
	FreedBytes      int64 `json:"freed_bytes"`
	// SweptRevisionLinks counts revision links deleted.
	SweptRevisionLinks int `json:"swept_revision_links"`
	DeleteFailedRows   int `json:"deletefailed_rows"`
}

// ErrArtifactChanged means an untagged artifact gained a tag or a parent
// between the snapshot and its trashing: the run deletes nothing.
var ErrArtifactChanged = errors.New("an untagged artifact changed during the run")

func (p *Protocol) logf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	p.mu.Lock()
	p.lines = append(p.lines, time.Now().UTC().Format(time.RFC3339)+" [INFO] "+line)
	p.mu.Unlock()
	if p.Log != nil {
		p.Log.Info(line)
	}
}

// JobLog is the run's log in the form Harbor's GC page shows.
func (p *Protocol) JobLog() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n") + "\n"
}

// Prepare runs before anything in storage is deleted.
func (p *Protocol) Prepare(ctx context.Context, inv *walker.Inventory) error {
	if err := p.DB.CheckCanClaim(ctx); err != nil {
		return err
	}
	reset, err := p.DB.RecoverStuck(ctx, p.Window, inv.Blobs.Has)
	if err != nil {
		return err
	}
	p.Stats.StuckReset = reset
	if reset > 0 {
		p.logf("reset %d blob(s) stuck in deleting to none: their data is still in storage", reset)
	}
	p.noteManifests(inv)
	if err := p.trashUntagged(ctx); err != nil {
		return err
	}
	n, projects, err := p.DB.PruneProjectBlobs(ctx, p.Window)
	if err != nil {
		return err
	}
	p.Stats.PrunedProjectBlobs = n
	if n > 0 {
		p.logf("removed %d project_blob row(s) no artifact of their project uses, in %d project(s)", n, len(projects))
	}
	return p.removeRowsWithoutData(ctx, inv)
}

// removeRowsWithoutData removes the garbage rows whose data the walk did
// not find, as Harbor's GC does; they count as Harbor counts a row it
// deletes (no bytes: storage lost nothing now).
func (p *Protocol) removeRowsWithoutData(ctx context.Context, inv *walker.Inventory) error {
	var gone []harbordb.Blob
	for d, b := range p.Snap.Blobs {
		if _, live := p.Live.live[d]; !live && !inv.Blobs.Has(d) {
			gone = append(gone, b)
		}
	}
	slices.SortFunc(gone, func(a, b harbordb.Blob) int { return cmp.Compare(a.ID, b.ID) })
	removed, err := p.DB.RemoveRowsWithoutData(ctx, gone, p.Window)
	if err != nil {
		return err
	}
	for _, b := range removed {
		if b.Status == harbordb.StatusDeleting {
			p.Stats.StuckRemoved++
		} else {
			p.Stats.RemovedWithoutData++
		}
		p.count(b.IsManifest(), 0)
	}
	if len(removed) > 0 {
		p.logf("removed %d blob row(s) whose data is gone from storage: %d stuck in deleting, %d other garbage", len(removed), p.Stats.StuckRemoved, p.Stats.RemovedWithoutData)
	}
	return nil
}

// noteManifests remembers which row-less blobs revision links name.
func (p *Protocol) noteManifests(inv *walker.Inventory) {
	p.manifests = map[digest.Digest]bool{}
	for _, r := range inv.Repositories {
		for d := range r.Revisions.All() {
			if _, row := p.Snap.Blobs[d]; !row {
				p.manifests[d] = true
			}
		}
	}
}

// trashUntagged moves --delete-untagged's artifacts to Harbor's trash.
func (p *Protocol) trashUntagged(ctx context.Context) error {
	untagged := p.Live.Untagged()
	if len(untagged) == 0 {
		return nil
	}
	trashed, err := p.DB.TrashArtifacts(ctx, untagged)
	if err != nil {
		return err
	}
	p.Stats.TrashedUntagged = len(trashed)
	done := map[int64]bool{}
	for _, a := range trashed {
		done[a.ID] = true
		p.logf("delete the untagged artifact: ProjectID:(%d)-RepositoryName(%s)-MediaType:(%s)-Digest:(%s)", a.ProjectID, a.Repo, a.ManifestMediaType, a.Digest)
	}
	// Trashed may hold more: the hard accessories Harbor deletes with their
	// subject (roots of this run: the next run collects them).
	skipped := 0
	for _, a := range untagged {
		if !done[a.ID] {
			skipped++
		}
	}
	if skipped > 0 {
		return fmt.Errorf("%w: %d of %d untagged artifact(s) gained a tag or a parent since the snapshot; nothing was deleted from storage, run gc again",
			ErrArtifactChanged, skipped, len(untagged))
	}
	return nil
}

// Claim is the plan hook run just before the first blob is deleted.
func (p *Protocol) Claim(ctx context.Context, batch []sweep.Item) ([]sweep.Item, error) {
	var rows []harbordb.Blob
	for _, it := range batch {
		if it.Kind != sweep.KindBlob {
			continue
		}
		if b, ok := p.Snap.Blobs[it.Digest]; ok {
			rows = append(rows, b)
		}
	}
	if len(rows) == 0 {
		return batch, nil
	}
	claimed, lost, err := p.DB.ClaimBlobs(ctx, rows, p.Window)
	if err != nil {
		// Whatever was claimed before the error must not stay deleting:
		// Harbor's push path refuses those digests.
		if rerr := p.DB.ReleaseFailed(context.WithoutCancel(ctx), claimed); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return nil, err
	}
	p.mu.Lock()
	if p.claimed == nil {
		p.claimed = map[digest.Digest]harbordb.Blob{}
	}
	for _, b := range claimed {
		p.claimed[b.Digest] = b
	}
	p.Stats.Claimed += len(claimed)
	p.Stats.LostRace += len(lost)
	p.mu.Unlock()
	drop := map[digest.Digest]bool{}
	for _, b := range lost {
		drop[b.Digest] = true
	}
	keep := batch[:0:0]
	for _, it := range batch {
		if it.Kind == sweep.KindBlob && drop[it.Digest] {
			continue
		}
		keep = append(keep, it)
	}
	if len(lost) > 0 {
		p.logf("%d blob(s) left the plan: a push touched their rows during the run", len(lost))
	}
	p.logf("%d blob(s) marked deleting", len(claimed))
	return keep, nil
}

// Record is sweep.ExecOptions.OnItem: it notes each deletion's result.
func (p *Protocol) Record(it sweep.Item, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch it.Kind {
	case sweep.KindBlob:
		if p.outcomes == nil {
			p.outcomes = map[digest.Digest]blobOutcome{}
		}
		p.outcomes[it.Digest] = blobOutcome{size: it.Size, err: err}
	case sweep.KindRevisionLink:
		if err == nil || storage.IsNotFound(err) {
			p.swept = append(p.swept, harbordb.ManifestRef{Repo: it.Repo, Digest: it.Digest})
		}
	}
}

// Finish brings the database in line with what the sweep did. It runs
// after a partial sweep too: claimed blobs that were not deleted become
// deletefailed (claimable by the next run), never stay deleting.
func (p *Protocol) Finish(ctx context.Context) error {
	p.mu.Lock()
	var deleted, freed, failed []harbordb.Blob
	for d, b := range p.claimed {
		out, tried := p.outcomes[d]
		switch {
		case tried && out.err == nil:
			deleted = append(deleted, b)
			freed = append(freed, b)
		case tried && storage.IsNotFound(out.err):
			deleted = append(deleted, b) // its data was already gone: it frees nothing
		default:
			failed = append(failed, b)
		}
	}
	// Harbor's counts, row-less blobs included: a claimed blob counts once
	// its row goes (as Harbor's does, even if its data was already gone:
	// below), a row-less one once its data did; bytes count only what
	// storage lost.
	for _, b := range freed {
		if !b.IsForeignLayer() {
			p.Stats.FreedBytes += b.Size
		}
	}
	for d, out := range p.outcomes {
		if _, claimed := p.claimed[d]; !claimed && out.err == nil {
			p.count(p.manifests[d], out.size)
		}
	}
	swept := slices.Clone(p.swept)
	p.mu.Unlock()

	var errs []error
	if len(failed) > 0 {
		if err := p.DB.ReleaseFailed(ctx, failed); err != nil {
			errs = append(errs, err)
		}
		p.Stats.DeleteFailedRows = len(failed)
		p.logf("%d claimed blob(s) were not deleted and are marked deletefailed", len(failed))
	}
	projects := make([]int64, 0, len(p.Snap.Projects))
	for id, pr := range p.Snap.Projects {
		if !pr.Deleted {
			projects = append(projects, id)
		}
	}
	slices.Sort(projects)
	st, err := p.DB.Finish(ctx, harbordb.Finish{DeletedBlobs: deleted, FreedBlobs: freed, SweptManifests: swept, AffectedProjects: projects})
	p.Stats.SweptRevisionLinks = len(swept)
	if err != nil {
		errs = append(errs, err)
		// The transaction rolled back: the rows of blobs storage lost are
		// still deleting, which makes Harbor refuse pushes of them. As
		// Harbor's GC does when it cannot delete a row, they become
		// deletefailed (a statement of its own); the next run removes them,
		// their data being gone (RemoveRowsWithoutData).
		if rerr := p.DB.ReleaseFailed(ctx, deleted); rerr != nil {
			errs = append(errs, rerr)
		} else if len(deleted) > 0 {
			p.Stats.DeleteFailedRows += len(deleted)
			p.logf("the database side failed: %d row(s) of blobs deleted from storage are marked deletefailed; the next run removes them", len(deleted))
		}
	} else {
		kept := map[int64]bool{}
		for _, b := range st.KeptBlobs {
			kept[b.ID] = true
		}
		for _, b := range deleted {
			if !kept[b.ID] {
				p.Stats.DeletedBlobRows++
				p.count(b.IsManifest(), 0)
			}
		}
		p.logf("%d blob row(s) deleted, %d revision link(s) swept, quotas recomputed for %d project(s)", p.Stats.DeletedBlobRows, len(swept), len(projects))
	}
	p.logf("%d blobs and %d manifests are actually deleted", p.Stats.PurgedBlobs, p.Stats.PurgedManifests)
	p.logf("The GC job actual frees up %d bytes space.", p.Stats.FreedBytes)
	return errors.Join(errs...)
}

// count adds one deleted blob to Harbor's counts.
func (p *Protocol) count(manifest bool, freed int64) {
	if manifest {
		p.Stats.PurgedManifests++
	} else {
		p.Stats.PurgedBlobs++
	}
	p.Stats.FreedBytes += freed
}

// CheckBatch is sweep.ExecOptions.CheckBatch: it asks the database about
// each batch just before it is deleted, and returns what may still go.
// Links (tag, revision, signature and layer links) stay when their
// repository has an artifact that is or references their digest, or when
// the digest's blob row is not as the snapshot saw it: Harbor's push path
// touches the row of every blob a client finds, before the registry
// answers, so a re-push that found these links present is seen here.
// Storage-only blobs stay when they gained a row.
func (p *Protocol) CheckBatch(ctx context.Context, _ int, batch []sweep.Item) ([]sweep.Item, error) {
	var links []harbordb.ManifestRef
	var linkAt []int
	var rowless []digest.Digest
	for i, it := range batch {
		switch d := linkTarget(it); {
		case d != "":
			links = append(links, harbordb.ManifestRef{Repo: it.Repo, Digest: d})
			linkAt = append(linkAt, i)
		case it.Kind == sweep.KindBlob:
			if _, row := p.Snap.Blobs[it.Digest]; !row {
				rowless = append(rowless, it.Digest)
			}
		}
	}
	drop := make([]bool, len(batch))
	if len(links) > 0 {
		inUse, err := p.DB.LinksInUse(ctx, links, p.Snap)
		if err != nil {
			return nil, err
		}
		n := 0
		for j, used := range inUse {
			if used {
				drop[linkAt[j]] = true
				n++
			}
		}
		if n > 0 {
			p.mu.Lock()
			p.Stats.KeptLinks += n
			p.mu.Unlock()
			p.logf("%d link(s) kept just before deletion: Harbor has their artifact now, or a push touched their blob", n)
		}
	}
	if len(rowless) > 0 {
		now, err := p.DB.BlobRows(ctx, rowless)
		if err != nil {
			return nil, err
		}
		registered := map[digest.Digest]bool{}
		for _, b := range now {
			registered[b.Digest] = true
		}
		for i, it := range batch {
			if it.Kind == sweep.KindBlob && registered[it.Digest] {
				drop[i] = true
			}
		}
		if len(now) > 0 {
			p.mu.Lock()
			p.Stats.NewRows += len(now)
			p.mu.Unlock()
			p.logf("%d storage-only blob(s) kept just before deletion: a push registered them", len(now))
		}
	}
	keep := make([]sweep.Item, 0, len(batch))
	for i, it := range batch {
		if !drop[i] {
			keep = append(keep, it)
		}
	}
	return keep, nil
}

// linkTarget is the digest a link item names in its repository, "" for
// what is not a link.
func linkTarget(it sweep.Item) digest.Digest {
	switch it.Kind {
	case sweep.KindSignatureLink:
		return it.Manifest
	case sweep.KindRevisionLink, sweep.KindTagIndexLink, sweep.KindTagCurrentLink, sweep.KindLayerLink:
		return it.Digest
	}
	return ""
}
