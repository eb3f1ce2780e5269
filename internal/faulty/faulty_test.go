package faulty_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	regsweepgc "github.com/regsweep/regsweep/gc"
	"github.com/regsweep/regsweep/internal/faulty"
	"github.com/regsweep/regsweep/internal/regtree"
	"github.com/regsweep/regsweep/lock"
	"github.com/regsweep/regsweep/mark"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/storage/filesystem"
	"github.com/regsweep/regsweep/sweep"
	"github.com/regsweep/regsweep/walker"
)

// The corpus: tagged and re-tagged images (untagged garbage), shared
// layers, indexes, orphan blobs and old uploads, in 6 repositories.
var spec = regtree.Spec{Seed: 42, Repositories: 6, ImagesPerRepo: 4, TagsPerRepo: 2, LayersPerImg: 3,
	SharedLayers: 3, OrphanBlobs: 5, LayerSize: 64, MultiArch: true, Uploads: 2}

// store is one driver kind the fault matrix runs on.
type store struct {
	name string
	new  func(t *testing.T) storage.Driver
}

var stores = []store{
	{"memory", func(t *testing.T) storage.Driver { return storage.NewMemory(nil, nil) }},
	{"filesystem", func(t *testing.T) storage.Driver {
		d, err := filesystem.New(t.TempDir(), 4, nil)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}},
}

// newCorpus writes the corpus into a fresh store.
func newCorpus(t *testing.T, s store) storage.Driver {
	t.Helper()
	d := s.new(t)
	if _, err := regtree.Generate(context.Background(), d, spec, 4); err != nil {
		t.Fatal(err)
	}
	return d
}

// retryPolicy is storage.DefaultRetry without the waiting.
func retryPolicy() storage.RetryPolicy {
	p := storage.DefaultRetry()
	p.Sleep = func(ctx context.Context, _ time.Duration) error { return ctx.Err() }
	return p
}

// wrap composes the drivers as backend.Open does, with the faults
// innermost (where the network is).
func wrap(d storage.Driver, f *faulty.Driver, readOnly bool) storage.Driver {
	var out storage.Driver = storage.Limit(storage.Retry(f, retryPolicy()), 4)
	if readOnly {
		out = storage.ReadOnly(out)
	}
	return out
}

func keys(t *testing.T, d storage.Driver) []string {
	t.Helper()
	var out []string
	if err := d.Walk(context.Background(), "docker/", func(oi storage.ObjectInfo) error {
		out = append(out, oi.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// outcome is what a gc run decided and did, without times.
type outcome struct {
	inventory string   // totals of the walk
	items     []string // kind and key of every planned item
	err       error
}

func itemList(p *sweep.Plan) []string {
	var out []string
	for _, it := range p.Items {
		out = append(out, it.Kind+" "+it.Key)
	}
	sort.Strings(out)
	return out
}

func inventorySummary(inv *walker.Inventory) string {
	tags, revs, layers, uploads := 0, 0, 0, 0
	for _, r := range inv.Repositories {
		tags += len(r.Tags)
		revs += r.Revisions.Len()
		layers += r.Layers.Len()
		uploads += len(r.Uploads)
	}
	return fmt.Sprintf("repos=%v keys=%d blobs=%d bytes=%d tags=%d revisions=%d layers=%d uploads=%d corrupt=%d unknown=%d",
		inv.RepositoryNames(), inv.Keys, inv.Blobs.Len(), inv.BlobBytes, tags, revs, layers, uploads, len(inv.Corrupt), len(inv.Unknown))
}

// gc runs what `regsweep gc --delete-untagged --grace 0s` runs, on d:
// gc.Analyze, and with del gc.Execute under the lock.
func gc(ctx context.Context, d storage.Driver, del bool) outcome {
	var held *lock.Held
	if del {
		var err error
		held, ctx, err = lock.Acquire(ctx, d, lock.Options{Settle: time.Nanosecond, Command: "faulty test"})
		if err != nil {
			return outcome{err: err}
		}
		defer held.Release(context.WithoutCancel(ctx))
	}
	a, err := regsweepgc.Analyze(ctx, d, mark.StorageSource(d, "", 0), regsweepgc.Options{DeleteUntagged: true, MaxDeleteFraction: 0.9, Concurrency: 4})
	if err != nil {
		return outcome{err: err}
	}
	out := outcome{inventory: inventorySummary(a.Inventory), items: itemList(a.Plan)}
	if len(a.Plan.Guards) > 0 {
		out.err = &sweep.GuardError{Guards: a.Plan.Guards}
		return out
	}
	if !del {
		return out
	}
	_, out.err = regsweepgc.Execute(ctx, a, held, regsweepgc.ExecOptions{BatchSize: 7})
	return out
}

// transientFaults are faults a run must ride out: each comes and goes.
func transientFaults() []faulty.Rule {
	listing := []faulty.Op{faulty.Walk}
	reads := []faulty.Op{faulty.Get, faulty.Stat}
	return []faulty.Rule{
		{Name: "503 on listings", Ops: listing, Kind: faulty.Transient, Times: 3},
		{Name: "503 on reads", Ops: reads, Kind: faulty.Transient, Skip: 2, Times: 4},
		{Name: "503 on deletes", Ops: []faulty.Op{faulty.Delete}, Kind: faulty.Transient, Times: 2},
		{Name: "resets on reads", Ops: reads, Kind: faulty.Reset, Probability: 0.3, Times: 6},
		{Name: "timeouts on listings", Ops: listing, Kind: faulty.Timeout, Skip: 1, Times: 2},
		{Name: "truncated reads", Ops: []faulty.Op{faulty.Get}, Kind: faulty.Truncated, Times: 4},
		{Name: "listing fails part way", Ops: listing, Key: regexp.MustCompile(`^docker/registry/v2/(blobs|repositories)/`), Kind: faulty.FailAfter, After: 3, Times: 3},
		{Name: "keys failing in delete batches", Ops: []faulty.Op{faulty.Delete}, Key: regexp.MustCompile(`/blobs/`), Kind: faulty.PartialDelete, Times: 2},
		{Name: "lock write fails", Ops: []faulty.Op{faulty.Put}, Kind: faulty.Transient, Times: 1},
		{Name: "latency", Kind: faulty.Latency, Delay: time.Millisecond, Probability: 0.2},
	}
}

// TestFaultTransientSameResult: under every transient fault the walk, the
// plan and the deletions equal a fault-free run's.
func TestFaultTransientSameResult(t *testing.T) {
	ctx := context.Background()
	for _, s := range stores {
		ref := newCorpus(t, s)
		before := keys(t, ref)
		dry := gc(ctx, storage.ReadOnly(ref), false)
		real := gc(ctx, ref, true)
		if dry.err != nil || real.err != nil {
			t.Fatalf("%s: fault-free runs failed: %v / %v", s.name, dry.err, real.err)
		}
		refDeleted := difference(before, keys(t, ref))
		if len(dry.items) == 0 || len(refDeleted) == 0 {
			t.Fatalf("%s: the corpus has no garbage to test with", s.name)
		}
		for _, rule := range transientFaults() {
			t.Run(s.name+"/"+rule.Name, func(t *testing.T) {
				d := newCorpus(t, s)
				f := faulty.Wrap(d, 7, rule)
				// A parallel filesystem walk hands out keys in no order, so a
				// listing that failed part way cannot resume: the run fails
				// closed, whichever listing the fault hits.
				failedClosed := func(r outcome) bool {
					if r.err == nil || s.name != "filesystem" || rule.Kind != faulty.FailAfter {
						return false
					}
					if !errors.Is(r.err, walker.ErrWalk) {
						t.Fatalf("want a walk error, got %v", r.err)
					}
					if after := keys(t, d); !slices.Equal(after, before) {
						t.Fatalf("a failed walk deleted %v", difference(before, after))
					}
					t.Logf("failed closed: %v", r.err)
					return true
				}
				got := gc(ctx, wrap(d, f, true), false)
				if failedClosed(got) {
					return
				}
				if got.err != nil {
					t.Fatalf("dry run failed: %v", got.err)
				}
				if got.inventory != dry.inventory || !slices.Equal(got.items, dry.items) {
					t.Errorf("dry run differs from the fault-free one:\n%s\n%s\nplan %d items, fault-free %d", got.inventory, dry.inventory, len(got.items), len(dry.items))
				}
				dryFaults := len(f.Injections())
				f.SetRules(rule)
				got = gc(ctx, wrap(d, f, false), true)
				if failedClosed(got) {
					return
				}
				if got.err != nil {
					t.Fatalf("gc --delete failed: %v", got.err)
				}
				if deleted := difference(before, keys(t, d)); !slices.Equal(deleted, refDeleted) {
					t.Errorf("deleted %d keys, the fault-free run %d; only here: %v; only there: %v", len(deleted), len(refDeleted),
						difference(deleted, refDeleted), difference(refDeleted, deleted))
				}
				if dryFaults+len(f.Injections()) == 0 {
					t.Fatalf("no fault was injected")
				}
				t.Logf("%d faults injected in the dry run, %d in the deleting run", dryFaults, len(f.Injections()))
			})
		}
	}
}

// persistentFaults never clear.
func persistentFaults() []faulty.Rule {
	return []faulty.Rule{
		{Name: "503 on every listing", Ops: []faulty.Op{faulty.Walk}, Kind: faulty.Transient},
		{Name: "503 on every repository listing", Ops: []faulty.Op{faulty.Walk}, Key: regexp.MustCompile(`/repositories/`), Kind: faulty.Transient},
		{Name: "every blob listing fails part way", Ops: []faulty.Op{faulty.Walk}, Key: regexp.MustCompile(`/blobs/`), Kind: faulty.FailAfter, After: 1},
		{Name: "resets on every read", Ops: []faulty.Op{faulty.Get}, Kind: faulty.Reset},
		{Name: "timeouts on every read", Ops: []faulty.Op{faulty.Get}, Kind: faulty.Timeout},
		{Name: "truncated manifest reads", Ops: []faulty.Op{faulty.Get}, Key: regexp.MustCompile(`/blobs/`), Kind: faulty.Truncated},
		{Name: "refused reads", Ops: []faulty.Op{faulty.Get}, Kind: faulty.Refused},
		{Name: "the recheck's listings fail", Ops: []faulty.Op{faulty.Walk}, Key: regexp.MustCompile(`/repositories/`), Skip: 8, Kind: faulty.Transient},
		{Name: "every delete fails", Ops: []faulty.Op{faulty.Delete}, Kind: faulty.Transient},
		{Name: "lock cannot be written", Ops: []faulty.Op{faulty.Put}, Kind: faulty.Transient},
	}
}

// TestFaultPersistentDeletesNothing: a fault that never clears ends the
// run with an error naming the storage operation, and nothing is deleted.
func TestFaultPersistentDeletesNothing(t *testing.T) {
	ctx := context.Background()
	for _, s := range stores {
		for _, rule := range persistentFaults() {
			t.Run(s.name+"/"+rule.Name, func(t *testing.T) {
				d := newCorpus(t, s)
				before := keys(t, d)
				f := faulty.Wrap(d, 7, rule)
				got := gc(ctx, wrap(d, f, false), true)
				if got.err == nil {
					t.Fatalf("the run succeeded under a persistent fault (%d injected)", len(f.Injections()))
				}
				if len(f.Injections()) == 0 {
					t.Fatalf("no fault was injected; the run failed with %v", got.err)
				}
				var pe *storage.PathError
				switch {
				case rule.Name == "every delete fails":
					// Failed deletions are counted per key; the message names
					// the first key and its cause.
					if !errors.Is(got.err, sweep.ErrIncomplete) || !strings.Contains(got.err.Error(), "docker/registry/v2/") || !strings.Contains(got.err.Error(), "delete") {
						t.Errorf("failed deletions: want %v naming a key, got %v", sweep.ErrIncomplete, got.err)
					}
				case !errors.As(got.err, &pe):
					t.Errorf("the error does not name the storage operation: %v", got.err)
				}
				if after := keys(t, d); !slices.Equal(after, before) {
					t.Fatalf("deleted under a persistent fault: %v", difference(before, after))
				}
				t.Logf("%d faults, error: %v", len(f.Injections()), got.err)
			})
		}
	}
}

// TestFaultSilentFaults: faults no client can notice — a listing that ends
// early without an error, a read cut short without one. What each does,
// and that none deletes what the fault-free run keeps.
func TestFaultSilentFaults(t *testing.T) {
	ctx := context.Background()
	// team2/app2's manifests and tags: the listing ends after its layer
	// links (they sort first).
	lostPage := regexp.MustCompile(`^docker/registry/v2/repositories/team2/app2/_manifests/`)
	cases := []struct {
		name string
		rule faulty.Rule
		// etagStores: where listing ETags prove link content (memory), no
		// link is read, so a fault on link reads cannot happen.
		readsLinks bool
	}{
		{"the whole repositories listing is empty", faulty.Rule{Ops: []faulty.Op{faulty.Walk}, Key: regexp.MustCompile(`/repositories/`), Kind: faulty.ShortListing}, false},
		{"the blob listing ends early", faulty.Rule{Ops: []faulty.Op{faulty.Walk}, Key: regexp.MustCompile(`/blobs/`), Kind: faulty.ShortListing, After: 2}, false},
		{"manifest reads come back short", faulty.Rule{Ops: []faulty.Op{faulty.Get}, Key: regexp.MustCompile(`/blobs/`), Kind: faulty.ShortRead}, false},
		{"link reads come back short", faulty.Rule{Ops: []faulty.Op{faulty.Get}, Key: regexp.MustCompile(`/link$`), Kind: faulty.ShortRead}, true},
		{"one repository's listing ends early once", faulty.Rule{Ops: []faulty.Op{faulty.Walk}, Key: regexp.MustCompile(`/repositories/`), Kind: faulty.ShortListing, Drop: lostPage, Times: 1}, false},
		// Every listing of the repository tree ends early, the rechecks'
		// too: the repository looks like one with layer links only, and
		// the plan removes it. Before that, its _manifests/ is listed on
		// its own (a listing whose pages start there), which shows the
		// keys the walk missed. A store that hid those keys from every
		// listing of every prefix could not be caught by any client.
		{"one repository's listing always ends early", faulty.Rule{Ops: []faulty.Op{faulty.Walk}, Key: regexp.MustCompile(`/repositories/[^/]*/?$`), Kind: faulty.ShortListing, Drop: lostPage}, false},
	}
	for _, s := range stores {
		ref := newCorpus(t, s)
		before := keys(t, ref)
		if r := gc(ctx, ref, true); r.err != nil {
			t.Fatal(r.err)
		}
		kept := keys(t, ref)
		for _, c := range cases {
			if c.readsLinks && s.name == "memory" {
				continue
			}
			t.Run(s.name+"/"+c.name, func(t *testing.T) {
				d := newCorpus(t, s)
				f := faulty.Wrap(d, 7, c.rule)
				got := gc(ctx, wrap(d, f, false), true)
				if len(f.Injections()) == 0 {
					t.Fatalf("no fault was injected")
				}
				after := keys(t, d)
				lost := difference(kept, after)
				t.Logf("%d faults; error: %v; deleted %d keys (fault-free: %d)", len(f.Injections()), got.err, len(difference(before, after)), len(difference(before, kept)))
				if len(lost) > 0 {
					t.Errorf("LIVE KEYS DELETED (%d), first: %v", len(lost), lost[:min(5, len(lost))])
				}
			})
		}
	}
}

func difference(a, b []string) []string {
	in := map[string]bool{}
	for _, k := range b {
		in[k] = true
	}
	var out []string
	for _, k := range a {
		if !in[k] {
			out = append(out, k)
		}
	}
	return out
}
