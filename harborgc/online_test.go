package harborgc_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/blobindex"
	"github.com/regsweep/regsweep/harbordb"
	"github.com/regsweep/regsweep/harbordb/harbortest"
	"github.com/regsweep/regsweep/harborgc"
	"github.com/regsweep/regsweep/internal/testenv"
	"github.com/regsweep/regsweep/sweep"
	"github.com/regsweep/regsweep/walker"
)

const window = 2 * time.Hour

func openHarbor(t *testing.T, v harbortest.Variant) (*harbortest.Harbor, *harbordb.DB) {
	t.Helper()
	h := harbortest.Create(t, testenv.Postgres(t), v)
	db, err := harbordb.Open(context.Background(), harbordb.Config{URL: h.DSN})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return h, db
}

func snapshot(t *testing.T, db *harbordb.DB) *harbordb.Snapshot {
	t.Helper()
	snap, err := db.Snapshot(context.Background(), window)
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// A claim that fails part-way (here in its second chunk of 1000 rows)
// leaves no row in deleting: Harbor would refuse pushes of those digests.
func TestClaimFailureReleasesWhatItClaimed(t *testing.T) {
	ctx := context.Background()
	h, db := openHarbor(t, harbortest.Latest)
	h.GarbageBlobs(1500)
	snap := snapshot(t, db)
	var rows []harbordb.Blob
	for _, b := range snap.Blobs {
		rows = append(rows, b)
	}
	slices.SortFunc(rows, func(a, b harbordb.Blob) int { return int(a.ID - b.ID) })
	plan := &sweep.Plan{}
	for _, b := range rows {
		plan.Items = append(plan.Items, sweep.Item{Kind: sweep.KindBlob, Key: "k/" + b.Digest.Encoded(), Digest: b.Digest, Size: b.Size})
	}
	// The plan is claimed in its order: the second chunk starts at row 1000.
	slices.SortFunc(plan.Items, func(a, b sweep.Item) int { return int(snap.Blobs[a.Digest].ID - snap.Blobs[b.Digest].ID) })
	h.FailClaimsFrom(rows[1000].ID)

	p := &harborgc.Protocol{DB: db, Snap: snap, Live: harborgc.NewLiveness(snap, false), Window: window}
	if _, err := p.Claim(ctx, plan.Items); err == nil || !strings.Contains(err.Error(), "injected failure") {
		t.Fatalf("Claim = %v, want the injected failure", err)
	}
	if n := h.Count(`SELECT count(*) FROM blob WHERE status = 'deleting'`); n != 0 {
		t.Errorf("%d rows left in deleting: pushes of those digests are refused", n)
	}
}

// --delete-untagged keeps what was pushed within the window, as --grace
// promises: a CI job tags after pushing by digest, a proxy cache pulls by
// digest.
func TestUntaggedWithinWindowStaysARoot(t *testing.T) {
	h, db := openHarbor(t, harbortest.Latest)
	h.Project("lib")
	old := harbortest.FakeImage("old", 1)
	h.PushImage("lib/app", old)
	h.Age(3 * time.Hour)
	young := harbortest.FakeImage("young", 1)
	h.PushImage("lib/app", young)
	unknown := harbortest.FakeImage("push time unknown", 1)
	h.PushImage("lib/app", unknown)
	h.Exec(`UPDATE artifact SET push_time = NULL WHERE digest = $1`, unknown.Manifest.Digest.String())

	l := harborgc.NewLiveness(snapshot(t, db), true)
	var candidates []digest.Digest
	for _, a := range l.Untagged() {
		candidates = append(candidates, a.Digest)
	}
	if !slices.Equal(candidates, []digest.Digest{old.Manifest.Digest}) {
		t.Errorf("untagged candidates %v, want only the one pushed before the window (%s)", candidates, old.Manifest.Digest)
	}
	roots, _ := l.Roots("lib/app")
	if !slices.Contains(roots, young.Manifest.Digest) || !slices.Contains(roots, unknown.Manifest.Digest) {
		t.Errorf("roots %v: want the young artifact and the one with no push time", roots)
	}
}

// What a second read of the artifacts finds after the walk counts: an
// artifact pushed since the snapshot is a root, and an untagged candidate
// that gained a tag is one again.
func TestRefreshAddsArtifactsPushedSinceTheSnapshot(t *testing.T) {
	ctx := context.Background()
	h, db := openHarbor(t, harbortest.Latest)
	h.Project("lib")
	tagged := harbortest.FakeImage("tagged later", 1)
	a := h.PushImage("lib/app", tagged)
	h.Age(3 * time.Hour)
	l := harborgc.NewLiveness(snapshot(t, db), true)
	if len(l.Untagged()) != 1 {
		t.Fatalf("untagged %v", l.Untagged())
	}

	pushed := harbortest.FakeImage("pushed during the walk", 1, "v1")
	h.PushImage("lib/new", pushed)
	h.Exec(`INSERT INTO tag (repository_id, artifact_id, name, push_time) VALUES ($1, $2, 'v2', LOCALTIMESTAMP)`, a.RepositoryID, a.ID)
	newer, err := db.Artifacts(ctx, window)
	if err != nil {
		t.Fatal(err)
	}
	l.Refresh(newer)
	if len(l.Untagged()) != 0 {
		t.Errorf("the artifact tagged since the snapshot is still a candidate")
	}
	if roots, _ := l.Roots("lib/app"); !slices.Contains(roots, tagged.Manifest.Digest) {
		t.Errorf("lib/app roots %v", roots)
	}
	if roots, _ := l.Roots("lib/new"); !slices.Equal(roots, []digest.Digest{pushed.Manifest.Digest}) {
		t.Errorf("lib/new roots %v, want the artifact pushed after the snapshot", roots)
	}
}

// Young revision links of manifests the database never heard of mean it
// is behind storage (a restored backup): gc refuses.
func TestCheckBehind(t *testing.T) {
	h, db := openHarbor(t, harbortest.Latest)
	h.Project("lib")
	known := harbortest.FakeImage("known", 1, "v1")
	h.PushImage("lib/app", known)
	trashed := harbortest.FakeImage("trashed", 1)
	h.DeleteArtifact(h.PushImage("lib/app", trashed))
	snap := snapshot(t, db)
	l := harborgc.NewLiveness(snap, false)

	inv := walker.NewInventory()
	link := func(repo string, d digest.Digest, age time.Duration) {
		inv.Repo(repo).Revisions.Set(d, blobindex.Link{ModTime: snap.Taken.Add(-age).Unix()})
	}
	link("lib/app", known.Manifest.Digest, 10*time.Minute)
	link("lib/app", trashed.Manifest.Digest, 10*time.Minute)
	link("lib/app", digest.FromString("written just now"), 10*time.Second) // a push harbor-core has not recorded yet
	link("lib/old", digest.FromString("old leftover"), 3*time.Hour)        // older than the grace: ordinary garbage
	link(harborgc.SystemPrefix+"v/r", digest.FromString("system"), 10*time.Minute)
	if err := l.CheckBehind(inv, window); err != nil {
		t.Fatalf("CheckBehind on a database that has every young link: %v", err)
	}

	missed := digest.FromString("pushed after the backup")
	link("lib/app", missed, 10*time.Minute)
	err := l.CheckBehind(inv, window)
	if !errors.Is(err, harborgc.ErrDatabaseBehind) || !strings.Contains(err.Error(), "lib/app@"+missed.String()) {
		t.Fatalf("CheckBehind = %v, want ErrDatabaseBehind naming lib/app@%s", err, missed)
	}
	if err := l.CheckBehind(inv, 5*time.Minute); err != nil {
		t.Errorf("a link older than the lookback is not judged: %v", err)
	}
}

// Just before a batch of links is deleted, the database is asked again:
// links a re-push found (their rows touched) or whose artifact is back
// stay, and a storage-only blob a push registered stays too.
func TestCheckBatch(t *testing.T) {
	ctx := context.Background()
	h, db := openHarbor(t, harbortest.Latest)
	h.Project("lib")
	back := harbortest.FakeImage("pushed again", 1)
	h.DeleteArtifact(h.PushImage("lib/back", back))
	gone := harbortest.FakeImage("gone", 1)
	h.DeleteArtifact(h.PushImage("lib/gone", gone))
	rowless := harbortest.FakeBlob("row-less", 10, harbortest.MediaTypeOCILayer)
	adopted := harbortest.FakeBlob("adopted", 10, harbortest.MediaTypeOCILayer)
	h.Age(3 * time.Hour)
	snap := snapshot(t, db)
	p := &harborgc.Protocol{DB: db, Snap: snap, Live: harborgc.NewLiveness(snap, false), Window: window}

	for _, b := range back.Blobs() {
		h.Touch(b.Digest)
	}
	h.PushImage("lib/back", back)
	h.UploadBlob("lib", adopted)

	item := func(kind, repo string, d digest.Digest) sweep.Item {
		return sweep.Item{Kind: kind, Repo: repo, Digest: d, Key: kind + "/" + repo + "/" + d.Encoded()}
	}
	batch := []sweep.Item{
		item(sweep.KindRevisionLink, "lib/back", back.Manifest.Digest),
		item(sweep.KindRevisionLink, "lib/gone", gone.Manifest.Digest),
		item(sweep.KindLayerLink, "lib/back", back.Layers[0].Digest),
		item(sweep.KindLayerLink, "lib/gone", gone.Layers[0].Digest),
		item(sweep.KindBlob, "", rowless.Digest),
		item(sweep.KindBlob, "", adopted.Digest),
	}
	keep, err := p.CheckBatch(ctx, 1, batch)
	if err != nil {
		t.Fatal(err)
	}
	want := []sweep.Item{batch[1], batch[3], batch[4]}
	if !slices.Equal(keep, want) {
		t.Errorf("CheckBatch kept %v for deletion, want %v", keep, want)
	}
}

// Harbor's history counts every blob deleted, with a row or not, and
// tells manifests apart.
func TestHistoryCountsRowlessBlobs(t *testing.T) {
	ctx := context.Background()
	h, db := openHarbor(t, harbortest.Latest)
	h.Project("lib")
	gone := harbortest.FakeImage("gone", 1)
	h.DeleteArtifact(h.PushImage("lib/app", gone))
	h.Age(3 * time.Hour)
	snap := snapshot(t, db)
	rowlessManifest := harbortest.FakeBlob("row-less manifest", 400, harbortest.MediaTypeOCIManifest)
	rowlessLayer := harbortest.FakeBlob("row-less layer", 70000, harbortest.MediaTypeOCILayer)
	inv := walker.NewInventory()
	inv.Repo("lib/app").Revisions.Set(gone.Manifest.Digest, blobindex.Link{ModTime: 1})
	inv.Repo("lib/old").Revisions.Set(rowlessManifest.Digest, blobindex.Link{ModTime: 1})

	// The walk found every blob the sweep deletes.
	for _, b := range append(gone.Blobs(), rowlessManifest, rowlessLayer) {
		inv.Blobs.Set(b.Digest, blobindex.Blob{Size: b.Size, ModTime: 1})
	}

	p := &harborgc.Protocol{DB: db, Snap: snap, Live: harborgc.NewLiveness(snap, false), Window: window}
	if err := p.Prepare(ctx, inv); err != nil {
		t.Fatal(err)
	}
	plan := &sweep.Plan{}
	var freed int64
	for _, b := range append(gone.Blobs(), rowlessManifest, rowlessLayer) {
		plan.Items = append(plan.Items, sweep.Item{Kind: sweep.KindBlob, Key: "k/" + b.Digest.Encoded(), Digest: b.Digest, Size: b.Size})
		freed += b.Size
	}
	var err error
	if plan.Items, err = p.Claim(ctx, plan.Items); err != nil {
		t.Fatal(err)
	}
	for _, it := range plan.Items {
		p.Record(it, nil)
	}
	if err := p.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	// gone: manifest, config, layer; plus a row-less manifest and layer.
	if p.Stats.PurgedManifests != 2 || p.Stats.PurgedBlobs != 3 || p.Stats.FreedBytes != freed {
		t.Errorf("purged %d manifests, %d blobs, %d bytes; want 2, 3, %d", p.Stats.PurgedManifests, p.Stats.PurgedBlobs, p.Stats.FreedBytes, freed)
	}
}

// A claimed row that changed before Finish (Harbor's push path failed it
// out of deleting, a statement of another collector) stays, and Harbor's
// counts leave it out: they count rows deleted.
func TestHistoryCountsOnlyRowsDeleted(t *testing.T) {
	ctx := context.Background()
	h, db := openHarbor(t, harbortest.Latest)
	h.Project("lib")
	gone := harbortest.FakeImage("gone", 2)
	h.DeleteArtifact(h.PushImage("lib/app", gone))
	h.Age(3 * time.Hour)
	snap := snapshot(t, db)
	inv := walker.NewInventory()
	for _, b := range gone.Blobs() {
		inv.Blobs.Set(b.Digest, blobindex.Blob{Size: b.Size, ModTime: 1})
	}
	p := &harborgc.Protocol{DB: db, Snap: snap, Live: harborgc.NewLiveness(snap, false), Window: window}
	if err := p.Prepare(ctx, inv); err != nil {
		t.Fatal(err)
	}
	var items []sweep.Item
	for _, b := range gone.Blobs() {
		items = append(items, sweep.Item{Kind: sweep.KindBlob, Key: "k/" + b.Digest.Encoded(), Digest: b.Digest, Size: b.Size})
	}
	items, err := p.Claim(ctx, items)
	if err != nil || len(items) != len(gone.Blobs()) {
		t.Fatalf("claimed %d of %d: %v", len(items), len(gone.Blobs()), err)
	}
	changed := gone.Layers[0].Digest
	h.Exec(`UPDATE blob SET status = 'deletefailed', version = version + 1 WHERE digest = $1`, changed.String())
	for _, it := range items {
		p.Record(it, nil)
	}
	if err := p.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	if !h.Blob(changed).Exists {
		t.Fatal("scenario: the changed row should stay")
	}
	// manifest, config and one layer deleted; the changed layer's row stays.
	if p.Stats.PurgedManifests != 1 || p.Stats.PurgedBlobs != 2 || p.Stats.DeletedBlobRows != 3 {
		t.Errorf("purged %d manifests, %d blobs, %d rows deleted; want 1, 2, 3", p.Stats.PurgedManifests, p.Stats.PurgedBlobs, p.Stats.DeletedBlobRows)
	}
}
