package sweep_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/finding"
	"github.com/regsweep/regsweep/internal/regtree"
	"github.com/regsweep/regsweep/internal/storecheck"
	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/lock"
	"github.com/regsweep/regsweep/mark"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/sweep"
	"github.com/regsweep/regsweep/walker"
)

type gcRun struct {
	plan   *sweep.Plan
	result *sweep.Result
	err    error
}

func gc(t *testing.T, d storage.Driver, deleteUntagged bool, grace time.Duration, exec sweep.ExecOptions) gcRun {
	t.Helper()
	ctx := context.Background()
	_, plan := walkAndPlan(t, d, deleteUntagged, grace)
	held, lctx, err := lock.Acquire(ctx, d, lock.Options{Settle: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release(ctx)
	result, err := plan.Execute(lctx, d, held, exec)
	return gcRun{plan, result, err}
}

// walkAndPlan walks d, marks it and plans, as gc does before it deletes.
func walkAndPlan(t *testing.T, d storage.Driver, deleteUntagged bool, grace time.Duration) (*walker.Inventory, *sweep.Plan) {
	t.Helper()
	ctx := context.Background()
	walked := time.Now()
	inv, err := walker.Collect(ctx, d, walker.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	src := mark.StorageSource(d, "", 0)
	res, err := mark.Run(ctx, inv, src, mark.Options{DeleteUntagged: deleteUntagged})
	if err != nil {
		t.Fatal(err)
	}
	o := sweep.Options{Now: time.Now(), WalkStarted: walked, Grace: grace, UploadGrace: grace, DeleteUntagged: deleteUntagged, MaxDeleteFraction: 0.9}
	return inv, build(t, inv, res, src, o)
}

// build makes a plan as the gc package does: candidates, a recheck
// against the walk itself, guards.
func build(t *testing.T, inv *walker.Inventory, res *mark.Result, src mark.Source, o sweep.Options) *sweep.Plan {
	t.Helper()
	plan := sweep.Build(inv, res, sweep.StorageRef{Driver: "memory", Location: "memory://"}, o)
	if _, _, err := plan.Recheck(context.Background(), inv, true, res, src, 4, nil); err != nil {
		t.Fatal(err)
	}
	plan.Guards = plan.Judge(inv, res, o)
	return plan
}

func checkIntact(t *testing.T, d storage.Driver) *walker.Inventory { return storecheck.Intact(t, d) }

var spec = regtree.Spec{Seed: 3, Repositories: 15, ImagesPerRepo: 5, TagsPerRepo: 2, LayersPerImg: 3,
	SharedLayers: 4, OrphanBlobs: 10, MultiArch: true, Uploads: 3}

func TestGCDeletesGarbageKeepsImagesAndConverges(t *testing.T) {
	for _, untagged := range []bool{false, true} {
		t.Run(fmt.Sprintf("deleteUntagged=%v", untagged), func(t *testing.T) {
			d := storage.NewMemory(nil, nil)
			if _, err := regtree.Generate(context.Background(), d, spec, 4); err != nil {
				t.Fatal(err)
			}
			before := checkIntact(t, d)
			run := gc(t, d, untagged, 0, sweep.ExecOptions{})
			if run.err != nil {
				t.Fatalf("gc: %v (guards %v)", run.err, run.plan.Guards)
			}
			after := checkIntact(t, d)
			if run.plan.Stats.Blobs < spec.OrphanBlobs {
				t.Errorf("planned %d blobs, want at least the %d orphans", run.plan.Stats.Blobs, spec.OrphanBlobs)
			}
			if got := before.Blobs.Len() - after.Blobs.Len(); got != run.plan.Stats.Blobs || run.result.Deleted[sweep.KindBlob] != got {
				t.Errorf("blobs: %d gone, plan said %d, result says %d", got, run.plan.Stats.Blobs, run.result.Deleted[sweep.KindBlob])
			}
			if before.BlobBytes-after.BlobBytes != run.plan.Stats.BlobBytes || run.result.FreedBytes != run.plan.Stats.Bytes {
				t.Errorf("bytes: %d freed, plan said %d, result says %d", before.BlobBytes-after.BlobBytes, run.plan.Stats.BlobBytes, run.result.FreedBytes)
			}
			if untagged && run.plan.Stats.Manifests == 0 {
				t.Errorf("--delete-untagged planned no manifests on a tree with re-tagged images")
			}
			if !untagged && run.plan.Stats.Manifests != 0 {
				t.Errorf("without --delete-untagged no manifest may go, planned %d", run.plan.Stats.Manifests)
			}
			for _, r := range after.Repositories {
				if len(r.Uploads) != 0 {
					t.Errorf("%s: uploads left: %d", r.Name, len(r.Uploads))
				}
			}
			second := gc(t, d, untagged, 0, sweep.ExecOptions{})
			if second.err != nil || len(second.plan.Items) != 0 {
				t.Errorf("second run: %v, plans %d items, first %v", second.err, len(second.plan.Items), firstItems(second.plan))
			}
		})
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

func TestGCInterruptedBetweenPhasesLeavesOnlyGarbage(t *testing.T) {
	for stop := 2; stop <= 5; stop++ { // phases with items in this tree
		t.Run(fmt.Sprintf("stop-before-phase-%d", stop), func(t *testing.T) {
			d := storage.NewMemory(nil, nil)
			if _, err := regtree.Generate(context.Background(), d, spec, 4); err != nil {
				t.Fatal(err)
			}
			killed := errors.New("killed")
			run := gc(t, d, true, 0, sweep.ExecOptions{BeforePhase: func(p int) error {
				if p >= stop {
					return killed
				}
				return nil
			}})
			if !errors.Is(run.err, killed) {
				t.Fatalf("want the run cut off, got %v", run.err)
			}
			checkIntact(t, d)
			if again := gc(t, d, true, 0, sweep.ExecOptions{}); again.err != nil {
				t.Fatal(again.err)
			}
			checkIntact(t, d)
			if third := gc(t, d, true, 0, sweep.ExecOptions{}); len(third.plan.Items) != 0 {
				t.Errorf("not converged: %v", firstItems(third.plan))
			}
		})
	}
}

func TestGraceKeepsYoungObjects(t *testing.T) {
	d := storage.NewMemory(nil, nil)
	if _, err := regtree.Generate(context.Background(), d, spec, 4); err != nil {
		t.Fatal(err)
	}
	run := gc(t, d, true, time.Hour, sweep.ExecOptions{})
	if run.err != nil {
		t.Fatal(run.err)
	}
	if n := len(run.plan.Items); n != 0 {
		t.Errorf("everything is younger than the grace, yet %d items were planned: %v", n, firstItems(run.plan))
	}
}

func TestGuardsRefuse(t *testing.T) {
	d := storage.NewMemory(nil, nil)
	w := regtree.NewWriter(d, 2)
	for i := 0; i < 5; i++ {
		w.Blob([]byte(fmt.Sprintf("orphan %d", i)))
	}
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	run := gc(t, d, false, 0, sweep.ExecOptions{})
	var ge *sweep.GuardError
	if !errors.As(run.err, &ge) {
		t.Fatalf("want a guard error, got %v", run.err)
	}
	names := map[string]bool{}
	for _, g := range ge.Guards {
		names[g.Name] = true
	}
	if !names[sweep.GuardNoRepositories] || !names[sweep.GuardNothingMarked] || !names[sweep.GuardDeleteFraction] {
		t.Errorf("guards: %v", ge.Guards)
	}
	// Nothing was deleted, and the lock is gone again.
	if keys := d.Keys(); len(keys) != 5 {
		t.Errorf("keys after a refused run: %v", keys)
	}
}

// TestNothingMarkedIgnoresMissingDigests: a revision link to a manifest
// storage lacks is kept by the mark, but proves nothing about the blobs
// that are there; it must not disarm the nothing_marked guard.
func TestNothingMarkedIgnoresMissingDigests(t *testing.T) {
	d := storage.NewMemory(nil, nil)
	w := regtree.NewWriter(d, 2)
	for i := 0; i < 3; i++ {
		w.Blob([]byte(fmt.Sprintf("orphan %d", i)))
	}
	w.Revision("lib/app", digest.FromString("a manifest that was never stored"))
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := d.Keys()
	run := gc(t, d, false, 0, sweep.ExecOptions{})
	var ge *sweep.GuardError
	if !errors.As(run.err, &ge) {
		t.Fatalf("want a guard error, got %v", run.err)
	}
	if !slices.ContainsFunc(ge.Guards, func(g sweep.Guard) bool { return g.Name == sweep.GuardNothingMarked }) {
		t.Errorf("want %s among %v", sweep.GuardNothingMarked, ge.Guards)
	}
	if after := d.Keys(); !slices.Equal(before, after) {
		t.Errorf("a refused run changed storage: %v -> %v", before, after)
	}
}

// TestWalkGuardsIgnoreInFlightTempFiles: distribution's filesystem driver
// writes a link as <key>.<uuid>.tmp and renames it; a walk under a busy
// registry sees those. They hide no link, so they trip no guard, while any
// other stray key in the repository tree still does.
func TestWalkGuardsIgnoreInFlightTempFiles(t *testing.T) {
	d := storage.NewMemory(nil, nil)
	if _, err := regtree.Generate(context.Background(), d, spec, 4); err != nil {
		t.Fatal(err)
	}
	link, err := layout.Path(layout.RevisionLink{Repo: "lib/app", Digest: digest.FromString("in flight")})
	if err != nil {
		t.Fatal(err)
	}
	d.PutAt(link+".0f8fad5b-d9cb-469f-a165-70867728950e.tmp", []byte("sha256:"), time.Now())
	inv, err := walker.Collect(context.Background(), d, walker.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Unknown) != 1 {
		t.Fatalf("want the temporary file listed as unknown, got %v", inv.Unknown)
	}
	if g := sweep.WalkGuards(inv); len(g) != 0 {
		t.Fatalf("a temporary link file tripped %v", g)
	}
	d.PutAt(layout.RepositoriesPrefix+"lib/app/_manifests/junk", []byte("x"), time.Now())
	if inv, err = walker.Collect(context.Background(), d, walker.DefaultOptions()); err != nil {
		t.Fatal(err)
	}
	if g := sweep.WalkGuards(inv); len(g) != 1 || g[0].Name != sweep.GuardUnknownKeys {
		t.Fatalf("a stray key must trip %s, got %v", sweep.GuardUnknownKeys, g)
	}
}

func TestExecuteNeedsALock(t *testing.T) {
	p := &sweep.Plan{}
	if _, err := p.Execute(context.Background(), storage.NewMemory(nil, nil), nil, sweep.ExecOptions{}); err == nil {
		t.Fatal("Execute without a lock must refuse")
	}
}

// TestReadPlanRefusesKeysThatNameSomethingElse: deletion goes by key, the
// recheck by digest; an edited plan must not get a kept key past both.
func TestReadPlanRefusesKeysThatNameSomethingElse(t *testing.T) {
	d := storage.NewMemory(nil, nil)
	if _, err := regtree.Generate(context.Background(), d, spec, 4); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	inv, err := walker.Collect(ctx, d, walker.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	src := mark.StorageSource(d, "", 0)
	res, err := mark.Run(ctx, inv, src, mark.Options{DeleteUntagged: true})
	if err != nil {
		t.Fatal(err)
	}
	plan := build(t, inv, res, src, sweep.Options{Now: time.Now(), DeleteUntagged: true, MaxDeleteFraction: 1})
	var buf bytes.Buffer
	if err := plan.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	if _, err := sweep.ReadPlan(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatalf("an untouched plan must read back: %v", err)
	}
	kept := "docker/registry/v2/blobs/sha256/00/" + strings.Repeat("0", 64) + "/data"
	edits := []func(it *sweep.Item) bool{
		func(it *sweep.Item) bool { // a blob item pointed at another blob
			if it.Kind != sweep.KindBlob {
				return false
			}
			it.Key = kept
			return true
		},
		func(it *sweep.Item) bool { // an upload file item pointed at a blob
			if it.Kind != sweep.KindUploadFile {
				return false
			}
			it.Key = kept
			return true
		},
		func(it *sweep.Item) bool { // a layer link item pointed at the lock
			if it.Kind != sweep.KindLayerLink {
				return false
			}
			it.Key = "regsweep/lock.json"
			return true
		},
	}
	for i, edit := range edits {
		var p sweep.Plan
		if err := json.Unmarshal(buf.Bytes(), &p); err != nil {
			t.Fatal(err)
		}
		edited := false
		for j := range p.Items {
			if edit(&p.Items[j]) {
				edited = true
				break
			}
		}
		if !edited {
			t.Fatalf("edit %d found no item to edit", i)
		}
		b, _ := json.Marshal(&p)
		if _, err := sweep.ReadPlan(bytes.NewReader(b)); err == nil {
			t.Errorf("edit %d: an edited plan was accepted", i)
		}
	}
}

// A batch check sees every batch before it is deleted, and what it leaves
// out stays in storage and is counted as kept, not deleted.
func TestCheckBatchKeepsWhatItLeavesOut(t *testing.T) {
	d := storage.NewMemory(nil, nil)
	if _, err := regtree.Generate(context.Background(), d, spec, 4); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var spared []string
	seen := map[int]int{}
	run := gc(t, d, true, 0, sweep.ExecOptions{BatchSize: 3, CheckBatch: func(_ context.Context, phase int, batch []sweep.Item) ([]sweep.Item, error) {
		mu.Lock()
		defer mu.Unlock()
		seen[phase] += len(batch)
		if len(batch) > 1 && batch[0].Kind == sweep.KindBlob {
			spared = append(spared, batch[0].Key)
			return batch[1:], nil
		}
		return batch, nil
	}})
	if run.err != nil {
		t.Fatal(run.err)
	}
	if len(spared) == 0 {
		t.Fatal("no blob batch of two or more: the test tree is too small")
	}
	for _, k := range spared {
		if _, err := d.Stat(context.Background(), k); err != nil {
			t.Errorf("%s was left out by the check but is gone: %v", k, err)
		}
	}
	if run.result.Kept[sweep.KindBlob] != len(spared) || run.result.Deleted[sweep.KindBlob] != run.plan.Stats.Blobs-len(spared) {
		t.Errorf("kept %d deleted %d of %d planned blobs, want %d kept", run.result.Kept[sweep.KindBlob], run.result.Deleted[sweep.KindBlob], run.plan.Stats.Blobs, len(spared))
	}
	total := 0
	for _, n := range seen {
		total += n
	}
	if total != len(run.plan.Items) {
		t.Errorf("the check saw %d items, the plan has %d", total, len(run.plan.Items))
	}
	checkIntact(t, d)
}

// A plan's findings: what each item reclaims (an upload as one finding,
// its files' bytes summed), and every layer link to a blob storage lacks,
// the planned ones and those gc keeps.
func TestPlanFindings(t *testing.T) {
	ctx := context.Background()
	d := storage.NewMemory(nil, nil)
	w := regtree.NewWriter(d, 4)
	lost := []byte("a layer storage lost")
	app := w.Image("app", []byte(`{"c":1}`), []byte("kept layer"), lost)
	w.Tag("app", "v1", app.Digest)
	old := w.Image("app", []byte(`{"c":2}`), []byte("old layer")) // untagged
	orphan := w.Blob([]byte("orphan"))
	gone := digest.FromString("gone")
	w.LayerLink("app", gone) // no manifest needs it
	w.Upload("app", "u1", time.Unix(0, 0), []byte("partial"))
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	key := func(s layout.Spec) string { k, _ := layout.Path(s); return k }
	if _, err := d.Delete(ctx, []string{key(layout.BlobData{Digest: digest.FromBytes(lost)})}); err != nil {
		t.Fatal(err)
	}
	inv, plan := walkAndPlan(t, d, true, 0)
	got := map[string]string{} // kind and key -> explanation
	var uploadBytes int64
	for _, f := range plan.Findings(inv) {
		got[string(f.Kind)+" "+f.Key] = f.Explanation
		if f.Kind == finding.StaleUpload {
			uploadBytes = f.Size
		}
	}
	want := map[string]string{
		"untagged_manifest " + key(layout.RevisionLink{Repo: "app", Digest: old.Digest}): "no tag reaches this manifest (through indexes and referrers)",
		"orphan_blob " + key(layout.BlobData{Digest: orphan}):                            "no kept manifest references this blob",
		"dangling_layer_link " + key(layout.LayerLink{Repo: "app", Digest: gone}):        "layer link to a blob storage lacks: pulls of it fail",
		"dangling_layer_link " + key(layout.LayerLink{Repo: "app", Digest: digest.FromBytes(lost)}): "layer link to a blob storage lacks: pulls of it fail " +
			"(a kept manifest references it, so gc keeps the link)",
		"stale_upload " + layout.RepoPrefix("app") + "_uploads/u1/": "upload abandoned since 1970-01-01T00:00:00Z",
	}
	for _, b := range []digest.Digest{old.Digest, digest.FromString(`{"c":2}`), digest.FromString("old layer")} {
		want["orphan_blob "+key(layout.BlobData{Digest: b})] = "no kept manifest references this blob"
	}
	for _, b := range []digest.Digest{digest.FromString(`{"c":2}`), digest.FromString("old layer")} {
		want["unused_layer_link "+key(layout.LayerLink{Repo: "app", Digest: b})] = "no kept manifest of this repository uses the blob"
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: explanation %q, want %q", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected finding %s: %s", k, got[k])
		}
	}
	if want := int64(len("1970-01-01T00:00:00Z") + len("hash-state") + len("partial")); uploadBytes != want {
		t.Errorf("the stale upload's size is %d, want its files' %d", uploadBytes, want)
	}
}
