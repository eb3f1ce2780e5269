package harborgc_test

import (
	"context"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/harbordb"
	"github.com/regsweep/regsweep/harbordb/harbortest"
	"github.com/regsweep/regsweep/harborgc"
	"github.com/regsweep/regsweep/internal/testenv"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/sweep"
	"github.com/regsweep/regsweep/walker"
)

// A push that touches a planned blob's row between the snapshot and the
// claim wins: the blob leaves the plan and its row is left as the push
// wrote it. So does a storage-only blob that gained a row meanwhile.
func TestClaimLosesToAConcurrentPush(t *testing.T) {
	ctx := context.Background()
	h := harbortest.Create(t, testenv.Postgres(t), harbortest.Latest)
	h.Project("lib")
	doomed := harbortest.FakeImage("doomed", 2, "v1")
	h.DeleteArtifact(h.PushImage("lib/app", doomed))
	h.Age(3 * time.Hour)

	db, err := harbordb.Open(ctx, harbordb.Config{URL: h.DSN})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	snap, err := db.Snapshot(ctx, 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	rowless := harbortest.FakeBlob("storage only", 10, harbortest.MediaTypeDockerLayer)
	plan := &sweep.Plan{}
	for _, b := range append(doomed.Blobs(), rowless) {
		plan.Items = append(plan.Items, sweep.Item{Kind: sweep.KindBlob, Key: "k/" + b.Digest.Encoded(), Digest: b.Digest, Size: b.Size})
	}

	// Meanwhile: a push re-uses the first layer, and registers the
	// storage-only blob.
	touched := doomed.Layers[0].Digest
	h.Touch(touched)
	h.UploadBlob("lib", rowless)

	p := &harborgc.Protocol{DB: db, Snap: snap, Live: harborgc.NewLiveness(snap, false), Window: 2 * time.Hour}
	// The rows a push registered since the snapshot leave the batch before
	// the claim, as Execute checks each batch.
	kept, err := p.CheckBatch(ctx, 3, plan.Items)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Items, err = p.Claim(ctx, kept); err != nil {
		t.Fatal(err)
	}
	planned := map[digest.Digest]bool{}
	for _, it := range plan.Items {
		planned[it.Digest] = true
	}
	if planned[touched] || planned[rowless.Digest] || len(plan.Items) != 3 {
		t.Fatalf("plan after the claim: %v; the touched and the newly registered blob must leave it", plan.Items)
	}
	if p.Stats.LostRace != 1 || p.Stats.NewRows != 1 || p.Stats.Claimed != 3 {
		t.Errorf("stats %+v", p.Stats)
	}
	if r := h.Blob(touched); r.Status != harbordb.StatusNone {
		t.Errorf("the touched row is %+v", r)
	}

	// The sweep deletes two of the three, the third fails: its row must
	// end deletefailed, never deleting; the two deleted rows go.
	items := plan.Items
	p.Record(items[0], nil)
	p.Record(items[1], &storage.PathError{Op: "delete", Key: items[1].Key, Err: storage.ErrNotFound})
	p.Record(items[2], storage.ErrTransient)
	if err := p.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	if h.Blob(items[0].Digest).Exists || h.Blob(items[1].Digest).Exists {
		t.Errorf("rows of deleted blobs remain")
	}
	if r := h.Blob(items[2].Digest); !r.Exists || r.Status != harbordb.StatusDeleteFailed {
		t.Errorf("the blob whose deletion failed: %+v, want deletefailed", r)
	}
	if p.Stats.FreedBytes != items[0].Size {
		t.Errorf("freed %d bytes, want only the blob really deleted (%d)", p.Stats.FreedBytes, items[0].Size)
	}
	if n := h.Count(`SELECT count(*) FROM blob WHERE status = 'deleting'`); n != 0 {
		t.Errorf("%d rows left deleting", n)
	}
}

// A database that names none of most storage repositories is likely
// another registry's: the run refuses rather than delete their links.
func TestGuardUnknownRepositories(t *testing.T) {
	snap := &harbordb.Snapshot{Repositories: map[string]harbordb.Repository{"lib/app": {Name: "lib/app"}}}
	l := harborgc.NewLiveness(snap, false)
	inv := walker.NewInventory()
	for _, name := range []string{"lib/app", "other/a", "sys_harb0r/v/r"} {
		inv.Repo(name)
	}
	if g := l.Guard(inv); g != nil {
		t.Errorf("one known, one unknown, one system repository: guard %v", g)
	}
	inv.Repo("other/b")
	if g := l.Guard(inv); g == nil || g.Name != harborgc.GuardUnknownRepositories {
		t.Errorf("two of three repositories unknown: guard %v", g)
	}
}
