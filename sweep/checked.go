package sweep

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/regsweep/regsweep/lock"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/walker"
)

// CheckedOptions are what ExecuteChecked needs besides the plan.
type CheckedOptions struct {
	// Walk lists storage for the rechecks; RepositoriesOnly is set per
	// recheck.
	Walk walker.Options
	// Manifests answers the rechecks' questions about manifests.
	Manifests Manifests
	// BlobsToo re-lists the blobs too in the first recheck: a reviewed
	// plan may be hours old. The recheck before the blobs lists only the
	// repository tree, unless orphan segment sets are planned (their
	// owners would be blobs written since the walk).
	BlobsToo bool
	// StatLinks stats every planned link just before its batch is deleted
	// and keeps one rewritten since the plan (another mtime): on stores
	// where a stat is cheap (a filesystem) or where a listing may lag the
	// writes (Swift). A push that rewrites a revision link in place then
	// keeps it even if it lands after the recheck.
	StatLinks bool
	// AfterLinks, if set, runs once the links are gone, before the recheck
	// that precedes the blobs (tests land a push there).
	AfterLinks func(ctx context.Context) error
	// Guard, if set, judges the plan on the first recheck's walk, after the
	// recheck and before anything is deleted: sweep --plan recomputes its
	// guards there (Plan.FreshGuards). An error ends the run.
	Guard func(ctx context.Context, fresh *walker.Inventory, p *Plan) error
	Exec  ExecOptions
}

// maxRecheckWalks bounds the listings of the recheck before the blobs on
// a registry that keeps changing.
const maxRecheckWalks = 3

// mtimeSlack is how much older than a walk's start a link may look and
// still count as written since (S3 keeps whole seconds; a store's clock
// may be a little behind ours).
const mtimeSlack = 2 * time.Second

// ExecuteChecked runs a plan the way every deleting command does, and the
// only way tests should:
//
//  1. items planned because a blob is missing are proved so; one whose
//     blob was written since the walk leaves the plan, one whose blob is
//     older means the walk missed it (ErrWalkIncomplete);
//  2. storage is listed again and the plan rechecked; repositories still
//     to be removed whole are listed on their own (a key written since the
//     walk drops the repository, an older one is ErrWalkIncomplete);
//  3. the links are deleted (with StatLinks, each batch is stat'ed first);
//  4. the repository tree is listed again, until a listing finds no link
//     written since the previous one started (at most maxRecheckWalks),
//     the rest of the plan is rechecked against it, and every link this
//     run deleted that a link written since needs is written again: a push
//     that landed during the link phase loses nothing (its blobs are still
//     there). Then Exec.BeforeBlobs runs, and the blobs go.
//
// The stats add up both rechecks.
func (p *Plan) ExecuteChecked(ctx context.Context, d storage.Driver, held *lock.Held, o CheckedOptions) (*Result, *RecheckStats, error) {
	log := o.Exec.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	total := &RecheckStats{}
	if n, err := p.VerifyDangling(ctx, d); err != nil {
		return nil, nil, err
	} else if n > 0 {
		total.Dropped += n
		total.Changed += n
		log.Info("items planned as dangling left the plan: their blob was written since the walk", "items", n)
	}
	walk := func(ctx context.Context, blobs bool, n int) (*walker.Inventory, time.Time, error) {
		wo := o.Walk
		wo.RepositoriesOnly = !blobs
		started := time.Now()
		// The window for a concurrent push starts here, not when the
		// recheck ends: operators read the log to see it.
		log.Info("rechecking: listing storage again", "walk", n, "blobs", blobs)
		fresh, err := walker.Collect(ctx, d, wo)
		if err != nil {
			return nil, started, err
		}
		if g := WalkGuards(fresh); len(g) > 0 && !o.Exec.Force {
			return nil, started, &GuardError{Guards: g}
		}
		return fresh, started, nil
	}
	add := func(st RecheckStats) {
		total.Dropped += st.Dropped
		total.Gone += st.Gone
		total.Changed += st.Changed
		total.Protected += st.Protected
		total.Healed += st.Healed
		total.BlobsChecked = total.BlobsChecked || st.BlobsChecked
	}
	fresh, lastStart, err := walk(ctx, o.BlobsToo, 1)
	if err != nil {
		return nil, total, err
	}
	total.Walks++
	st, _ := p.recheck(fresh, o.BlobsToo, o.Manifests, nil, nil)
	add(st)
	log.Info("rechecked the plan against storage", "dropped", st.Dropped, "blobs_checked", o.BlobsToo)
	if o.Guard != nil {
		if err := o.Guard(ctx, fresh, p); err != nil {
			return nil, total, err
		}
	}
	fresh = nil
	// After the recheck, which drops a repository that a push has filled
	// since the plan: what is left to remove whole must be empty, or the
	// walks missed keys.
	if n, err := p.VerifyEmptyRepositories(ctx, d); err != nil {
		return nil, total, err
	} else if n > 0 {
		total.Dropped += n
		total.Changed += n
	}

	var links []Item // the links this run may delete, for the heal
	for _, it := range p.Items {
		if phase[it.Kind] < phase[KindBlob] {
			links = append(links, it)
		}
	}
	exec := o.Exec
	if o.StatLinks {
		exec.CheckBatch = chainChecks(statLinks(d, max(o.Exec.Concurrency, 1)), exec.CheckBatch)
	}
	then := exec.BeforeBlobs
	exec.BeforeBlobs = func(ctx context.Context, p *Plan) error {
		if o.AfterLinks != nil {
			if err := o.AfterLinks(ctx); err != nil {
				return err
			}
		}
		blobs := p.hasOrphanSegments()
		var fresh *walker.Inventory
		for n := 2; n <= maxRecheckWalks+1; n++ {
			inv, started, err := walk(ctx, blobs, n)
			if err != nil {
				return err
			}
			total.Walks++
			fresh = inv
			newest, ok := newestLink(inv)
			quiet := !ok || newest.Before(lastStart.Add(-mtimeSlack))
			lastStart = started
			if quiet {
				break
			}
			if n == maxRecheckWalks+1 {
				log.Warn("storage kept changing during the recheck; the window for a concurrent push starts at the last listing", "walks", n-1)
			}
		}
		st, heal := p.recheck(fresh, blobs, o.Manifests, nil, links)
		if err := healLinks(ctx, d, heal, log); err != nil {
			return err
		}
		st.Healed = len(heal)
		add(st)
		log.Info("rechecked the plan against storage", "dropped", st.Dropped, "healed_links", len(heal), "blobs_checked", blobs)
		if then == nil {
			return nil
		}
		return then(ctx, p)
	}
	result, err := p.Execute(ctx, d, held, exec)
	return result, total, err
}

// newestLink is the latest mtime of any link in inv.
func newestLink(inv *walker.Inventory) (time.Time, bool) {
	var newest int64
	found := false
	note := func(mtime int64) {
		if !found || mtime > newest {
			newest, found = mtime, true
		}
	}
	for _, r := range inv.Repositories {
		for _, l := range r.Revisions.All() {
			note(l.ModTime)
		}
		for _, l := range r.Layers.All() {
			note(l.ModTime)
		}
		for _, t := range r.Tags {
			if t.HasCurrent {
				note(t.CurrentModTime)
			}
			for _, l := range t.Index.All() {
				note(l.ModTime)
			}
		}
	}
	// A repository the registry changed under the walk was written to
	// just now.
	if len(inv.Changing) > 0 {
		return time.Now(), true
	}
	return time.Unix(newest, 0), found
}

// healLinks writes again the links this run deleted that a link written
// since needs. Their blobs are still there: the blob phase has not begun.
func healLinks(ctx context.Context, d storage.Driver, heal []Item, log *slog.Logger) error {
	for _, it := range heal {
		if err := d.Put(ctx, it.Key, []byte(it.Digest.String())); err != nil {
			return fmt.Errorf("writing again link %s, which a push since the plan needs: %w", it.Key, err)
		}
		log.Info("wrote again a link a push since the plan needs", "key", it.Key)
	}
	return nil
}

// chainChecks runs the batch checks in turn; nil ones are skipped.
func chainChecks(checks ...func(context.Context, int, []Item) ([]Item, error)) func(context.Context, int, []Item) ([]Item, error) {
	return func(ctx context.Context, phase int, batch []Item) ([]Item, error) {
		for _, c := range checks {
			if c == nil {
				continue
			}
			var err error
			if batch, err = c(ctx, phase, batch); err != nil || len(batch) == 0 {
				return batch, err
			}
		}
		return batch, nil
	}
}

// statLinks is a batch check that stats each planned link and leaves out
// one whose mtime is not the plan's: it was written again since.
func statLinks(d storage.Driver, concurrency int) func(context.Context, int, []Item) ([]Item, error) {
	return func(ctx context.Context, ph int, batch []Item) ([]Item, error) {
		if ph >= phase[KindBlob] {
			return batch, nil
		}
		keep := make([]bool, len(batch))
		var mu sync.Mutex
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(concurrency)
		for i, it := range batch {
			g.Go(func() error {
				oi, err := d.Stat(gctx, it.Key)
				switch {
				case storage.IsNotFound(err):
					// Gone already: deleting it again is a no-op.
				case err != nil:
					return fmt.Errorf("checking %s before deleting it: %w", it.Key, err)
				case oi.ModTime.Unix() != it.ModTime.Unix():
					return nil // written since the plan: it stays
				}
				mu.Lock()
				keep[i] = true
				mu.Unlock()
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return nil, err
		}
		out := batch[:0:0]
		for i, it := range batch {
			if keep[i] {
				out = append(out, it)
			}
		}
		return out, nil
	}
}

// hasOrphanSegments says whether the plan deletes a segment set no blob
// points at: a blob written since the walk could point at it, so the
// recheck before the blobs lists the blobs too.
func (p *Plan) hasOrphanSegments() bool {
	for _, it := range p.Items {
		if it.Kind == KindSegment && it.Reason == reasonOrphanSegment {
			return true
		}
	}
	return false
}
