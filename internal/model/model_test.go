package model

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	regsweepgc "github.com/regsweep/regsweep/gc"
	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/lock"
	"github.com/regsweep/regsweep/mark"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/sweep"
	"github.com/regsweep/regsweep/walker"
)

// defaultCases keeps `go test` well under a minute on two shared cores;
// `make soak` raises it with REGSWEEP_MODEL_CASES.
const defaultCases = 1000

// TestModel runs walker → mark → sweep.Build → Execute on random registry
// states, with and without DeleteUntagged, and compares what is left with
// the reference model: exactly the model's garbage goes, every needed blob
// stays, no link is left pointing at a blob it did not miss before, and a
// second run plans nothing. Each case is also killed after a random number
// of deletions and re-run: the cut-off run leaves no dangling link and the
// re-run ends where an uninterrupted run does.
//
// REGSWEEP_MODEL_SEED=<seed> replays one case; REGSWEEP_MODEL_CASES=<n>
// runs n cases from a random base seed (logged).
func TestModel(t *testing.T) {
	seeds, err := seedsFromEnv(os.Getenv("REGSWEEP_MODEL_SEED"), os.Getenv("REGSWEEP_MODEL_CASES"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d cases, seeds %d..%d", len(seeds), seeds[0], seeds[len(seeds)-1])
	if len(seeds) == 1 {
		t.Logf("state of seed %d:\n%s", seeds[0], Generate(seeds[0]).Describe())
	}
	var blocked, deleted, kills, leftovers, failures atomic.Int64
	workers := 2
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(seeds) || failures.Load() >= 5 {
					return
				}
				st, errs := runCase(seeds[i])
				blocked.Add(st.blocked)
				deleted.Add(st.deleted)
				kills.Add(st.kills)
				leftovers.Add(st.uploadLeftovers)
				if len(errs) > 0 {
					failures.Add(1)
					t.Errorf("seed %d (replay: REGSWEEP_MODEL_SEED=%d go test -count=1 -run TestModel ./internal/model/):\n  %s",
						seeds[i], seeds[i], strings.Join(errs, "\n  "))
				}
			}
		})
	}
	wg.Wait()
	t.Logf("runs: %d refused by a guard as the model expected, %d keys deleted, %d runs killed mid-sweep and re-run (%d files of uploads cut short left for a later run)",
		blocked.Load(), deleted.Load(), kills.Load(), leftovers.Load())
}

func seedsFromEnv(seed, cases string) ([]uint64, error) {
	if seed != "" {
		s, err := strconv.ParseUint(seed, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("REGSWEEP_MODEL_SEED=%q: %w", seed, err)
		}
		return []uint64{s}, nil
	}
	n := defaultCases
	if cases != "" {
		var err error
		if n, err = strconv.Atoi(cases); err != nil || n < 1 {
			return nil, fmt.Errorf("REGSWEEP_MODEL_CASES=%q: want a positive number", cases)
		}
	}
	base := rand.Uint64() >> 16
	seeds := make([]uint64, n)
	for i := range seeds {
		seeds[i] = base + uint64(i)
	}
	return seeds, nil
}

type caseStats struct{ blocked, deleted, kills, uploadLeftovers int64 }

// runCase checks one seed in both modes and returns what went wrong.
func runCase(seed uint64) (caseStats, []string) {
	var st caseStats
	var errs []string
	s := Generate(seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	for _, du := range []bool{false, true} {
		o := Options{DeleteUntagged: du}
		if rng.IntN(4) == 0 {
			o.MaxDeleteFraction = 0.3 + 0.4*rng.Float64()
		}
		exp := Expect(s, o)
		mode := fmt.Sprintf("delete-untagged=%v max-delete-fraction=%.2f", du, o.MaxDeleteFraction)
		fail := func(format string, a ...any) {
			errs = append(errs, mode+": "+fmt.Sprintf(format, a...))
		}
		cacheDir, err := os.MkdirTemp("", "regsweep-model-cache-")
		if err != nil {
			errs = append(errs, err.Error())
			return st, errs
		}
		defer os.RemoveAll(cacheDir)
		cfg := runConfig{batch: 1 + rng.IntN(4), concurrency: 1 + rng.IntN(3), cacheDir: cacheDir}

		// Uninterrupted.
		mem := storage.NewMemory(func() time.Time { return s.Now }, nil)
		s.Write(mem)
		before := snapshot(mem)
		_, err = gc(mem, mem, s, o, cfg)
		after := snapshot(mem)
		if exp.MayRefuseFraction && onlyFractionGuard(err) {
			if len(after) != len(before) {
				fail("refused by the delete fraction guard, yet %d key(s) were deleted", len(before)-len(after))
			}
			st.blocked++
			continue
		}
		checkRun(before, after, exp, err, fail)
		if exp.Blocked {
			st.blocked++
		} else {
			st.deleted += int64(len(exp.Garbage))
			again, err := gc(mem, mem, s, o, cfg)
			if err != nil || len(again.Items) > 0 {
				fail("a second run planned %d item(s) (first: %s), error %v", len(again.Items), firstItem(again), err)
			}
		}
		if exp.Blocked || len(exp.Garbage) == 0 {
			continue
		}

		// Killed after a random number of deletions, then re-run.
		st.kills++
		mem = storage.NewMemory(func() time.Time { return s.Now }, nil)
		s.Write(mem)
		budget := 1 + rng.IntN(len(exp.Garbage))
		k := &killer{Memory: mem, budget: budget}
		_, err = gc(mem, k, s, o, cfg)
		if !errors.Is(err, context.Canceled) && budget < len(exp.Garbage) {
			fail("killed after %d of %d deletions: want context.Canceled, got %v", budget, len(exp.Garbage), err)
		}
		cut := snapshot(mem)
		for _, p := range dangling(before, cut) {
			fail("killed after %d deletions: %s", budget, p)
		}
		for d := range exp.Needed {
			if _, ok := cut[blobKey(d)]; !ok {
				fail("killed after %d deletions: needed blob %s is gone", budget, d)
			}
		}
		for k := range before {
			if _, ok := cut[k]; !ok && !exp.Garbage[k] {
				fail("killed after %d deletions: %s is gone but is no garbage", budget, k)
			}
		}
		_, err = gc(mem, mem, s, o, cfg)
		// Known and safe: an upload the killed run cut short may have lost
		// the file its start time came from (startedat, or the oldest
		// file); the rest is judged by what remains and may wait up to
		// --upload-grace for a later run.
		rerunExp := exp
		rerunExp.Garbage = map[string]bool{}
		for k := range exp.Garbage {
			if uploadCutShort(k, before, cut) {
				st.uploadLeftovers++
				continue
			}
			rerunExp.Garbage[k] = true
		}
		final := snapshot(mem)
		for k := range exp.Garbage {
			if !rerunExp.Garbage[k] {
				final[k] = before[k] // kept or deleted, both are right
			}
		}
		checkRun(before, final, rerunExp, err, func(format string, a ...any) {
			fail("re-run after a kill at %d deletions: "+format, append([]any{budget}, a...)...)
		})
	}
	return st, errs
}

// onlyFractionGuard reports whether err is a refusal by the delete
// fraction guard alone.
func onlyFractionGuard(err error) bool {
	var g *sweep.GuardError
	if !errors.As(err, &g) {
		return false
	}
	for _, x := range g.Guards {
		if x.Name != sweep.GuardDeleteFraction {
			return false
		}
	}
	return len(g.Guards) > 0
}

// uploadCutShort reports whether k is a file of an upload that lost a
// file in the killed run: its start time may now come from another file.
func uploadCutShort(k string, before, cut map[string]string) bool {
	spec, err := layout.Parse(k)
	if err != nil {
		return false
	}
	var repo, id string
	switch s := spec.(type) {
	case layout.UploadData:
		repo, id = s.Repo, s.ID
	case layout.UploadHashState:
		repo, id = s.Repo, s.ID
	case layout.UploadStartedAt:
		repo, id = s.Repo, s.ID
	default:
		return false
	}
	dir := layout.RepoPrefix(repo) + "_uploads/" + id + "/"
	for b := range before {
		if _, ok := cut[b]; !ok && strings.HasPrefix(b, dir) {
			return true
		}
	}
	return false
}

// checkRun compares one gc with the model.
func checkRun(before, after map[string]string, exp Expectation, err error, fail func(string, ...any)) {
	var guard *sweep.GuardError
	if exp.Blocked {
		if !errors.As(err, &guard) {
			fail("the model refuses (%s) but gc returned %v", strings.Join(exp.Why, "; "), err)
		}
		if len(after) != len(before) {
			fail("refused, yet %d key(s) were deleted", len(before)-len(after))
		}
		return
	}
	if err != nil {
		fail("gc failed where the model expects a sweep: %v", err)
		return
	}
	var extra, missed []string
	for k := range before {
		_, kept := after[k]
		switch {
		case !kept && !exp.Garbage[k]:
			extra = append(extra, k)
		case kept && exp.Garbage[k]:
			missed = append(missed, k)
		}
	}
	slices.Sort(extra)
	slices.Sort(missed)
	for _, k := range extra {
		fail("deleted %s, which the model keeps", k)
	}
	for _, k := range missed {
		fail("kept %s, which the model calls garbage", k)
	}
	for d := range exp.Needed {
		if _, ok := after[blobKey(d)]; !ok {
			fail("needed blob %s is gone", d)
		}
	}
	for _, p := range dangling(before, after) {
		fail("%s", p)
	}
}

// dangling lists links of after whose blob is missing but was not missing
// in before.
func dangling(before, after map[string]string) []string {
	var out []string
	for k, content := range after {
		spec, err := layout.Parse(k)
		if err != nil {
			continue
		}
		var target digest.Digest
		switch s := spec.(type) {
		case layout.RevisionLink:
			target = s.Digest
		case layout.LayerLink:
			target = s.Digest
		case layout.TagIndexLink:
			target = s.Digest
		case layout.TagCurrentLink:
			d, reason := walker.ParseLink([]byte(content))
			if reason != "" {
				continue
			}
			target = d
		default:
			continue
		}
		bk := blobKey(target)
		_, now := after[bk]
		_, then := before[bk]
		if !now && then {
			out = append(out, fmt.Sprintf("link %s points at %s, deleted by the run", k, bk))
		}
	}
	slices.Sort(out)
	return out
}

func blobKey(d digest.Digest) string {
	k, err := layout.Path(layout.BlobData{Digest: d})
	if err != nil {
		panic(err)
	}
	return k
}

func snapshot(m *storage.Memory) map[string]string {
	s, err := Snapshot(context.Background(), m)
	if err != nil {
		panic(err)
	}
	return s
}

func firstItem(p *sweep.Plan) string {
	if p == nil || len(p.Items) == 0 {
		return "none"
	}
	return p.Items[0].Kind + " " + p.Items[0].Key + " (" + p.Items[0].Reason + ")"
}

type runConfig struct {
	batch, concurrency int
	cacheDir           string // the manifest cache, shared by a case's runs
}

// gc runs a deleting gc as `regsweep gc --delete` does: gc.Analyze of
// mem, with the manifest cache (in cacheDir, kept across the runs of a
// case) and its prefetch, then gc.Execute under the lock. exec is the
// driver Execute deletes through (mem, or a killer of it).
func gc(mem *storage.Memory, exec storage.Driver, s *State, o Options, cfg runConfig) (*sweep.Plan, error) {
	ctx := context.Background()
	src := mark.StorageSource(mem, cfg.cacheDir, 0)
	defer src.Close()
	a, err := regsweepgc.Analyze(ctx, mem, src, regsweepgc.Options{DeleteUntagged: o.DeleteUntagged, Grace: Grace, UploadGrace: UploadGrace,
		MaxDeleteFraction: o.MaxDeleteFraction, Concurrency: cfg.concurrency, Clock: func() time.Time { return s.Now }})
	if err != nil {
		return nil, err
	}
	if len(a.Plan.Guards) > 0 {
		return a.Plan, &sweep.GuardError{Guards: a.Plan.Guards}
	}
	held, lctx, err := lock.Acquire(ctx, mem, lock.Options{Settle: -1})
	if err != nil {
		return a.Plan, err
	}
	defer held.Release(ctx)
	if k, ok := exec.(*killer); ok {
		lctx, k.cancel = context.WithCancel(lctx)
	}
	a.Store = exec
	_, err = regsweepgc.Execute(lctx, a, held, regsweepgc.ExecOptions{BatchSize: cfg.batch})
	return a.Plan, err
}

// killer deletes through the memory driver until its budget is spent,
// then cancels the run, as a process killed mid-batch would stop.
type killer struct {
	*storage.Memory
	mu     sync.Mutex
	budget int
	cancel context.CancelFunc
}

func (k *killer) Delete(ctx context.Context, keys []string) ([]storage.DeleteResult, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := min(k.budget, len(keys))
	k.budget -= n
	var res []storage.DeleteResult
	if n > 0 {
		var err error
		if res, err = k.Memory.Delete(ctx, keys[:n]); err != nil {
			return nil, err
		}
	}
	if n < len(keys) || k.budget == 0 {
		k.cancel()
		return nil, context.Canceled
	}
	return res, nil
}
