package harbordb_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/harbordb"
	"github.com/regsweep/regsweep/harbordb/harbortest"
)

// Harbor mode with Harbor online: what the database must refuse, and what
// it must answer just before gc deletes.

// garbageRows records n garbage blob rows and returns them as a snapshot
// sees them, ordered by id.
func garbageRows(t *testing.T, h *harbortest.Harbor, db *harbordb.DB, n int) []harbordb.Blob {
	t.Helper()
	h.GarbageBlobs(n)
	snap, err := db.Snapshot(context.Background(), window)
	if err != nil {
		t.Fatal(err)
	}
	rows := candidates(snap)
	if len(rows) != n {
		t.Fatalf("%d candidates, want %d", len(rows), n)
	}
	slices.SortFunc(rows, func(a, b harbordb.Blob) int { return int(a.ID - b.ID) })
	return rows
}

// A claim that fails in its second chunk returns the rows its first chunk
// claimed, with the error, so that they can be released.
func TestClaimBlobsFailsInSecondChunk(t *testing.T) {
	ctx := context.Background()
	h, db := newHarbor(t, harbortest.Latest)
	rows := garbageRows(t, h, db, 1500)
	h.FailClaimsFrom(rows[1000].ID)

	claimed, lost, err := db.ClaimBlobs(ctx, rows, window)
	if err == nil || !strings.Contains(err.Error(), "injected failure") {
		t.Fatalf("ClaimBlobs = %v, want the injected failure", err)
	}
	if len(claimed) != 1000 || len(lost) != 0 {
		t.Fatalf("claimed %d, lost %d with the error; want the first chunk's 1000 claimed", len(claimed), len(lost))
	}
	if n := h.Count(`SELECT count(*) FROM blob WHERE status = 'deleting'`); n != 1000 {
		t.Fatalf("%d rows in deleting, want the first chunk's", n)
	}
	h.Exec(`DROP TRIGGER fail_blob_claim ON blob`)
	if err := db.ReleaseFailed(ctx, claimed); err != nil {
		t.Fatal(err)
	}
	if n := h.Count(`SELECT count(*) FROM blob WHERE status = 'deleting'`); n != 0 {
		t.Errorf("%d rows left in deleting after the release", n)
	}
}

// LinksInUse answers for links about to be deleted: in use when an
// artifact of the repository is or references the digest, or when the
// digest's row changed since the snapshot (a push found the blob), or was
// touched within the window.
func TestLinksInUse(t *testing.T) {
	for _, v := range []harbortest.Variant{harbortest.Latest, harbortest.Harbor110} {
		t.Run(v.String(), func(t *testing.T) {
			ctx := context.Background()
			h, db := newHarbor(t, v)
			h.Project("lib")
			live := harbortest.FakeImage("live", 1, "v1")
			h.PushImage("lib/app", live)
			gone := harbortest.FakeImage("gone", 2, "old")
			if a := h.PushImage("lib/app", gone); v.Harbor2() {
				h.DeleteArtifact(a)
			} else {
				h.Exec(`DELETE FROM artifact WHERE digest = $1`, gone.Manifest.Digest.String())
			}
			rowless := harbortest.FakeBlob("row-less", 10, harbortest.MediaTypeOCILayer)
			registered := harbortest.FakeBlob("registered later", 10, harbortest.MediaTypeOCILayer)
			h.Age(3 * time.Hour)
			snap, err := db.Snapshot(ctx, window)
			if err != nil {
				t.Fatal(err)
			}
			// After the snapshot, a push finds one of gone's layers and
			// registers a blob storage had without a row.
			h.UploadBlob("lib", registered)
			touched := gone.Layers[1].Digest
			if v.Harbor2() {
				h.Touch(touched)
			}

			links := []struct {
				repo string
				d    digest.Digest
				want bool
			}{
				{"lib/app", live.Manifest.Digest, true},  // the artifact
				{"lib/app", live.Layers[0].Digest, true}, // its artifact_blob
				{"lib/other", live.Layers[0].Digest, false},
				{"lib/app", gone.Manifest.Digest, false},
				{"lib/app", gone.Layers[0].Digest, false},
				{"lib/app", rowless.Digest, false},
				{"lib/app", registered.Digest, true}, // a row the snapshot did not have
			}
			if v.Harbor2() {
				links = append(links, struct {
					repo string
					d    digest.Digest
					want bool
				}{"lib/other", touched, true})
			}
			var refs []harbordb.ManifestRef
			for _, l := range links {
				refs = append(refs, harbordb.ManifestRef{Repo: l.repo, Digest: l.d})
			}
			got, err := db.LinksInUse(ctx, refs, snap)
			if err != nil {
				t.Fatal(err)
			}
			for i, l := range links {
				if got[i] != l.want {
					t.Errorf("link %s@%s: in use %v, want %v", l.repo, l.d, got[i], l.want)
				}
			}
		})
	}
}

// A blob row touched within the window when the snapshot was taken keeps
// its links too.
func TestLinksInUseWithinWindow(t *testing.T) {
	ctx := context.Background()
	h, db := newHarbor(t, harbortest.Latest)
	h.Project("lib")
	gone := harbortest.FakeImage("gone", 1, "old")
	h.DeleteArtifact(h.PushImage("lib/app", gone))
	h.Age(3 * time.Hour)
	h.Touch(gone.Layers[0].Digest)
	snap, err := db.Snapshot(ctx, window)
	if err != nil {
		t.Fatal(err)
	}
	got, err := db.LinksInUse(ctx, []harbordb.ManifestRef{{Repo: "lib/app", Digest: gone.Layers[0].Digest}, {Repo: "lib/app", Digest: gone.Config.Digest}}, snap)
	if err != nil {
		t.Fatal(err)
	}
	if !got[0] || got[1] {
		t.Errorf("in use %v, want the touched layer's link only", got)
	}
}

// Harbor's GC drops, in every project that is not deleted, the project_blob
// rows of blobs older than the window that no artifact of the project
// references; quotas follow.
func TestPruneProjectBlobs(t *testing.T) {
	ctx := context.Background()
	h, db := newHarbor(t, harbortest.Latest)
	lib, other := h.Project("lib"), h.Project("other")
	app := harbortest.FakeImage("app", 1, "v1")
	h.PushImage("lib/app", app)
	// other's image shares lib's layer; lib once had an image with blob x,
	// whose project_blob row was never pruned, and x lives on in other.
	x := harbortest.FakeBlob("x", 7000, harbortest.MediaTypeOCILayer)
	h.PushImage("other/img", harbortest.Image{Manifest: harbortest.FakeBlob("other manifest", 300, harbortest.MediaTypeOCIManifest),
		Config: harbortest.FakeBlob("other config", 100, harbortest.MediaTypeOCIConfig), Layers: []harbortest.Blob{app.Layers[0], x}, Tags: []string{"v1"}})
	h.UploadBlob("lib", x)
	h.Age(3 * time.Hour)
	young := harbortest.FakeBlob("young upload", 500, harbortest.MediaTypeOCILayer)
	h.UploadBlob("lib", young) // a push in progress
	h.SyncQuota(lib)
	usedBefore := h.QuotaUsed(lib)

	rows, projects, err := db.PruneProjectBlobs(ctx, window)
	if err != nil {
		t.Fatal(err)
	}
	if rows != 1 || !slices.Equal(projects, []int64{lib}) {
		t.Fatalf("pruned %d rows in %v, want x's row in lib", rows, projects)
	}
	inLib := func(d digest.Digest) bool {
		return h.Count(`SELECT count(*) FROM project_blob pb JOIN blob b ON b.id = pb.blob_id WHERE pb.project_id = $1 AND b.digest = $2`, lib, d.String()) == 1
	}
	if inLib(x.Digest) || !inLib(young.Digest) || !inLib(app.Layers[0].Digest) || !inLib(app.Manifest.Digest) {
		t.Errorf("lib's project_blob rows: x %v, young %v, layer %v, manifest %v; want only x gone",
			inLib(x.Digest), inLib(young.Digest), inLib(app.Layers[0].Digest), inLib(app.Manifest.Digest))
	}
	if h.Count(`SELECT count(*) FROM project_blob WHERE project_id = $1`, other) != 4 {
		t.Errorf("other's rows changed")
	}
	if used := h.QuotaUsed(lib); used != usedBefore-x.Size || used != h.ComputedUsage(lib) {
		t.Errorf("lib's quota %d (was %d), want %d", used, usedBefore, usedBefore-x.Size)
	}
}

// harbor-core east of UTC writes update_time and push_time ahead of the
// database's clock: the snapshot refuses, naming the row.
func TestSnapshotRefusesTimesAhead(t *testing.T) {
	ctx := context.Background()
	h, db := newHarbor(t, harbortest.Latest)
	h.Project("lib")
	img := harbortest.FakeImage("east", 1, "v1")
	h.PushImage("lib/app", img)
	// Within the tolerance: a clock a second ahead is no time zone.
	h.Exec(`UPDATE blob SET update_time = LOCALTIMESTAMP + interval '1 second' WHERE digest = $1`, img.Layers[0].Digest.String())
	if _, err := db.Snapshot(ctx, window); err != nil {
		t.Fatalf("Snapshot with a second of skew: %v", err)
	}
	for _, tc := range []struct{ table, sql, name string }{
		{"blob", `UPDATE blob SET update_time = LOCALTIMESTAMP + interval '3 hours' WHERE digest = $1`, img.Layers[0].Digest.String()},
		{"artifact", `UPDATE artifact SET push_time = LOCALTIMESTAMP + interval '3 hours' WHERE digest = $1`, "lib/app@" + img.Manifest.Digest.String()},
	} {
		h.Exec(`UPDATE blob SET update_time = LOCALTIMESTAMP - interval '1 hour'`)
		h.Exec(`UPDATE artifact SET push_time = LOCALTIMESTAMP - interval '1 hour'`)
		h.Exec(tc.sql, img.Layers[0].Digest.String())
		if tc.table == "artifact" {
			h.Exec(tc.sql, img.Manifest.Digest.String())
		}
		_, err := db.Snapshot(ctx, window)
		if !errors.Is(err, harbordb.ErrTimeAhead) {
			t.Fatalf("%s: Snapshot = %v, want ErrTimeAhead", tc.table, err)
		}
		for _, want := range []string{tc.name, "3h0m", "UTC"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %q does not say %q", tc.table, err, want)
			}
		}
	}
}

// A logical replica is not in recovery, yet it lags its publisher: the
// snapshot refuses a database with a subscription.
func TestSnapshotRefusesSubscriber(t *testing.T) {
	ctx := context.Background()
	h, db := newHarbor(t, harbortest.Latest)
	if _, err := db.Snapshot(ctx, window); err != nil {
		t.Fatal(err)
	}
	h.Exec(`CREATE SUBSCRIPTION regsweep_test CONNECTION 'host=127.0.0.1 port=1 dbname=registry' PUBLICATION harbor WITH (connect = false)`)
	t.Cleanup(func() {
		// A subscription outlives its database's drop otherwise.
		h.Exec(`ALTER SUBSCRIPTION regsweep_test SET (slot_name = NONE)`)
		h.Exec(`DROP SUBSCRIPTION regsweep_test`)
	})
	_, err := db.Snapshot(ctx, window)
	if !errors.Is(err, harbordb.ErrSubscriber) || !strings.Contains(err.Error(), "regsweep_test") {
		t.Fatalf("Snapshot of a subscriber = %v, want ErrSubscriber naming it", err)
	}
}
