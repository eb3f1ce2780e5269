package gc_test

// Regression tests for the review of the deletion path (findings A to I,
// and issue 15's J to P). Every scenario runs through what cmd/regsweep
// runs: gc.Analyze, then gc.Execute (gc --delete) or, for sweep --plan,
// the plan written to JSON, read back, gc.Reviewed and gc.Execute. Then
// it asserts that the run was safe:
// every tag and every remaining revision is whole and linked, no link
// dangles, and exactly the planned keys left storage, as many as the plan's
// stats and the result say.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/gc"
	"github.com/regsweep/regsweep/internal/regtree"
	"github.com/regsweep/regsweep/internal/storecheck"
	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/lock"
	"github.com/regsweep/regsweep/manifest"
	"github.com/regsweep/regsweep/mark"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/sweep"
	"github.com/regsweep/regsweep/walker"
)

const reviewGrace = 2 * time.Hour

// env is a memory store whose clock the test moves: objects written while
// it is 30 days back are old, objects written after young() are not.
type env struct {
	mu    sync.Mutex
	clock time.Time
	mem   *storage.Memory
	d     storage.Driver // what the sweep sees (mem, or a wrapper of it)
	// last is the analysis plan made: exec executes it.
	last        *gc.Analysis
	concurrency int
}

func newEnv() *env {
	e := &env{clock: time.Now().Add(-30 * 24 * time.Hour), concurrency: 4}
	e.mem = storage.NewMemory(e.now, nil)
	e.d = e.mem
	return e
}

func (e *env) now() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.clock
}

// young makes every later write younger than the grace.
func (e *env) young() {
	e.mu.Lock()
	e.clock = time.Now()
	e.mu.Unlock()
}

func (e *env) writer() *regtree.Writer { return regtree.NewWriter(e.d, 4) }

func flush(t *testing.T, w *regtree.Writer) {
	t.Helper()
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func reviewOptions(deleteUntagged bool, concurrency int) gc.Options {
	return gc.Options{DeleteUntagged: deleteUntagged, Grace: reviewGrace, UploadGrace: 168 * time.Hour, MaxDeleteFraction: 1, Concurrency: concurrency}
}

// plan analyzes e.d as gc does; it must trip no guard.
func (e *env) plan(t *testing.T, deleteUntagged bool) *sweep.Plan {
	t.Helper()
	a, err := gc.Analyze(context.Background(), e.d, mark.StorageSource(e.d, "", 0), reviewOptions(deleteUntagged, e.concurrency))
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Plan.Guards) > 0 {
		t.Fatalf("guards tripped: %v", a.Plan.Guards)
	}
	e.last = a
	return a.Plan
}

type execOpts struct {
	// blobsToo runs the plan as sweep --plan does (written to a file and
	// read back; everything listed again); otherwise as gc --delete.
	blobsToo    bool
	concurrency int
	exec        gc.ExecOptions
	// whileLinks runs once the links are gone, before the recheck that
	// precedes the blobs: a push landing in the middle of the run.
	whileLinks func()
}

// execute runs a's plan as cmd/regsweep does: gc.Execute of the analysis,
// or with blobsToo, of a reviewed copy of its plan.
func execute(ctx context.Context, d storage.Driver, a *gc.Analysis, o execOpts) (*sweep.Result, sweep.RecheckStats, error) {
	if o.blobsToo {
		r, st, _, err := executePlan(ctx, d, a.Plan, o)
		return r, st, err
	}
	return executeAnalysis(ctx, d, a, o)
}

// executePlan is sweep --plan --delete of p, written to a file and read
// back first; it returns the plan it executed.
func executePlan(ctx context.Context, d storage.Driver, p *sweep.Plan, o execOpts) (*sweep.Result, sweep.RecheckStats, *sweep.Plan, error) {
	var buf bytes.Buffer
	if err := p.WriteJSON(&buf); err != nil {
		return nil, sweep.RecheckStats{}, nil, err
	}
	reviewed, err := sweep.ReadPlan(&buf)
	if err != nil {
		return nil, sweep.RecheckStats{}, nil, err
	}
	a, err := gc.Reviewed(ctx, d, mark.StorageSource(d, "", 0), reviewed, gc.Options{MaxDeleteFraction: 1, Concurrency: max(o.concurrency, 4)})
	if err != nil {
		return nil, sweep.RecheckStats{}, reviewed, err
	}
	r, st, err := executeAnalysis(ctx, d, a, o)
	return r, st, reviewed, err
}

func executeAnalysis(ctx context.Context, d storage.Driver, a *gc.Analysis, o execOpts) (*sweep.Result, sweep.RecheckStats, error) {
	held, lctx, err := lock.Acquire(ctx, d, lock.Options{Settle: -1})
	if err != nil {
		return nil, sweep.RecheckStats{}, err
	}
	defer held.Release(context.WithoutCancel(ctx))
	if o.whileLinks != nil {
		o.exec.AfterLinks = func(context.Context) error { o.whileLinks(); return nil }
	}
	r, err := gc.Execute(lctx, a, held, o.exec)
	if r == nil {
		return nil, sweep.RecheckStats{}, err
	}
	return r.Sweep, r.Recheck, err
}

type run struct {
	plan    *sweep.Plan
	result  *sweep.Result
	recheck sweep.RecheckStats
	err     error
	// before are the storage keys just before execution, with those
	// whileLinks wrote; recreated are planned keys the run deleted and
	// whileLinks wrote again.
	before    []string
	recreated map[string]bool
}

// exec executes p, the plan of e's last analysis.
func (e *env) exec(t *testing.T, p *sweep.Plan, o execOpts) run {
	t.Helper()
	if e.last == nil || e.last.Plan != p {
		t.Fatal("exec runs the plan of the last analysis")
	}
	before := e.mem.Keys()
	appeared := map[string]bool{}
	if hook := o.whileLinks; hook != nil {
		o.whileLinks = func() {
			pre := e.mem.Keys()
			hook()
			for _, k := range e.mem.Keys() {
				if _, found := slices.BinarySearch(pre, k); !found {
					appeared[k] = true
				}
			}
		}
	}
	var r *sweep.Result
	var st sweep.RecheckStats
	var err error
	reviewed := p
	if o.blobsToo {
		// sweep --plan runs a copy of the plan: the one it rechecks.
		r, st, reviewed, err = executePlan(context.Background(), e.d, p, o)
	} else {
		// A test may put a wrapper in front of the store after the plan
		// (a fault, a push landing mid-listing): the run goes through it.
		e.last.Store = e.d
		r, st, err = executeAnalysis(context.Background(), e.d, e.last, o)
	}
	recreated := map[string]bool{}
	for k := range appeared {
		if _, found := slices.BinarySearch(before, k); found {
			recreated[k] = true
		} else {
			before = append(before, k)
		}
	}
	slices.Sort(before)
	return run{plan: reviewed, result: r, recheck: st, err: err, before: before, recreated: recreated}
}

// checkSafe asserts what checkIntact does, and that every manifest a
// revision link still names is whole (blob, linked blobs, children).
func checkSafe(t *testing.T, d storage.Driver) *walker.Inventory {
	t.Helper()
	inv := storecheck.Intact(t, d)
	for name, r := range inv.Repositories {
		for m := range r.Revisions.All() {
			storecheck.Pullable(t, d, inv, name, "@"+m.Encoded()[:12], m)
		}
	}
	return inv
}

// checkRun asserts that a run succeeded and was safe, that exactly the
// keys of the final plan left storage, and that the plan's stats, the
// result and storage agree.
func (e *env) checkRun(t *testing.T, r run) {
	t.Helper()
	if r.err != nil {
		t.Fatalf("run: %v", r.err)
	}
	checkSafe(t, e.d)
	checkDeleted(t, r.before, e.mem.Keys(), r.plan, r.recreated)
	checkStats(t, r.plan, r.result)
}

func checkDeleted(t *testing.T, before, after []string, p *sweep.Plan, recreated map[string]bool) {
	t.Helper()
	var gone []string
	for _, k := range before {
		if _, found := slices.BinarySearch(after, k); !found {
			gone = append(gone, k)
		}
	}
	var planned []string
	for _, it := range p.Items {
		if it.Kind != sweep.KindRepository && !recreated[it.Key] { // a memory repository is only its keys
			planned = append(planned, it.Key)
		}
	}
	slices.Sort(planned)
	if !slices.Equal(gone, planned) {
		t.Errorf("storage lost %d keys, the plan lists %d:\n lost     %v\n planned  %v", len(gone), len(planned), gone, planned)
	}
	for _, k := range after {
		if _, found := slices.BinarySearch(before, k); !found {
			t.Errorf("key appeared during the run: %s", k)
		}
	}
}

func checkStats(t *testing.T, p *sweep.Plan, r *sweep.Result) {
	t.Helper()
	items := map[string]int{}
	for _, it := range p.Items {
		items[it.Kind]++
	}
	for _, kind := range []string{sweep.KindTagIndexLink, sweep.KindTagCurrentLink, sweep.KindRevisionLink, sweep.KindSignatureLink,
		sweep.KindLayerLink, sweep.KindBlob, sweep.KindSegment, sweep.KindUploadFile, sweep.KindMultipartUpload, sweep.KindRepository} {
		if r.Deleted[kind] != items[kind] {
			t.Errorf("%s: %d deleted, the plan lists %d", kind, r.Deleted[kind], items[kind])
		}
	}
	s := p.Stats
	for kind, n := range map[string]int{sweep.KindBlob: s.Blobs, sweep.KindRevisionLink: s.Manifests, sweep.KindTagIndexLink: s.TagIndexLinks,
		sweep.KindLayerLink: s.LayerLinks, sweep.KindSegment: s.Segments, sweep.KindRepository: s.Repositories} {
		if r.Deleted[kind] != n {
			t.Errorf("%s: %d deleted, the plan's stats say %d", kind, r.Deleted[kind], n)
		}
	}
	if r.FreedBytes != s.Bytes {
		t.Errorf("freed %d bytes, the plan's stats say %d", r.FreedBytes, s.Bytes)
	}
	if len(r.NotFound) != 0 || len(r.Failed) != 0 || len(r.Errors) != 0 {
		t.Errorf("not found %v, failed %v: %v", r.NotFound, r.Failed, r.Errors)
	}
}

func has(m *storage.Memory, key string) bool {
	_, found := slices.BinarySearch(m.Keys(), key)
	return found
}

func pathOf(s layout.Spec) string {
	k, err := layout.Path(s)
	if err != nil {
		panic(err)
	}
	return k
}

func blobKey(d digest.Digest) string { return pathOf(layout.BlobData{Digest: d}) }

func planned(p *sweep.Plan, key string) bool {
	return slices.ContainsFunc(p.Items, func(it sweep.Item) bool { return it.Key == key })
}

// keeper writes a tagged image in its own repository, so that the mark
// keeps something and no guard trips.
func keeper(w *regtree.Writer) {
	img := w.Image("keep", []byte(`{"k":1}`), []byte("keep-layer"))
	w.Tag("keep", "v1", img.Digest)
}

// untaggedOver writes an untagged manifest in r whose layer is l (already
// a blob; linking it in r is the caller's business).
func untaggedOver(w *regtree.Writer, l digest.Digest, size int64) digest.Digest {
	cfg := []byte(`{"young":1}`)
	cd := w.Blob(cfg)
	w.LayerLink("r", cd)
	body, err := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": regtree.MediaTypeOCIManifest,
		"config": map[string]any{"mediaType": regtree.MediaTypeOCIConfig, "digest": cd, "size": len(cfg)},
		"layers": []map[string]any{{"mediaType": regtree.MediaTypeOCILayer, "digest": l, "size": size}}})
	if err != nil {
		panic(err)
	}
	md := w.Blob(body)
	w.Revision("r", md)
	return md
}

var execModes = []struct {
	name     string
	blobsToo bool
}{{"gc", false}, {"sweep-plan", true}}

// A, A2: a planned link rewritten after the plan (another mtime) stays,
// and so does everything it needs.
func TestReviewA_ChangedPlannedLinkKeepsWhatItNeeds(t *testing.T) {
	cases := []struct {
		name           string
		deleteUntagged bool
		// setup writes the old tree and returns the link the registry
		// rewrites after the plan.
		setup func(w *regtree.Writer) (link string, needs digest.Digest)
	}{
		{"A-revision-link", true, func(w *regtree.Writer) (string, digest.Digest) {
			m := w.Image("r", []byte(`{"c":1}`), []byte("layer-A"))
			return pathOf(layout.RevisionLink{Repo: "r", Digest: m.Digest}), m.Digest
		}},
		{"A-tag-index-link", true, func(w *regtree.Writer) (string, digest.Digest) {
			m1 := w.Image("r", []byte(`{"c":11}`), []byte("layer-A1"))
			m2 := w.Image("r", []byte(`{"c":12}`), []byte("layer-A2"))
			w.Tag("r", "t", m1.Digest)
			w.Tag("r", "t", m2.Digest) // t moved on: m1 is history
			return pathOf(layout.TagIndexLink{Repo: "r", Tag: "t", Digest: m1.Digest}), m1.Digest
		}},
		{"A2-layer-link", false, func(w *regtree.Writer) (string, digest.Digest) {
			l := w.Blob([]byte("orphan-layer"))
			w.LayerLink("r", l)
			return pathOf(layout.LayerLink{Repo: "r", Digest: l}), l
		}},
	}
	for _, c := range cases {
		for _, mode := range execModes {
			t.Run(c.name+"/"+mode.name, func(t *testing.T) {
				e := newEnv()
				w := e.writer()
				keeper(w)
				link, needs := c.setup(w)
				flush(t, w)
				p := e.plan(t, c.deleteUntagged)
				if !planned(p, link) || !planned(p, blobKey(needs)) {
					t.Fatalf("scenario: %s and its blob should be planned: %v", link, firstItems(p))
				}
				e.young()
				if err := e.mem.Put(context.Background(), link, []byte(needs)); err != nil {
					t.Fatal(err)
				}
				r := e.exec(t, p, execOpts{blobsToo: mode.blobsToo})
				e.checkRun(t, r)
				if !has(e.mem, link) || !has(e.mem, blobKey(needs)) {
					t.Errorf("rewritten link %s or its blob %s is gone", link, needs)
				}
				if r.recheck.Changed == 0 {
					t.Errorf("recheck saw no changed key: %+v", r.recheck)
				}
			})
		}
	}
}

// B: a referrer whose subject gets tagged after the plan stays with it.
func TestReviewB_ReferrerOfNewlyTaggedSubject(t *testing.T) {
	for _, mode := range execModes {
		t.Run(mode.name, func(t *testing.T) {
			e := newEnv()
			w := e.writer()
			keeper(w)
			m := w.Image("r", []byte(`{"c":2}`), []byte("layer-B"))
			s := w.Referrer("r", m, []byte("sig"))
			flush(t, w)
			p := e.plan(t, true)
			sigKey := pathOf(layout.RevisionLink{Repo: "r", Digest: s.Digest})
			if !planned(p, sigKey) {
				t.Fatalf("scenario: the referrer of an untagged image should be planned: %v", firstItems(p))
			}
			e.young()
			w.Tag("r", "v1", m.Digest)
			flush(t, w)
			r := e.exec(t, p, execOpts{blobsToo: mode.blobsToo})
			e.checkRun(t, r)
			if !has(e.mem, sigKey) || !has(e.mem, blobKey(s.Digest)) || !has(e.mem, blobKey(digest.FromBytes([]byte("sig")))) {
				t.Errorf("referrer %s of the now tagged %s lost its link or blobs", s.Digest, m.Digest)
			}
		})
	}
}

// C: the recheck is a closure: a young referrer of a referrer of an
// untagged image keeps the whole chain.
func TestReviewC_ReferrerChain(t *testing.T) {
	for _, when := range []string{"pushed-before-plan", "pushed-after-plan"} {
		for _, mode := range execModes {
			t.Run(when+"/"+mode.name, func(t *testing.T) {
				e := newEnv()
				w := e.writer()
				keeper(w)
				m := w.Image("r", []byte(`{"c":4}`), []byte("layer-D"))
				r1 := w.Referrer("r", m, []byte("sbom"))
				flush(t, w)
				push := func() regtree.Descriptor {
					e.young()
					r2 := w.Referrer("r", r1, []byte("sig-of-sbom"))
					flush(t, w)
					return r2
				}
				var r2 regtree.Descriptor
				if when == "pushed-before-plan" {
					r2 = push()
				}
				p := e.plan(t, true)
				if when == "pushed-after-plan" {
					if !planned(p, pathOf(layout.RevisionLink{Repo: "r", Digest: m.Digest})) {
						t.Fatalf("scenario: the untagged image should be planned: %v", firstItems(p))
					}
					r2 = push()
				} else {
					for _, it := range p.Items {
						if it.Repo == "r" || it.Kind == sweep.KindBlob {
							t.Errorf("planned %s %s: the young referrer chain needs all of r", it.Kind, it.Key)
						}
					}
				}
				r := e.exec(t, p, execOpts{blobsToo: mode.blobsToo})
				e.checkRun(t, r)
				for _, d := range []digest.Digest{m.Digest, r1.Digest, r2.Digest, digest.FromBytes([]byte("layer-D")), digest.FromBytes([]byte("sbom"))} {
					if !has(e.mem, blobKey(d)) {
						t.Errorf("blob %s of the referrer chain is gone", d)
					}
				}
			})
		}
	}
}

// schema1 writes an unsigned-format schema1 manifest in r with one layer
// and a signature link.
func schema1(w *regtree.Writer) (md, sig, l digest.Digest) {
	l = w.Blob([]byte("s1-layer"))
	w.LayerLink("r", l)
	body, err := json.Marshal(map[string]any{"schemaVersion": 1, "name": "r", "tag": "x", "fsLayers": []map[string]string{{"blobSum": l.String()}}})
	if err != nil {
		panic(err)
	}
	md = w.Blob(body)
	w.Revision("r", md)
	sig = w.Blob([]byte("jws-signature"))
	w.Raw(pathOf(layout.SignatureLink{Repo: "r", Digest: md, Signature: sig}), []byte(sig))
	return md, sig, l
}

// D: the schema1 signatures of a revision the recheck keeps stay; those of
// a deleted revision go with it.
func TestReviewD_SignatureOfKeptRevision(t *testing.T) {
	for _, tagged := range []bool{true, false} {
		for _, mode := range execModes {
			t.Run(fmt.Sprintf("tagged-after-plan=%v/%s", tagged, mode.name), func(t *testing.T) {
				e := newEnv()
				w := e.writer()
				keeper(w)
				md, sig, l := schema1(w)
				flush(t, w)
				p := e.plan(t, true)
				sigLink := pathOf(layout.SignatureLink{Repo: "r", Digest: md, Signature: sig})
				if !planned(p, sigLink) || !planned(p, blobKey(sig)) {
					t.Fatalf("scenario: the signature of an untagged revision should be planned: %v", firstItems(p))
				}
				if tagged {
					e.young()
					w.Tag("r", "v1", md)
					flush(t, w)
				}
				r := e.exec(t, p, execOpts{blobsToo: mode.blobsToo})
				e.checkRun(t, r)
				for _, k := range []string{sigLink, blobKey(sig), blobKey(md), blobKey(l)} {
					if has(e.mem, k) != tagged {
						t.Errorf("%s: present=%v, want %v", k, has(e.mem, k), tagged)
					}
				}
			})
		}
	}
}

// E: a plan's stats count what it will delete, not what its own recheck
// dropped.
func TestReviewE_StatsAfterRecheck(t *testing.T) {
	for _, mode := range execModes {
		t.Run(mode.name, func(t *testing.T) {
			e := newEnv()
			w := e.writer()
			keeper(w)
			l := w.Blob([]byte("shared-old-layer"))
			w.LayerLink("r", l)
			garbage := w.Blob([]byte("garbage-E"))
			flush(t, w)
			e.young()
			untaggedOver(w, l, 16)
			flush(t, w)
			p := e.plan(t, true)
			if planned(p, blobKey(l)) || planned(p, pathOf(layout.LayerLink{Repo: "r", Digest: l})) {
				t.Errorf("the layer of a young manifest is planned: %v", firstItems(p))
			}
			if len(p.Items) != 1 || p.Items[0].Key != blobKey(garbage) {
				t.Errorf("want only the orphan blob planned, got %v", firstItems(p))
			}
			dry := p.Stats
			if dry.Blobs != 1 || dry.BlobBytes != int64(len("garbage-E")) || dry.Bytes != dry.BlobBytes || dry.LayerLinks != 0 || dry.Manifests != 0 {
				t.Errorf("dry-run stats %+v count items the recheck dropped", dry)
			}
			r := e.exec(t, p, execOpts{blobsToo: mode.blobsToo})
			e.checkRun(t, r)
			if p.Stats != dry {
				t.Errorf("nothing changed, yet stats went from %+v to %+v", dry, p.Stats)
			}
		})
	}
}

// F: a walk, and a whole gc, through a driver limited to one request at a
// time finish.
func TestReviewF_Concurrency1(t *testing.T) {
	e := newEnv()
	w := e.writer()
	for i := range 3 {
		img := w.Image("r", []byte(fmt.Sprintf(`{"i":%d}`, i)), []byte(fmt.Sprintf("l%d", i)))
		w.Tag("r", fmt.Sprintf("t%d", i), img.Digest)
	}
	w.Blob([]byte("orphan-F"))
	flush(t, w)
	d := storage.Limit(e.mem, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	opts := walker.DefaultOptions()
	opts.Concurrency = 1
	inv, err := walker.Collect(ctx, d, opts)
	if err != nil {
		t.Fatalf("walk with concurrency 1: %v", err)
	}
	if n := len(inv.Repositories["r"].Tags); n != 3 || inv.Blobs.Len() != 10 {
		t.Fatalf("walk found %d tags and %d blobs, want 3 and 10", n, inv.Blobs.Len())
	}
	a, err := gc.Analyze(ctx, d, mark.StorageSource(d, "", 0), gc.Options{Grace: reviewGrace, UploadGrace: reviewGrace, MaxDeleteFraction: 1, Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	p := a.Plan
	before := e.mem.Keys()
	result, _, err := execute(ctx, d, a, execOpts{concurrency: 1, exec: gc.ExecOptions{BatchSize: 1}})
	if err != nil {
		t.Fatalf("gc with concurrency 1: %v", err)
	}
	checkSafe(t, e.mem)
	checkDeleted(t, before, e.mem.Keys(), p, nil)
	checkStats(t, p, result)
	if result.Deleted[sweep.KindBlob] != 1 {
		t.Errorf("deleted %v, want the orphan blob", result.Deleted)
	}
}

// swiftMem is a Swift-like store on storage.Memory: a blob key registered
// in dlo is a dynamic large object whose segments are the objects under
// its prefix, kept in the same Memory under segments/ (which the walker's
// shards never list).
type swiftMem struct {
	*storage.Memory
	mu   sync.Mutex
	dlo  map[string]string // blob key -> segment prefix
	miss string            // LargeObject answers 404 for this key
}

var _ storage.LargeObjects = (*swiftMem)(nil)

func newSwift(e *env) *swiftMem {
	s := &swiftMem{Memory: e.mem, dlo: map[string]string{}}
	e.d = s
	return s
}

// addDLO makes the blob d a large object with n segments under prefix.
func (s *swiftMem) addDLO(t *testing.T, d digest.Digest, prefix string, n int) {
	t.Helper()
	s.mu.Lock()
	s.dlo[blobKey(d)] = prefix
	s.mu.Unlock()
	s.segments(t, prefix, n)
}

// segments writes n segments under prefix.
func (s *swiftMem) segments(t *testing.T, prefix string, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		if err := s.Put(context.Background(), fmt.Sprintf("%s/%016d", prefix, i), []byte(fmt.Sprintf("segment %d of %s", i, prefix))); err != nil {
			t.Fatal(err)
		}
	}
}

func (s *swiftMem) segmentKeys(prefix string) []string {
	var out []string
	for _, k := range s.Keys() {
		if walker.SegmentPrefixOf(k) == prefix {
			out = append(out, k)
		}
	}
	return out
}

func (s *swiftMem) LargeObject(ctx context.Context, key string) (storage.ObjectInfo, string, error) {
	s.mu.Lock()
	miss, prefix := s.miss, s.dlo[key]
	s.mu.Unlock()
	if key == miss {
		return storage.ObjectInfo{}, "", &storage.PathError{Op: "large-object", Driver: "swift", Key: key, Err: storage.ErrNotFound}
	}
	oi, err := s.Memory.Stat(ctx, key)
	return oi, prefix, err
}

func (s *swiftMem) WalkSegments(ctx context.Context, fn func(storage.ObjectInfo) error) error {
	return s.Memory.Walk(ctx, "segments/", fn)
}

func (s *swiftMem) DeleteSegments(ctx context.Context, names []string) ([]storage.DeleteResult, error) {
	return s.Memory.Delete(ctx, names)
}

// G: the segments of a blob the recheck keeps stay; those of a deleted
// blob go after it, and orphan segment sets go.
func TestReviewG_SwiftSegmentsOfProtectedBlob(t *testing.T) {
	for _, when := range []string{"pushed-before-plan", "pushed-after-plan", "pushed-while-links-deleted"} {
		for _, mode := range execModes {
			t.Run(when+"/"+mode.name, func(t *testing.T) {
				e := newEnv()
				s := newSwift(e)
				w := e.writer()
				keeper(w)
				l := w.Blob([]byte("base-layer"))
				w.LayerLink("r", l)
				g := w.Blob([]byte("garbage-dlo"))
				flush(t, w)
				s.addDLO(t, l, "segments/L", 2)
				s.addDLO(t, g, "segments/G", 2)
				s.segments(t, "segments/O", 3) // no blob: an orphan set
				push := func(relink bool) {
					e.young()
					if relink { // a push re-links a layer the repository lost
						w.LayerLink("r", l)
					}
					untaggedOver(w, l, 10)
					flush(t, w)
				}
				o := execOpts{blobsToo: mode.blobsToo}
				switch when {
				case "pushed-before-plan":
					push(false)
				case "pushed-while-links-deleted":
					o.whileLinks = func() { push(true) }
				}
				p := e.plan(t, true)
				if when != "pushed-before-plan" && !slices.ContainsFunc(p.Items, func(it sweep.Item) bool {
					return it.Kind == sweep.KindSegment && it.Digest == l
				}) {
					t.Fatalf("scenario: the segments of %s should be planned: %v", l, p.Items)
				}
				if when == "pushed-after-plan" {
					push(false)
				}
				r := e.exec(t, p, o)
				e.checkRun(t, r)
				if !has(e.mem, blobKey(l)) || len(s.segmentKeys("segments/L")) != 2 {
					t.Errorf("kept large object %s lost its segments: %v", l, s.segmentKeys("segments/L"))
				}
				if has(e.mem, blobKey(g)) || len(s.segmentKeys("segments/G")) != 0 || len(s.segmentKeys("segments/O")) != 0 {
					t.Errorf("garbage large object or orphan segments left: blob %v, %v %v", has(e.mem, blobKey(g)),
						s.segmentKeys("segments/G"), s.segmentKeys("segments/O"))
				}
				if r.plan.Stats.Segments != 5 {
					t.Errorf("stats count %d segments, want 5", r.plan.Stats.Segments)
				}
			})
		}
	}
}

// failKeys fails the deletion of chosen keys, as a store out of retries
// does.
type failKeys struct {
	storage.Driver
	fail map[string]bool
}

func (f *failKeys) Unwrap() storage.Driver { return f.Driver }

func (f *failKeys) Delete(ctx context.Context, keys []string) ([]storage.DeleteResult, error) {
	var rest []string
	var res []storage.DeleteResult
	for _, k := range keys {
		if f.fail[k] {
			res = append(res, storage.DeleteResult{Key: k, Err: fmt.Errorf("503 SlowDown (retries exhausted)")})
			continue
		}
		rest = append(rest, k)
	}
	more, err := f.Driver.Delete(ctx, rest)
	return append(res, more...), err
}

// H: a phase with failed deletions ends the run: nothing that a key whose
// deletion failed needs goes, and the next run finishes the job.
func TestReviewH_FailedDeleteStopsTheRun(t *testing.T) {
	cases := []struct {
		name           string
		deleteUntagged bool
		// setup writes the tree and returns the key whose deletion fails
		// and the keys that must survive the failing run.
		setup func(t *testing.T, e *env, w *regtree.Writer) (fail string, survive []string)
	}{
		{"layer-link", false, func(t *testing.T, e *env, w *regtree.Writer) (string, []string) {
			l := w.Blob([]byte("orphan-H"))
			w.LayerLink("r", l)
			lk := pathOf(layout.LayerLink{Repo: "r", Digest: l})
			return lk, []string{lk, blobKey(l)}
		}},
		{"revision-link", true, func(t *testing.T, e *env, w *regtree.Writer) (string, []string) {
			m := w.Image("r", []byte(`{"c":"h"}`), []byte("layer-H"))
			cfg, layer := digest.FromBytes([]byte(`{"c":"h"}`)), digest.FromBytes([]byte("layer-H"))
			rk := pathOf(layout.RevisionLink{Repo: "r", Digest: m.Digest})
			return rk, []string{rk, blobKey(m.Digest), blobKey(cfg), blobKey(layer),
				pathOf(layout.LayerLink{Repo: "r", Digest: cfg}), pathOf(layout.LayerLink{Repo: "r", Digest: layer})}
		}},
		{"large-object-blob", false, func(t *testing.T, e *env, w *regtree.Writer) (string, []string) {
			s := newSwift(e)
			g := w.Blob([]byte("garbage-dlo-H"))
			g2 := w.Blob([]byte("garbage-dlo-H2"))
			flush(t, w)
			s.addDLO(t, g, "segments/G", 2)
			s.addDLO(t, g2, "segments/G2", 2)
			return blobKey(g), append([]string{blobKey(g)}, append(s.segmentKeys("segments/G"), s.segmentKeys("segments/G2")...)...)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv()
			w := e.writer()
			keeper(w)
			fail, survive := c.setup(t, e, w)
			flush(t, w)
			p := e.plan(t, c.deleteUntagged)
			if !planned(p, fail) {
				t.Fatalf("scenario: %s should be planned: %v", fail, firstItems(p))
			}
			inner := e.d
			e.d = &failKeys{Driver: inner, fail: map[string]bool{fail: true}}
			r := e.exec(t, p, execOpts{})
			e.d = inner
			if !errors.Is(r.err, sweep.ErrIncomplete) {
				t.Fatalf("want ErrIncomplete, got %v", r.err)
			}
			if n := r.result.Failed[p.Items[slices.IndexFunc(p.Items, func(it sweep.Item) bool { return it.Key == fail })].Kind]; n != 1 {
				t.Errorf("failed %v, want the one key", r.result.Failed)
			}
			for _, k := range survive {
				if !has(e.mem, k) {
					t.Errorf("%s was deleted after %s failed to", k, fail)
				}
			}
			checkSafe(t, e.d)

			// The next run finishes, and a third has nothing to do.
			again := e.exec(t, e.plan(t, c.deleteUntagged), execOpts{})
			e.checkRun(t, again)
			if has(e.mem, fail) {
				t.Errorf("%s survived the second run", fail)
			}
			if third := e.plan(t, c.deleteUntagged); len(third.Items) != 0 {
				t.Errorf("not converged: %v", firstItems(third))
			}
		})
	}
}

// hideKey is a store whose listing comes back one key short; reads find
// it.
type hideKey struct {
	storage.Driver
	hide string
}

func (h *hideKey) Unwrap() storage.Driver { return h.Driver }

func (h *hideKey) Walk(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	return h.Driver.Walk(ctx, prefix, func(oi storage.ObjectInfo) error {
		if oi.Key == h.hide {
			return nil
		}
		return fn(oi)
	})
}

// I: a walk that misses a blob must not turn what needs it into garbage.
func TestReviewI_WalkMissingBlobRefuses(t *testing.T) {
	// The reviewer's case: Swift's HEAD of a listed blob says 404. The walk
	// fails instead of leaving the blob out.
	t.Run("swift-head-404", func(t *testing.T) {
		e := newEnv()
		s := newSwift(e)
		w := e.writer()
		keeper(w)
		m := w.Image("r", []byte(`{"c":"i"}`), []byte("layer-I"))
		flush(t, w)
		s.miss = blobKey(m.Digest)
		if _, err := walker.Collect(context.Background(), e.d, walker.DefaultOptions()); !errors.Is(err, walker.ErrVanished) {
			t.Fatalf("want the walk to fail with ErrVanished, got %v", err)
		}
	})
	// A listing that came back short. What is planned as dangling is
	// proved so before anything is deleted; what a link that stays needs
	// is protected by the recheck already.
	cases := []struct {
		name    string
		refused bool
		setup   func(w *regtree.Writer) (hide digest.Digest, dangling string)
	}{
		// The repository looks broken (a revision link to a missing
		// manifest): its links stay, whatever they are (mark.RepoResult.Broken).
		{"untagged-manifest-blob", false, func(w *regtree.Writer) (digest.Digest, string) {
			m := w.Image("r", []byte(`{"c":"i2"}`), []byte("layer-I2"))
			return m.Digest, pathOf(layout.RevisionLink{Repo: "r", Digest: m.Digest})
		}},
		// A layer link nothing uses, to a blob the listing missed: planned
		// as dangling, and the stat before deleting finds an old blob.
		{"unused-layer-blob", true, func(w *regtree.Writer) (digest.Digest, string) {
			l := w.Blob([]byte("layer-I5"))
			w.LayerLink("r", l)
			return l, pathOf(layout.LayerLink{Repo: "r", Digest: l})
		}},
		{"tagged-manifest-blob", false, func(w *regtree.Writer) (digest.Digest, string) {
			m := w.Image("r", []byte(`{"c":"i3"}`), []byte("layer-I3"))
			w.Tag("r", "v1", m.Digest)
			return m.Digest, pathOf(layout.RevisionLink{Repo: "r", Digest: m.Digest})
		}},
		{"tagged-layer-blob", false, func(w *regtree.Writer) (digest.Digest, string) {
			m := w.Image("r", []byte(`{"c":"i4"}`), []byte("layer-I4"))
			w.Tag("r", "v1", m.Digest)
			l := digest.FromBytes([]byte("layer-I4"))
			return l, pathOf(layout.LayerLink{Repo: "r", Digest: l})
		}},
	}
	for _, c := range cases {
		for _, mode := range execModes {
			t.Run(c.name+"/"+mode.name, func(t *testing.T) {
				e := newEnv()
				w := e.writer()
				keeper(w)
				hide, dangling := c.setup(w)
				flush(t, w)
				e.d = &hideKey{Driver: e.mem, hide: blobKey(hide)}
				p := e.plan(t, false)
				if planned(p, dangling) != c.refused {
					t.Fatalf("%s planned=%v, want %v: %v", dangling, planned(p, dangling), c.refused, p.Items)
				}
				r := e.exec(t, p, execOpts{blobsToo: mode.blobsToo})
				if !c.refused {
					e.d = e.mem // the real listing
					e.checkRun(t, r)
					return
				}
				if !errors.Is(r.err, sweep.ErrWalkIncomplete) {
					t.Fatalf("want ErrWalkIncomplete, got %v", r.err)
				}
				if after := e.mem.Keys(); !slices.Equal(after, r.before) {
					t.Errorf("a refused run changed storage: %d keys before, %d after", len(r.before), len(after))
				}
				checkSafe(t, e.mem)
			})
		}
	}
}

// Repository items go only when nothing of the repository stays.
func TestReviewRepositoryItemDroppedWhenSomethingStays(t *testing.T) {
	for _, upload := range []bool{false, true} {
		t.Run(fmt.Sprintf("young-upload-after-plan=%v", upload), func(t *testing.T) {
			e := newEnv()
			w := e.writer()
			keeper(w)
			l := w.Blob([]byte("orphan-R"))
			w.LayerLink("r", l)
			flush(t, w)
			p := e.plan(t, false)
			if p.Stats.Repositories != 1 {
				t.Fatalf("scenario: repository r should be planned: %v", p.Items)
			}
			if upload {
				e.young()
				w.Upload("r", "u1", time.Now(), []byte("data"))
				flush(t, w)
			}
			r := e.exec(t, p, execOpts{})
			e.checkRun(t, r)
			if got, want := r.result.Deleted[sweep.KindRepository], map[bool]int{false: 1, true: 0}[upload]; got != want {
				t.Errorf("repositories deleted: %d, want %d", got, want)
			}
			if upload && len(checkSafe(t, e.d).Repositories["r"].Uploads) != 1 {
				t.Errorf("the young upload is gone")
			}
		})
	}
}

// G2: Execute deletes a blob's segments only after that blob went, even
// when the plan it is given lacks the blob (a saved plan edited by hand to
// keep it).
func TestReviewG2_SegmentsGoOnlyAfterTheirBlob(t *testing.T) {
	for _, recheck := range []bool{false, true} {
		t.Run(fmt.Sprintf("recheck=%v", recheck), func(t *testing.T) {
			e := newEnv()
			s := newSwift(e)
			w := e.writer()
			keeper(w)
			g := w.Blob([]byte("garbage-dlo-G2"))
			flush(t, w)
			s.addDLO(t, g, "segments/G", 2)
			s.segments(t, "segments/O", 1)
			p := e.plan(t, false)
			var buf bytes.Buffer
			if err := p.WriteJSON(&buf); err != nil {
				t.Fatal(err)
			}
			edited, err := sweep.ReadPlan(&buf)
			if err != nil {
				t.Fatal(err)
			}
			n := len(edited.Items)
			edited.Items = slices.DeleteFunc(edited.Items, func(it sweep.Item) bool { return it.Key == blobKey(g) })
			if len(edited.Items) != n-1 {
				t.Fatalf("scenario: blob %s should be planned: %v", g, p.Items)
			}
			var r *sweep.Result
			if recheck {
				r, _, _, err = executePlan(context.Background(), e.d, edited, execOpts{})
			} else {
				ctx := context.Background()
				held, lctx, lerr := lock.Acquire(ctx, e.d, lock.Options{Settle: -1})
				if lerr != nil {
					t.Fatal(lerr)
				}
				r, err = edited.Execute(lctx, e.d, held, sweep.ExecOptions{})
				held.Release(ctx)
			}
			if err != nil {
				t.Fatal(err)
			}
			if !has(e.mem, blobKey(g)) || len(s.segmentKeys("segments/G")) != 2 {
				t.Errorf("the segments of kept blob %s were deleted: %v", g, s.segmentKeys("segments/G"))
			}
			if len(s.segmentKeys("segments/O")) != 0 || r.Deleted[sweep.KindSegment] != 1 {
				t.Errorf("the orphan segment should go: deleted %v", r.Deleted)
			}
			checkSafe(t, e.d)
		})
	}
}

// J: a tag's manifest is missing at the first recheck and pushed again
// before the second: the second recheck must read it again, not answer
// "missing" from the first, or the blobs it needs go (issue 15, item 2).
// The rechecks read through what gc ships: the mark's parse, then the
// source (mark.Result.Manifests).
func TestReviewJ_ManifestMissingAtFirstRecheckPushedBeforeSecond(t *testing.T) {
	ctx := context.Background()
	e := newEnv()
	w := e.writer()
	keeper(w)
	img := w.Image("r", []byte(`{"j":1}`), []byte("layer-J1"), []byte("layer-J2"))
	w.Tag("r", "t", img.Digest)
	flush(t, w)
	manifestKey, revKey := blobKey(img.Digest), pathOf(layout.RevisionLink{Repo: "r", Digest: img.Digest})
	body, err := e.mem.Get(ctx, manifestKey, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	// The tag points at a manifest storage lost: not blocking.
	if _, err := e.mem.Delete(ctx, []string{manifestKey, revKey}); err != nil {
		t.Fatal(err)
	}
	man, err := manifest.Parse(body)
	if err != nil {
		t.Fatal(err)
	}

	p := e.plan(t, true)
	r := e.exec(t, p, execOpts{exec: gc.ExecOptions{AfterLinks: func(ctx context.Context) error {
		// The client pushes the manifest again: its blobs are all still
		// there, so only the manifest and its revision link are written.
		e.young()
		if err := e.mem.Put(ctx, manifestKey, body); err != nil {
			return err
		}
		return e.mem.Put(ctx, revKey, []byte(img.Digest))
	}}})
	if r.err != nil {
		t.Fatal(r.err)
	}
	for _, b := range man.Blobs {
		if !has(e.mem, blobKey(b)) {
			t.Errorf("blob %s of the manifest pushed again was deleted", b)
		}
	}
}

// K: a client re-pushes an untagged image in place during the link phase:
// it saw the layer links (HEAD 200), uploaded nothing, and its manifest
// PUT landed; the link phase then deleted the planned layer links. The
// recheck before the blobs writes them again (issue 15, "heal").
func TestReviewK_RePushDuringLinkPhaseIsHealed(t *testing.T) {
	e := newEnv()
	w := e.writer()
	keeper(w)
	m := w.Image("r", []byte(`{"k":1}`), []byte("layer-K1"), []byte("layer-K2"))
	flush(t, w)
	p := e.plan(t, true)
	layerLink := pathOf(layout.LayerLink{Repo: "r", Digest: digest.FromBytes([]byte("layer-K1"))})
	if !planned(p, layerLink) || !planned(p, blobKey(m.Digest)) {
		t.Fatalf("scenario: the untagged image should be planned: %v", firstItems(p))
	}
	r := e.exec(t, p, execOpts{whileLinks: func() {
		e.young()
		w := e.writer()
		w.Revision("r", m.Digest)
		w.Tag("r", "again", m.Digest)
		flush(t, w)
	}})
	if r.err != nil {
		t.Fatal(r.err)
	}
	checkSafe(t, e.mem)
	if !has(e.mem, layerLink) {
		t.Errorf("layer link %s of the image pushed again is gone", layerLink)
	}
	if r.recheck.Healed != 3 { // config and two layers
		t.Errorf("healed %d links, want 3: %+v", r.recheck.Healed, r.recheck)
	}
}

// pushDuringWalk is a store that, during the nth listing of the
// repository tree, writes (a push) when the listing reaches the shard of
// repositories starting with z: with one listing at a time, the shard of
// those starting with a is listed already.
type pushDuringWalk struct {
	storage.Driver
	mu    sync.Mutex
	n     int
	walks int
	write func()
}

func (p *pushDuringWalk) Unwrap() storage.Driver { return p.Driver }

func (p *pushDuringWalk) Walk(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	p.mu.Lock()
	if prefix == layout.RepositoriesPrefix+"a" { // a listing of the tree begins
		p.walks++
	}
	now := p.walks == p.n && prefix == layout.RepositoriesPrefix+"z"
	p.mu.Unlock()
	if now {
		p.write()
	}
	return p.Driver.Walk(ctx, prefix, fn)
}

// L: pushes land while the recheck before the blobs lists the tree, one in
// a repository the listing has passed already, one in a repository it has
// not reached: the listing sees the second, so storage is changing, and
// the listing is repeated until one finds nothing written since the
// previous one began; the first push keeps what it needs. (A listing that
// sees no change ends the loop: a push after it passed the repository is
// the window docs/safety.md documents.)
func TestReviewL_PushDuringRecheckWalkIsSeenByTheNext(t *testing.T) {
	e := newEnv()
	w := e.writer()
	keeper(w)
	m := w.Image("a", []byte(`{"l":1}`), []byte("layer-L"))
	z := w.Image("z", []byte(`{"l":2}`), []byte("layer-L2"))
	flush(t, w)
	e.concurrency = 1 // the listing's shards in order
	p := e.plan(t, true)
	if !planned(p, blobKey(m.Digest)) {
		t.Fatalf("scenario: the untagged image should be planned: %v", firstItems(p))
	}
	// The first recheck lists the tree; the second listing is the
	// recheck before the blobs.
	pd := &pushDuringWalk{Driver: e.mem, n: 2, write: func() {
		e.young()
		w := regtree.NewWriter(e.mem, 1)
		w.Revision("a", m.Digest)
		w.Tag("a", "late", m.Digest)
		for _, l := range [][]byte{[]byte(`{"l":1}`), []byte("layer-L")} {
			w.LayerLink("a", digest.FromBytes(l))
		}
		w.Tag("z", "other", z.Digest)
		if err := w.Flush(context.Background()); err != nil {
			panic(err)
		}
	}}
	e.d = pd
	r := e.exec(t, p, execOpts{})
	if r.err != nil {
		t.Fatal(r.err)
	}
	if pd.walks < 3 {
		t.Errorf("the recheck listed the tree %d times in all; want the listing repeated after the push", pd.walks)
	}
	e.d = e.mem
	checkSafe(t, e.mem)
	if !has(e.mem, blobKey(m.Digest)) {
		t.Errorf("the manifest pushed during the recheck's listing is gone")
	}
}

// vanishing is a store on which one link is listed but gone when read:
// the registry deleted it while the walk listed.
type vanishing struct {
	storage.Driver
	key string
}

func (v *vanishing) Unwrap() storage.Driver { return v.Driver }

func (v *vanishing) Get(ctx context.Context, key string, max int64) ([]byte, error) {
	if key == v.key {
		return nil, &storage.PathError{Op: "get", Key: key, Err: storage.ErrNotFound}
	}
	return v.Driver.Get(ctx, key, max)
}

// M: a link listed, then gone when read, does not end the walk: its
// repository is changing, and nothing in it is planned this run.
func TestReviewM_LinkGoneWhenReadLeavesItsRepositoryOutOfThePlan(t *testing.T) {
	ctx := context.Background()
	e := newEnv()
	w := e.writer()
	keeper(w)
	m := w.Image("r", []byte(`{"m":1}`), []byte("layer-M"))
	other := w.Image("s", []byte(`{"m":2}`), []byte("layer-M2"))
	w.Tag("r", "t", m.Digest)
	flush(t, w)
	tagKey := pathOf(layout.TagCurrentLink{Repo: "r", Tag: "t"})
	o := reviewOptions(true, 4)
	o.Walk = walker.DefaultOptions()
	o.Walk.TrustETags = false // every link is read
	d := &vanishing{e.mem, tagKey}
	a, err := gc.Analyze(ctx, d, mark.StorageSource(d, "", 0), o)
	if err != nil {
		t.Fatalf("a link deleted during the walk ended the run: %v", err)
	}
	if a.Inventory.Changing["r"] != tagKey {
		t.Fatalf("changing repositories: %v", a.Inventory.Changing)
	}
	p := a.Plan
	for _, it := range p.Items {
		if it.Repo == "r" || it.Digest == m.Digest {
			t.Errorf("planned %s %s of the changing repository", it.Kind, it.Key)
		}
	}
	if !planned(p, blobKey(other.Digest)) {
		t.Errorf("the other repository's untagged image is not planned: %v", firstItems(p))
	}
	if p.Changing["r"] != tagKey {
		t.Errorf("the plan does not name the changing repository: %v", p.Changing)
	}
}

// N: a link planned as dangling whose blob a push uploaded after the walk
// listed the blobs leaves the plan; the run goes on.
func TestReviewN_DanglingLinkWhoseBlobArrivedAfterTheWalk(t *testing.T) {
	e := newEnv()
	w := e.writer()
	keeper(w)
	l := digest.FromBytes([]byte("layer-N"))
	w.LayerLink("r", l)
	flush(t, w)
	p := e.plan(t, false)
	link := pathOf(layout.LayerLink{Repo: "r", Digest: l})
	if !planned(p, link) {
		t.Fatalf("scenario: the dangling link should be planned: %v", firstItems(p))
	}
	e.young()
	if err := e.mem.Put(context.Background(), blobKey(l), []byte("layer-N")); err != nil {
		t.Fatal(err)
	}
	r := e.exec(t, p, execOpts{})
	if r.err != nil {
		t.Fatalf("a blob uploaded since the walk ended the run: %v", r.err)
	}
	if !has(e.mem, link) || !has(e.mem, blobKey(l)) {
		t.Errorf("the link or the blob uploaded since is gone")
	}
	if r.recheck.Changed == 0 {
		t.Errorf("the dropped item is not counted: %+v", r.recheck)
	}
}

// O: a broken repository (a tag names a manifest storage lacks) keeps its
// layer links, their blobs and the link to the missing manifest, so that
// pushing the manifest again recovers the image.
func TestReviewO_BrokenRepositoryKeepsItsLayers(t *testing.T) {
	ctx := context.Background()
	e := newEnv()
	w := e.writer()
	keeper(w)
	m := w.Image("r", []byte(`{"o":1}`), []byte("layer-O"))
	w.Tag("r", "t", m.Digest)
	flush(t, w)
	body, err := e.mem.Get(ctx, blobKey(m.Digest), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.mem.Delete(ctx, []string{blobKey(m.Digest)}); err != nil {
		t.Fatal(err)
	}
	p := e.plan(t, true)
	for _, it := range p.Items {
		if it.Repo == "r" || it.Kind == sweep.KindBlob {
			t.Errorf("planned %s %s in a broken repository", it.Kind, it.Key)
		}
	}
	r := e.exec(t, p, execOpts{})
	if r.err != nil {
		t.Fatal(r.err)
	}
	// Pushing the manifest alone recovers the image.
	if err := e.mem.Put(ctx, blobKey(m.Digest), body); err != nil {
		t.Fatal(err)
	}
	checkSafe(t, e.mem)
}

// P: a planned revision link that a push writes again after the recheck,
// just before the link phase, stays, and so does what it needs: links are
// stat'ed before their batch on every store (S3 too), by default.
func TestReviewP_StatLinksKeepsALinkRewrittenAfterTheRecheck(t *testing.T) {
	e := newEnv()
	w := e.writer()
	keeper(w)
	m := w.Image("r", []byte(`{"p":1}`), []byte("layer-P"))
	flush(t, w)
	p := e.plan(t, true)
	rev := pathOf(layout.RevisionLink{Repo: "r", Digest: m.Digest})
	if !planned(p, rev) {
		t.Fatalf("scenario: %s should be planned", rev)
	}
	r := e.exec(t, p, execOpts{exec: gc.ExecOptions{BeforePhase: func(ph int) error {
		if ph == 1 {
			e.young()
			w := e.writer()
			w.Revision("r", m.Digest)
			w.Tag("r", "t", m.Digest)
			flush(t, w)
		}
		return nil
	}}})
	if r.err != nil {
		t.Fatal(r.err)
	}
	result := r.result
	if result.Kept[sweep.KindRevisionLink] != 1 {
		t.Errorf("kept %v, want the rewritten revision link", result.Kept)
	}
	checkSafe(t, e.mem)
	if !has(e.mem, rev) || !has(e.mem, blobKey(m.Digest)) {
		t.Errorf("the rewritten revision link or its manifest is gone")
	}
}

func firstItems(p *sweep.Plan) []string {
	var out []string
	for i, it := range p.Items {
		if i == 5 {
			break
		}
		out = append(out, it.Kind+" "+it.Key)
	}
	return out
}
