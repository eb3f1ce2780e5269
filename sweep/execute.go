package sweep

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/lock"
	"github.com/regsweep/regsweep/storage"
)

// GuardError means the plan tripped safety guards and was not executed.
type GuardError struct{ Guards []Guard }

func (e *GuardError) Error() string {
	var parts []string
	for _, g := range e.Guards {
		parts = append(parts, g.Name+": "+g.Message)
	}
	return "refusing to delete (override with --force only if you are sure): " + strings.Join(parts, "; ")
}

// ErrIncomplete means some deletions failed; what failed is kept and a
// later run retries it.
var ErrIncomplete = errors.New("sweep incomplete")

// Result counts what a sweep did, by item kind.
type Result struct {
	Deleted    map[string]int `json:"deleted"`
	NotFound   map[string]int `json:"not_found"`
	Failed     map[string]int `json:"failed"`
	FreedBytes int64          `json:"freed_bytes"`
	// Kept counts, by kind, the items a check just before their batch
	// took out of the plan (ExecOptions.CheckBatch).
	Kept   map[string]int `json:"kept,omitempty"`
	Errors []string       `json:"errors"`
	// RemovedDirectories counts the directories the deletions left empty
	// and the run removed (filesystem; 0 on object stores).
	RemovedDirectories int `json:"removed_directories"`

	goneKeys map[string]bool // blob digests deleted or found gone
}

// ExecOptions tune execution.
type ExecOptions struct {
	Force bool
	// BatchSize is how many keys go to one Delete call (the driver splits
	// further if its store needs).
	BatchSize   int
	Concurrency int
	Log         *slog.Logger
	// BeforePhase, if set, runs before each phase (tests use it to stop a
	// run between phases).
	BeforePhase func(phase int) error
	// BeforeBlobs, if set, runs after the links are gone (also when no
	// blob is planned) and before any blob is: gc re-lists the repository
	// tree there, rechecks the rest of the plan and heals, shrinking the
	// window for concurrent pushes.
	BeforeBlobs func(ctx context.Context, p *Plan) error
	// OnItem, if set, is told each attempted deletion's result (nil,
	// not-found or the error): Harbor mode updates its rows from it.
	OnItem func(it Item, err error)
	// CheckBatch, if set, runs just before each batch of keys is deleted
	// and returns the items of the batch still to delete (a subset, in
	// order): a targeted check (a HEAD, a database row) that is cheap per
	// batch shrinks the window a whole recheck leaves. The items it leaves
	// out are kept and counted in Result.Kept. An error ends the run after
	// the batches in flight, as a failed phase does. Batches are checked
	// concurrently, as they are deleted.
	CheckBatch func(ctx context.Context, phase int, batch []Item) ([]Item, error)
}

const maxReportedErrors = 100

// Execute deletes the plan's items, phase by phase, under a held lock. A
// phase with failed deletions ends the run after that phase: what a failed
// link deletion keeps must keep its blob, so no later phase may run. The
// next run retries.
func (p *Plan) Execute(ctx context.Context, d storage.Driver, held *lock.Held, o ExecOptions) (*Result, error) {
	if held == nil {
		return nil, errors.New("sweep needs a held lock")
	}
	if len(p.Guards) > 0 && !o.Force {
		return nil, &GuardError{Guards: p.Guards}
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 1000
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	r := &Result{Deleted: map[string]int{}, NotFound: map[string]int{}, Failed: map[string]int{}, Kept: map[string]int{}, Errors: []string{}}
	var mu sync.Mutex
	r.goneKeys = map[string]bool{}
	dirs, hasDirs := storage.DirRemoverOf(d)
	var phaseGone []string // keys of this phase deleted or found gone, where directories stay behind
	record := func(it Item, err error) {
		if o.OnItem != nil {
			o.OnItem(it, err)
		}
		mu.Lock()
		defer mu.Unlock()
		if it.Kind == KindBlob && (err == nil || storage.IsNotFound(err)) {
			r.goneKeys[it.Digest.String()] = true
		}
		if hasDirs && (err == nil || storage.IsNotFound(err)) {
			phaseGone = append(phaseGone, it.Key)
		}
		switch {
		case err == nil:
			r.Deleted[it.Kind]++
			if freesBytes(it) {
				r.FreedBytes += it.Size
			}
		case storage.IsNotFound(err):
			r.NotFound[it.Kind]++
		default:
			r.Failed[it.Kind]++
			if len(r.Errors) < maxReportedErrors {
				r.Errors = append(r.Errors, fmt.Sprintf("%s %s: %v", it.Kind, it.Key, err))
			}
		}
	}
	maxPhase := 0
	for _, it := range p.Items {
		maxPhase = max(maxPhase, phase[it.Kind])
	}
	if o.BeforeBlobs != nil && maxPhase > 0 {
		// It runs after the links even when no blob is planned: gc's
		// recheck there writes again what a push during the link phase
		// needs.
		maxPhase = max(maxPhase, phase[KindBlob])
	}
	blobsGone := map[string]bool{} // digests whose blob this run deleted or found gone
	for ph := 0; ph <= maxPhase; ph++ {
		if ph == phase[KindBlob] && o.BeforeBlobs != nil {
			// Only what is left is rechecked: the links this run deleted
			// are not "gone" from the plan (they would leave its stats,
			// count as dropped, and their repository and signature items
			// would be dropped with them).
			var done []Item
			rest := make([]Item, 0, len(p.Items))
			for _, it := range p.Items {
				if phase[it.Kind] < ph {
					done = append(done, it)
				} else {
					rest = append(rest, it)
				}
			}
			p.Items = rest
			err := o.BeforeBlobs(ctx, p)
			p.Items = append(done, p.Items...)
			p.Stats = p.itemStats(p.Stats)
			if err != nil {
				return r, err
			}
		}
		var items []Item
		for _, it := range p.Items {
			if phase[it.Kind] != ph {
				continue
			}
			// A blob's segments go only after the blob did.
			if it.Kind == KindSegment && it.Digest != "" && !blobsGone[it.Digest.String()] {
				continue
			}
			items = append(items, it)
		}
		if len(items) == 0 {
			continue
		}
		if err := ctx.Err(); err != nil {
			return r, err
		}
		if o.BeforePhase != nil {
			if err := o.BeforePhase(ph); err != nil {
				return r, err
			}
		}
		o.Log.Info("sweeping", "phase", ph, "items", len(items))
		check := func(ctx context.Context, batch []Item) ([]Item, error) {
			if o.CheckBatch == nil {
				return batch, nil
			}
			keep, err := o.CheckBatch(ctx, ph, batch)
			if err != nil {
				return nil, err
			}
			mu.Lock()
			for _, it := range left(batch, keep) {
				r.Kept[it.Kind]++
			}
			mu.Unlock()
			return keep, nil
		}
		phaseGone = phaseGone[:0]
		if err := p.runPhase(ctx, d, items, o, check, record); err != nil {
			return r, err
		}
		if hasDirs {
			n, err := dirs.RemoveEmptyDirs(ctx, phaseGone, keepDir)
			r.RemovedDirectories += n
			if n > 0 {
				o.Log.Info("removed empty directories", "phase", ph, "directories", n)
			}
			if err != nil {
				if ctx.Err() != nil {
					return r, ctx.Err()
				}
				r.Failed["directory"]++
				if len(r.Errors) < maxReportedErrors {
					r.Errors = append(r.Errors, fmt.Sprintf("removing empty directories: %v", err))
				}
			}
		}
		failed := 0
		for _, n := range r.Failed {
			failed += n
		}
		if failed > 0 {
			return r, fmt.Errorf("%w: %d deletion(s) failed (first: %s); the run stopped after that phase, the next run retries", ErrIncomplete, failed, r.Errors[0])
		}
		if ph == phase[KindBlob] {
			mu.Lock()
			for k := range r.goneKeys {
				blobsGone[k] = true
			}
			mu.Unlock()
		}
	}
	return r, nil
}

// deleteTag deletes the tag whose current link is key: every key under
// the tag's directory (its index), then the current link, so that a run
// cut off in between leaves a tag the registry still serves, not one
// without a current link. On a store with real directories the emptied
// directory goes last: the registry lists a repository's tags by those
// directories, so one left behind is listed but answers 404 to a pull.
func deleteTag(ctx context.Context, d storage.Driver, key string) ([]storage.DeleteResult, error) {
	dir := strings.TrimSuffix(key, "current/link")
	var index []string
	err := d.Walk(ctx, dir, func(oi storage.ObjectInfo) error {
		if oi.Key != key {
			index = append(index, oi.Key)
		}
		return nil
	})
	if err != nil {
		return []storage.DeleteResult{{Key: key, Err: fmt.Errorf("listing the tag's index: %w", err)}}, nil
	}
	if len(index) > 0 {
		res, err := d.Delete(ctx, index)
		if err != nil {
			return nil, err
		}
		for _, r := range res {
			if r.Err != nil && !storage.IsNotFound(r.Err) {
				return []storage.DeleteResult{{Key: key, Err: fmt.Errorf("deleting %s of the tag: %w", r.Key, r.Err)}}, nil
			}
		}
	}
	res, err := d.Delete(ctx, []string{key})
	if err != nil || len(res) > 0 && res[0].Err != nil && !storage.IsNotFound(res[0].Err) {
		return res, err
	}
	// At once, not with the phase's directories: the window in which the
	// registry lists a tag it cannot serve is one call, not the phase.
	if dr, ok := storage.DirRemoverOf(d); ok {
		if _, err := dr.RemoveEmptyDirs(ctx, []string{dir}, keepDir); err != nil {
			return []storage.DeleteResult{{Key: key, Err: fmt.Errorf("removing the tag's emptied directory: %w", err)}}, nil
		}
	}
	return res, nil
}

// left is what of batch keep leaves out (keep is a subset of batch, in
// order).
func left(batch, keep []Item) []Item {
	var out []Item
	j := 0
	for _, it := range batch {
		if j < len(keep) && keep[j].Key == it.Key {
			j++
			continue
		}
		out = append(out, it)
	}
	return out
}

// checkFunc is ExecOptions.CheckBatch for one phase.
type checkFunc func(ctx context.Context, batch []Item) ([]Item, error)

func (p *Plan) runPhase(ctx context.Context, d storage.Driver, items []Item, o ExecOptions, check checkFunc, record func(Item, error)) error {
	var tags, plain, segments, multipart, repos []Item
	for _, it := range items {
		switch it.Kind {
		case KindTag:
			tags = append(tags, it)
		case KindSegment:
			segments = append(segments, it)
		case KindMultipartUpload:
			multipart = append(multipart, it)
		case KindRepository:
			repos = append(repos, it)
		default:
			plain = append(plain, it)
		}
	}
	// A tag is a directory of links: its index, then its current link,
	// deleted as one item; tags are deleted concurrently, one a call.
	one := o
	one.BatchSize = 1
	if err := deleteBatches(ctx, tags, one, check, func(ctx context.Context, keys []string) ([]storage.DeleteResult, error) {
		return deleteTag(ctx, d, keys[0])
	}, record); err != nil {
		return err
	}
	// An upload's startedat file goes after its other files: a run cut off
	// in between leaves the upload still dated, so the next run judges it
	// by when it started, not by the mtimes of what is left.
	var startedAt []Item
	rest := plain[:0:0]
	for _, it := range plain {
		if it.Kind == KindUploadFile && strings.HasSuffix(it.Key, "/startedat") {
			startedAt = append(startedAt, it)
		} else {
			rest = append(rest, it)
		}
	}
	if err := deleteBatches(ctx, rest, o, check, d.Delete, record); err != nil {
		return err
	}
	if err := deleteBatches(ctx, startedAt, o, check, d.Delete, record); err != nil {
		return err
	}
	if len(segments) > 0 {
		lo, ok := storage.LargeObjectsOf(d)
		if !ok {
			return fmt.Errorf("plan has Swift segments but storage %s has none", d.Name())
		}
		if err := deleteBatches(ctx, segments, o, check, lo.DeleteSegments, record); err != nil {
			return err
		}
	}
	if len(multipart) > 0 {
		mp, ok := storage.MultipartOf(d)
		if !ok {
			return fmt.Errorf("plan has multipart uploads but storage %s has none", d.Name())
		}
		multipart, err := check(ctx, multipart)
		if err != nil {
			return err
		}
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(o.Concurrency)
		for _, it := range multipart {
			g.Go(func() error {
				record(it, mp.AbortMultipartUpload(gctx, it.Key, it.UploadID))
				return nil
			})
		}
		g.Wait()
	}
	repos, err := check(ctx, repos)
	if err != nil {
		return err
	}
	// A repository is only its keys, already gone; on a filesystem its
	// directory goes with the phase's empty directories (Execute).
	for _, it := range repos {
		record(it, nil)
	}
	return ctx.Err()
}

// keepDir reports the directories the layout needs even when empty:
// everything down to blobs/<algorithm>/ and repositories/ itself, and
// all outside the blob and repository trees.
func keepDir(dir string) bool {
	if rest, ok := strings.CutPrefix(dir, layout.BlobsPrefix); ok {
		return strings.Count(rest, "/") <= 1
	}
	return dir == layout.RepositoriesPrefix || !strings.HasPrefix(dir, layout.RepositoriesPrefix)
}

func deleteBatches(ctx context.Context, items []Item, o ExecOptions, check checkFunc, del func(context.Context, []string) ([]storage.DeleteResult, error), record func(Item, error)) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.Concurrency)
	for start := 0; start < len(items); start += o.BatchSize {
		batch := items[start:min(start+o.BatchSize, len(items))]
		g.Go(func() error {
			batch, err := check(gctx, batch)
			if err != nil || len(batch) == 0 {
				return err
			}
			keys := make([]string, len(batch))
			for i, it := range batch {
				keys[i] = it.Key
			}
			res, err := del(gctx, keys)
			if err != nil {
				if gctx.Err() != nil {
					return gctx.Err()
				}
				for _, it := range batch {
					record(it, err)
				}
				return nil
			}
			failed := map[string]error{}
			for _, dr := range res {
				failed[dr.Key] = dr.Err
			}
			for _, it := range batch {
				record(it, failed[it.Key])
			}
			return nil
		})
	}
	return g.Wait()
}

// VerifyDangling stats the blob of every item planned because its blob is
// missing. One written since the walk began (a push uploaded it while the
// walk listed) takes the item out of the plan, and returns how many did.
// An older one means the walk missed it (a listing that came back short):
// nothing of this plan can be trusted.
func (p *Plan) VerifyDangling(ctx context.Context, d storage.Driver) (int, error) {
	drop := map[string]bool{}
	for _, it := range p.Items {
		if !strings.HasPrefix(it.Reason, "dangling") {
			continue
		}
		key := keyOf(blobSpec(it.Digest))
		oi, err := d.Stat(ctx, key)
		switch {
		case storage.IsNotFound(err):
		case err != nil:
			return 0, fmt.Errorf("checking that %s is missing: %w", key, err)
		case writtenSince(oi.ModTime, p.WalkStartedAt):
			drop[it.Key] = true
		default:
			return 0, fmt.Errorf("%w: blob %s (written %s) exists but the walk did not list it; refusing to delete %s",
				ErrWalkIncomplete, key, oi.ModTime.UTC().Format(time.RFC3339), it.Key)
		}
	}
	if len(drop) == 0 {
		return 0, nil
	}
	return p.Drop(func(it Item) bool { return drop[it.Key] || (it.Kind == KindRepository && p.repoLoses(it.Repo, drop)) }), nil
}

// repoLoses says whether an item of repo is among keys.
func (p *Plan) repoLoses(repo string, keys map[string]bool) bool {
	for _, it := range p.Items {
		if it.Repo == repo && keys[it.Key] {
			return true
		}
	}
	return false
}

// writtenSince says whether a storage mtime is too recent for a listing
// that began at since to have shown it. Stores keep whole seconds, so the
// second since began in counts. Without a time (a plan from an older
// regsweep) nothing is: every key a listing lacks is one it missed. A
// store whose clock is behind ours makes a new key look missed: the run
// then fails closed.
func writtenSince(mtime, since time.Time) bool {
	return !since.IsZero() && !mtime.Before(since.Truncate(time.Second))
}

// VerifyEmptyRepositories lists the manifests of each repository the
// plan removes whole, on its own: a store whose listing silently ended
// early would show a live repository as one with only layer links, and
// this listing of another prefix would show what the walk missed. A key
// written since the last listing of the tree began (since: a push into the
// repository) takes the repository's items out of the plan instead; it
// returns how many went.
func (p *Plan) VerifyEmptyRepositories(ctx context.Context, d storage.Driver, since time.Time) (int, error) {
	planned := make(map[string]bool, len(p.Items))
	tags := map[string]bool{} // current links of tag items
	for _, it := range p.Items {
		planned[it.Key] = true
		if it.Kind == KindTag {
			tags[it.Key] = true
		}
	}
	// A tag item deletes the tag's index links with its current link.
	inPlannedTag := func(key string) bool {
		l, err := layout.Parse(key)
		tl, ok := l.(layout.TagIndexLink)
		return err == nil && ok && tags[keyOf(tagCurrentSpec(tl.Repo, tl.Tag))]
	}
	filled := map[string]bool{}
	for _, it := range p.Items {
		if it.Kind != KindRepository {
			continue
		}
		prefix := layout.RepoPrefix(it.Repo) + "_manifests/"
		err := d.Walk(ctx, prefix, func(oi storage.ObjectInfo) error {
			switch {
			case planned[oi.Key]:
			case writtenSince(oi.ModTime, since):
				filled[it.Repo] = true
			case inPlannedTag(oi.Key):
			default:
				return fmt.Errorf("%w: %s exists but the walk did not list it; refusing to remove repository %s", ErrWalkIncomplete, oi.Key, it.Repo)
			}
			return nil
		})
		if err != nil {
			if errors.Is(err, ErrWalkIncomplete) {
				return 0, err
			}
			return 0, fmt.Errorf("listing %s to prove the repository empty: %w", prefix, err)
		}
	}
	if len(filled) == 0 {
		return 0, nil
	}
	// A push fills the repository: none of its items go this run. What the
	// new links need is not known here (the recheck before the blobs would
	// see them, unless the store hides them from every listing of the
	// tree), so no blob goes this run either: the next run collects them.
	return p.Drop(func(it Item) bool {
		return filled[it.Repo] || it.Kind == KindBlob || it.Kind == KindSegment
	}), nil
}

// ErrWalkIncomplete means storage holds what the walk did not list.
var ErrWalkIncomplete = errors.New("the walk missed objects")
