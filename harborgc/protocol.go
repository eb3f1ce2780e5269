package harborgc

import (
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
//  1. Prepare: blobs stuck in `deleting` are resolved, untagged artifacts
//     (with --delete-untagged) go to Harbor's trash by Harbor's own delete
//     path, so the database never names what storage is about to lose;
//  2. Claim, just before the first blob is deleted: every planned blob
//     with a row goes none/delete/deletefailed -> delete -> deleting by
//     compare-and-set; a row that loses (a push touched it) leaves the
//     plan, and so does a blob that gained a row since the snapshot;
//  3. Finish, after the sweep: rows of deleted blobs, artifact_blob and
//     trash rows of swept manifests go, quotas are recomputed, claimed
//     blobs whose deletion failed become deletefailed.
type Protocol struct {
	DB     *harbordb.DB
	Snap   *harbordb.Snapshot
	Live   *Liveness
	Window time.Duration
	Log    *slog.Logger

	mu       sync.Mutex
	claimed  map[digest.Digest]harbordb.Blob
	outcomes map[digest.Digest]error // blob digest -> its deletion's result
	swept    []harbordb.ManifestRef
	lines    []string
	Stats    Stats
}

// Stats are what the protocol did in the database.
type Stats struct {
	StuckReset      int `json:"stuck_reset"`
	StuckRemoved    int `json:"stuck_removed"`
	TrashedUntagged int `json:"trashed_untagged"`
	Claimed         int `json:"claimed"`
	LostRace        int `json:"lost_race"`
	NewRows         int `json:"gained_row"`
	DeletedBlobRows int `json:"deleted_blob_rows"`
	// FreedBytes is the size of blobs with rows this run removed from
	// storage (storage-only blobs count in the sweep's result).
	FreedBytes       int64 `json:"freed_bytes"`
	PurgedManifests  int   `json:"purged_manifests"`
	DeleteFailedRows int   `json:"deletefailed_rows"`
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
	reset, removed, err := p.DB.RecoverStuck(ctx, p.Window, inv.Blobs.Has)
	if err != nil {
		return err
	}
	p.Stats.StuckReset, p.Stats.StuckRemoved = reset, removed
	if reset+removed > 0 {
		p.logf("recovered %d blob(s) stuck in deleting: %d reset to none (still in storage), %d removed (data gone)", reset+removed, reset, removed)
	}
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
func (p *Protocol) Claim(ctx context.Context, plan *sweep.Plan) error {
	var rows []harbordb.Blob
	var rowless []digest.Digest
	for _, it := range plan.Items {
		if it.Kind != sweep.KindBlob {
			continue
		}
		if b, ok := p.Snap.Blobs[it.Digest]; ok {
			rows = append(rows, b)
		} else {
			rowless = append(rowless, it.Digest)
		}
	}
	drop := map[digest.Digest]bool{}
	// A blob that had no row may have gained one: a push registered it.
	if len(rowless) > 0 {
		now, err := p.DB.BlobRows(ctx, rowless)
		if err != nil {
			return err
		}
		for _, b := range now {
			drop[b.Digest] = true
		}
		p.Stats.NewRows = len(now)
	}
	claimed, lost, err := p.DB.ClaimBlobs(ctx, rows, p.Window)
	if err != nil {
		// Whatever was claimed before the error must not stay deleting.
		if rerr := p.DB.ReleaseFailed(context.WithoutCancel(ctx), claimed); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return err
	}
	p.mu.Lock()
	p.claimed = map[digest.Digest]harbordb.Blob{}
	for _, b := range claimed {
		p.claimed[b.Digest] = b
	}
	p.mu.Unlock()
	for _, b := range lost {
		drop[b.Digest] = true
	}
	p.Stats.Claimed, p.Stats.LostRace = len(claimed), len(lost)
	if n := plan.Drop(func(it sweep.Item) bool {
		return (it.Kind == sweep.KindBlob || it.Kind == sweep.KindSegment) && it.Digest != "" && drop[it.Digest]
	}); n > 0 {
		p.logf("%d blob(s) left the plan: a push touched their rows during the run", len(drop))
	}
	p.logf("%d blob(s) marked deleting, %d storage-only blob(s) without a row", len(claimed), len(rowless)-p.Stats.NewRows)
	return nil
}

// Record is sweep.ExecOptions.OnItem: it notes each deletion's result.
func (p *Protocol) Record(it sweep.Item, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch it.Kind {
	case sweep.KindBlob:
		if p.outcomes == nil {
			p.outcomes = map[digest.Digest]error{}
		}
		p.outcomes[it.Digest] = err
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
		err, tried := p.outcomes[d]
		switch {
		case tried && err == nil:
			deleted = append(deleted, b)
			freed = append(freed, b)
		case tried && storage.IsNotFound(err):
			deleted = append(deleted, b) // its data was already gone: it frees nothing
		default:
			failed = append(failed, b)
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
	_, err := p.DB.Finish(ctx, harbordb.Finish{DeletedBlobs: deleted, FreedBlobs: freed, SweptManifests: swept, AffectedProjects: projects})
	if err != nil {
		errs = append(errs, err)
	}
	p.Stats.DeletedBlobRows = len(deleted)
	for _, b := range freed {
		p.Stats.FreedBytes += b.Size
	}
	p.Stats.PurgedManifests = len(swept)
	p.logf("%d blob row(s) deleted, %d manifest(s) purged, quotas recomputed for %d project(s)", len(deleted), len(swept), len(projects))
	return errors.Join(errs...)
}
