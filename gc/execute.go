package gc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/regsweep/regsweep/lock"
	"github.com/regsweep/regsweep/mark"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/sweep"
	"github.com/regsweep/regsweep/walker"
)

// ExecOptions tune an execution.
type ExecOptions struct {
	// Force executes a plan whose guards tripped.
	Force bool
	// BatchSize is how many keys go to one delete call.
	BatchSize int
	// StatLinks stats every planned link just before its batch is deleted
	// and keeps one rewritten since the plan (another mtime). Default on
	// every store: a link a push writes again after the last listing is
	// younger than the grace period, and on S3 it would otherwise be
	// deleted by key (one HEAD per planned link; links are a small part
	// of what a run deletes). Tests turn it off to reach the heal.
	StatLinks *bool
	// BeforePhase, if set, runs before each phase (tests stop a run or
	// land a push there).
	BeforePhase func(phase int) error
	// AfterLinks, if set, runs once the links are gone, before the recheck
	// that precedes the blobs (tests land a push there).
	AfterLinks func(ctx context.Context) error
}

// Result is what an execution did.
type Result struct {
	Sweep   *sweep.Result
	Recheck sweep.RecheckStats
}

// maxRecheckWalks bounds the listings of the recheck before the blobs on
// a registry that keeps changing.
const maxRecheckWalks = 3

// mtimeSlack is how much older than a walk's start a link may look and
// still count as written since (S3 keeps whole seconds; a store's clock
// may be a little behind ours).
const mtimeSlack = 2 * time.Second

// Execute deletes a's plan under the held lock, the only way anything is
// deleted:
//
//  1. a plan whose guards tripped is refused unless forced; participants
//     take part (Executing);
//  2. items planned because a blob is missing are proved so: one whose
//     blob was written since the walk leaves the plan, one whose blob is
//     older means the walk missed it (sweep.ErrWalkIncomplete);
//  3. storage is listed again and the plan rechecked (a reviewed plan:
//     everything is listed, marked afresh and its guards judged again);
//     repositories still to be removed whole are listed on their own;
//  4. the links are deleted, each batch checked first (StatLinks, the
//     participants);
//  5. participants take part (LinksDeleted); the repository tree is
//     listed again, until a listing finds no link written since the
//     previous one began (at most maxRecheckWalks), the rest of the plan
//     is rechecked against it, and every link this run deleted that a
//     link written since needs is written again: a push that landed
//     during the link phase loses nothing (its blobs are still there);
//  6. the blobs go, then segments, uploads and emptied repositories, each
//     batch checked first; participants finish (Executed), also after a
//     partial sweep.
func Execute(ctx context.Context, a *Analysis, held *lock.Held, o ExecOptions) (*Result, error) {
	if held == nil {
		return nil, errors.New("gc: execute needs a held lock")
	}
	if a.Plan == nil {
		return nil, ErrNotAnalyzed
	}
	if len(a.Plan.Guards) > 0 && !o.Force {
		return nil, &GuardError{Guards: a.Plan.Guards}
	}
	a.Result, a.force = &Result{}, o.Force
	if err := a.at(ctx, Executing); err != nil {
		a.Err = err
		return a.Result, errors.Join(err, a.at(context.WithoutCancel(ctx), Executed))
	}
	r, err := a.execute(ctx, held, o)
	a.Result.Sweep, a.Err = r, err
	// The participants follow whatever storage really lost, also after a
	// partial sweep; they must not wait on a cancelled context.
	return a.Result, errors.Join(err, a.at(context.WithoutCancel(ctx), Executed))
}

func (a *Analysis) execute(ctx context.Context, held *lock.Held, o ExecOptions) (*sweep.Result, error) {
	p, log, total := a.Plan, a.Options.Log, &a.Result.Recheck
	if n, err := p.VerifyDangling(ctx, a.Store); err != nil {
		return nil, err
	} else if n > 0 {
		total.Dropped += n
		total.Changed += n
		log.Info("items planned as dangling left the plan: their blob was written since the walk", "items", n)
	}
	base := a.Mark
	fresh, lastStart, err := a.walk(ctx, a.reviewed || base == nil, 1, nil)
	if err != nil {
		return nil, err
	}
	if a.reviewed {
		// A reviewed plan was made by another run: its own guards are not
		// trusted, and its rechecks extend a mark of this listing.
		if base, err = a.judge(ctx, fresh); err != nil {
			return nil, err
		}
	}
	st, _, err := p.Recheck(ctx, fresh, fresh.BlobsWalked, base, a.Source, a.Options.Concurrency, nil)
	if err != nil {
		return nil, err
	}
	total.Add(st)
	log.Info("rechecked the plan against storage", "dropped", st.Dropped, "blobs_checked", fresh.BlobsWalked)
	fresh = nil
	// After the recheck, which drops a repository that a push has filled
	// since the plan: what is left to remove whole must be empty, or the
	// walks missed keys.
	if n, err := p.VerifyEmptyRepositories(ctx, a.Store, lastStart); err != nil {
		return nil, err
	} else if n > 0 {
		total.Dropped += n
		total.Changed += n
	}

	var links []sweep.Item // the links this run may delete, for the heal
	for _, it := range p.Items {
		if sweep.PhaseOf(it.Kind) < sweep.PhaseOf(sweep.KindBlob) {
			links = append(links, it)
		}
	}
	statLinks := true
	if o.StatLinks != nil {
		statLinks = *o.StatLinks
	}
	checks := []func(context.Context, int, []sweep.Item) ([]sweep.Item, error){tagsCheck(a.Store)}
	if statLinks {
		checks = append(checks, statLinksCheck(a.Store, a.Options.Concurrency))
	}
	for _, pt := range a.participants {
		checks = append(checks, pt.Check)
	}
	stage := a.Options.Progress.Start("sweep", "items", int64(len(p.Items)))
	defer stage.Done()
	exec := sweep.ExecOptions{Force: o.Force, BatchSize: o.BatchSize, Concurrency: a.Options.Concurrency, Log: log,
		BeforePhase: o.BeforePhase, CheckBatch: chainChecks(checks...), OnItem: func(it sweep.Item, err error) {
			a.record(it, err)
			stage.Add(1)
			if err == nil && sweep.FreesBytes(it) {
				stage.Count("freed_bytes", it.Size)
			}
		}}
	exec.BeforeBlobs = func(ctx context.Context, p *sweep.Plan) error {
		if err := a.at(ctx, LinksDeleted); err != nil {
			return err
		}
		if o.AfterLinks != nil {
			if err := o.AfterLinks(ctx); err != nil {
				return err
			}
		}
		blobs := p.HasOrphanSegments()
		for n := 2; n <= maxRecheckWalks+1; n++ {
			inv, started, err := a.walk(ctx, blobs, n, base)
			if err != nil {
				return err
			}
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
		st, heal, err := p.Recheck(ctx, fresh, fresh.BlobsWalked, base, a.Source, a.Options.Concurrency, links)
		if err != nil {
			return err
		}
		if err := healLinks(ctx, a.Store, heal, log); err != nil {
			return err
		}
		st.Healed = len(heal)
		total.Add(st)
		log.Info("rechecked the plan against storage", "dropped", st.Dropped, "healed_links", len(heal), "blobs_checked", fresh.BlobsWalked)
		return nil
	}
	return p.Execute(ctx, a.Store, held, exec)
}

// record passes each deletion's result to the participants.
func (a *Analysis) record(it sweep.Item, err error) {
	for _, p := range a.participants {
		p.Record(it, err)
	}
}

// walk lists storage for a recheck: everything, or the repository tree
// only, sharing base's blob index so that the recheck's mark extends it.
func (a *Analysis) walk(ctx context.Context, blobs bool, n int, base *mark.Result) (*walker.Inventory, time.Time, error) {
	wo := a.Options.Walk
	wo.RepositoriesOnly = !blobs
	if !blobs && base != nil {
		wo.Blobs = base.Blobs()
	}
	started := time.Now()
	// The window for a concurrent push starts here, not when the recheck
	// ends: operators read the log to see it.
	a.Options.Log.Info("rechecking: listing storage again", "walk", n, "blobs", blobs)
	fresh, err := walker.Collect(ctx, a.Store, wo)
	if err != nil {
		return nil, started, err
	}
	a.Result.Recheck.Walks++
	if g := sweep.WalkGuards(fresh); len(g) > 0 && !a.forced() {
		return nil, started, &GuardError{Guards: g}
	}
	return fresh, started, nil
}

func (a *Analysis) forced() bool { return a.force }

// judge marks fresh and judges a reviewed plan's guards on it, with the
// participants' (Planned), before anything is deleted.
func (a *Analysis) judge(ctx context.Context, fresh *walker.Inventory) (*mark.Result, error) {
	res, err := mark.Run(ctx, fresh, a.Source, mark.Options{DeleteUntagged: a.Plan.Options.DeleteUntagged, Concurrency: a.Options.Concurrency, Roots: a.roots()})
	if err != nil {
		return nil, err
	}
	a.Inventory, a.Mark = fresh, res
	a.Plan.Guards = a.Plan.Judge(fresh, res, a.sweepOptions())
	if err := a.at(ctx, Planned); err != nil {
		return nil, err
	}
	if len(a.Plan.Guards) > 0 && !a.forced() {
		return nil, &GuardError{Guards: a.Plan.Guards}
	}
	return res, nil
}

// newestLink is the latest mtime of any link in inv.
func newestLink(inv *walker.Inventory) (time.Time, bool) {
	// A repository the registry changed under the walk was written to
	// just now.
	if len(inv.Changing) > 0 {
		return time.Now(), true
	}
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
	return time.Unix(newest, 0), found
}

// healLinks writes again the links this run deleted that a link written
// since needs. Their blobs are still there: the blob phase has not begun.
func healLinks(ctx context.Context, d storage.Driver, heal []sweep.Item, log *slog.Logger) error {
	for _, it := range heal {
		if err := d.Put(ctx, it.Key, []byte(it.Digest.String())); err != nil {
			return fmt.Errorf("writing again link %s, which a push since the plan needs: %w", it.Key, err)
		}
		log.Info("wrote again a link a push since the plan needs", "key", it.Key)
	}
	return nil
}

// chainChecks runs the batch checks in turn.
func chainChecks(checks ...func(context.Context, int, []sweep.Item) ([]sweep.Item, error)) func(context.Context, int, []sweep.Item) ([]sweep.Item, error) {
	if len(checks) == 0 {
		return nil
	}
	return func(ctx context.Context, phase int, batch []sweep.Item) ([]sweep.Item, error) {
		for _, c := range checks {
			var err error
			if batch, err = c(ctx, phase, batch); err != nil || len(batch) == 0 {
				return batch, err
			}
		}
		return batch, nil
	}
}

// statLinksCheck is a batch check that stats each planned link and leaves
// out one whose mtime is not the plan's: it was written again since.
func statLinksCheck(d storage.Driver, concurrency int) func(context.Context, int, []sweep.Item) ([]sweep.Item, error) {
	return func(ctx context.Context, ph int, batch []sweep.Item) ([]sweep.Item, error) {
		if ph >= sweep.PhaseOf(sweep.KindBlob) {
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

// tagsCheck reads each tag item's current link again just before the tag
// is deleted: a tag moved or pushed since the plan (another mtime or
// another digest) stays.
func tagsCheck(d storage.Driver) func(context.Context, int, []sweep.Item) ([]sweep.Item, error) {
	return func(ctx context.Context, ph int, batch []sweep.Item) ([]sweep.Item, error) {
		if ph != sweep.PhaseOf(sweep.KindTag) {
			return batch, nil
		}
		keep := batch[:0:0]
		for _, it := range batch {
			same, err := tagUnchanged(ctx, d, it)
			if err != nil {
				return nil, err
			}
			if same {
				keep = append(keep, it)
			}
		}
		return keep, nil
	}
}

func tagUnchanged(ctx context.Context, d storage.Driver, it sweep.Item) (bool, error) {
	oi, err := d.Stat(ctx, it.Key)
	switch {
	case storage.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("checking tag %s:%s before deleting it: %w", it.Repo, it.Tag, err)
	case oi.ModTime.Unix() != it.ModTime.Unix():
		return false, nil
	}
	b, err := d.Get(ctx, it.Key, 1024)
	switch {
	case storage.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("reading tag %s:%s before deleting it: %w", it.Repo, it.Tag, err)
	}
	got, reason := walker.ParseLink(b)
	return reason == "" && got == it.Digest, nil
}
