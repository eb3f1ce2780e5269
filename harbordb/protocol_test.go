package harbordb_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/harbordb"
	"github.com/regsweep/regsweep/harbordb/harbortest"
)

// candidates returns the snapshot's collectable blob rows.
func candidates(snap *harbordb.Snapshot) []harbordb.Blob {
	var out []harbordb.Blob
	for _, b := range snap.Blobs {
		if snap.Collectable(b) {
			out = append(out, b)
		}
	}
	return out
}

func digestsOf(bs []harbordb.Blob) map[digest.Digest]harbordb.Blob {
	m := map[digest.Digest]harbordb.Blob{}
	for _, b := range bs {
		m[b.Digest] = b
	}
	return m
}

// TestClaimBlobsRace changes candidate rows between the snapshot and the
// claim in each way Harbor's push path (or another GC) can; every such row
// must be lost and keep its state.
func TestClaimBlobsRace(t *testing.T) {
	for _, v := range []harbortest.Variant{harbortest.Latest, harbortest.Harbor28} {
		t.Run(v.String(), func(t *testing.T) {
			ctx := context.Background()
			h, db := newHarbor(t, v)
			s := buildScenario(t, h)
			snap, err := db.Snapshot(ctx, window)
			if err != nil {
				t.Fatal(err)
			}
			cands := candidates(snap)
			if got, want := len(cands), len(s.garbageDigests()); got != want {
				t.Fatalf("%d candidates, want %d", got, want)
			}

			// After the snapshot:
			touched := s.upload.Digest // a push HEADs the blob: Touch
			h.Touch(touched)
			reused := s.trashedImg.Layers[0].Digest // a new image uses the trashed layer
			h.PushImage("library/new", harbortest.Image{
				Manifest: harbortest.FakeBlob("new-manifest", 400, harbortest.MediaTypeOCIManifest),
				Config:   harbortest.FakeBlob("new-config", 100, harbortest.MediaTypeOCIConfig),
				Layers:   []harbortest.Blob{s.trashedImg.Layers[0]}, Tags: []string{"v1"},
			})
			recent := s.goneUpload.Digest // update_time moved into the window without a version bump
			h.Exec(`UPDATE blob SET update_time = LOCALTIMESTAMP WHERE digest = $1`, recent.String())
			taken := s.goneImg.Config.Digest // status changed (version left alone to test the status check)
			h.Exec(`UPDATE blob SET status = 'deleting' WHERE digest = $1`, taken.String())
			lostSet := map[digest.Digest]bool{touched: true, reused: true, recent: true, taken: true}
			versionsBefore := map[digest.Digest]int64{}
			for d := range lostSet {
				versionsBefore[d] = h.Blob(d).Version
			}

			claimed, lost, err := db.ClaimBlobs(ctx, cands, window)
			if err != nil {
				t.Fatalf("ClaimBlobs: %v", err)
			}
			if len(claimed)+len(lost) != len(cands) {
				t.Fatalf("claimed %d + lost %d != %d candidates", len(claimed), len(lost), len(cands))
			}
			lostBy := digestsOf(lost)
			for d := range lostSet {
				if _, ok := lostBy[d]; !ok {
					t.Errorf("%s changed after the snapshot but was claimed", d)
				}
				if r := h.Blob(d); (r.Status == harbordb.StatusDeleting) != (d == taken) || r.Version != versionsBefore[d] {
					t.Errorf("lost blob %s changed by the claim: %+v (version before %d)", d, r, versionsBefore[d])
				}
			}
			if len(lost) != len(lostSet) {
				t.Errorf("lost %d, want %d", len(lost), len(lostSet))
			}
			for _, c := range claimed {
				orig := snap.Blobs[c.Digest]
				r := h.Blob(c.Digest)
				if c.Status != harbordb.StatusDeleting || r.Status != harbordb.StatusDeleting {
					t.Errorf("claimed %s: returned status %q, row %q", c.Digest, c.Status, r.Status)
				}
				// Two compare-and-set steps: delete, then deleting.
				if c.Version != orig.Version+2 || r.Version != c.Version {
					t.Errorf("claimed %s: version %d (row %d), snapshot had %d", c.Digest, c.Version, r.Version, orig.Version)
				}
				if !c.UpdateTime.After(orig.UpdateTime) {
					t.Errorf("claimed %s: update_time not bumped", c.Digest)
				}
			}

			// A second claim of the same rows loses: their versions moved on.
			again, lostAgain, err := db.ClaimBlobs(ctx, cands, window)
			if err != nil || len(again) != 0 || len(lostAgain) != len(cands) {
				t.Errorf("second claim: %d claimed, %d lost, %v", len(again), len(lostAgain), err)
			}

			// A failed storage delete releases the rows to deletefailed.
			if err := db.ReleaseFailed(ctx, claimed[:1]); err != nil {
				t.Fatal(err)
			}
			if r := h.Blob(claimed[0].Digest); r.Status != harbordb.StatusDeleteFailed || r.Version != claimed[0].Version+1 {
				t.Errorf("released blob %+v", r)
			}
		})
	}
}

// TestClaimBlobsWindowAndLiveness: the claim re-checks the window and the
// liveness itself, whatever the caller passes.
func TestClaimBlobsRefusesLiveAndYoung(t *testing.T) {
	ctx := context.Background()
	h, db := newHarbor(t, harbortest.Latest)
	s := buildScenario(t, h)
	snap, err := db.Snapshot(ctx, window)
	if err != nil {
		t.Fatal(err)
	}
	var bad []harbordb.Blob
	for _, d := range []digest.Digest{s.kept.Digest, s.sharedLyr.Digest, s.children[0].Digest, s.sig.Digest, s.touched.Digest, s.stuckLive.Digest} {
		bad = append(bad, snap.Blobs[d])
	}
	bad = append(bad, harbordb.Blob{Digest: s.sysBlob.Digest}) // no row
	claimed, lost, err := db.ClaimBlobs(ctx, bad, window)
	if err != nil {
		t.Fatal(err)
	}
	if len(claimed) != 0 || len(lost) != len(bad) {
		t.Fatalf("claimed %v", claimed)
	}
	for _, b := range bad[:len(bad)-1] {
		if r := h.Blob(b.Digest); r.Version != b.Version || r.Status != b.Status {
			t.Errorf("%s changed: %+v", b.Digest, r)
		}
	}
}

func TestRecoverStuck(t *testing.T) {
	ctx := context.Background()
	h, db := newHarbor(t, harbortest.Latest)
	h.Project("library")
	live := harbortest.FakeBlob("stuck-in-storage", 100, harbortest.MediaTypeOCILayer)
	gone := harbortest.FakeBlob("stuck-data-gone", 200, harbortest.MediaTypeOCIManifest)
	fresh := harbortest.FakeBlob("stuck-recently", 300, harbortest.MediaTypeOCILayer)
	h.StuckDeleting(live, 3*time.Hour)
	h.StuckDeleting(gone, 3*time.Hour)
	h.StuckDeleting(fresh, 10*time.Minute) // a running GC's claim: not stuck yet
	before := h.Blob(live.Digest)

	asked := map[digest.Digest]bool{}
	reset, err := db.RecoverStuck(ctx, window, func(d digest.Digest) bool {
		asked[d] = true
		return d == live.Digest || d == fresh.Digest
	})
	if err != nil {
		t.Fatalf("RecoverStuck: %v", err)
	}
	if reset != 1 {
		t.Errorf("reset %d, want 1", reset)
	}
	if asked[fresh.Digest] {
		t.Error("asked storage about a blob claimed inside the window")
	}
	if r := h.Blob(live.Digest); r.Status != harbordb.StatusNone || r.Version != before.Version+1 {
		t.Errorf("blob still in storage: %+v, want none at version %d", r, before.Version+1)
	}
	// A row whose data is gone is RemoveRowsWithoutData's.
	if r := h.Blob(gone.Digest); r.Status != harbordb.StatusDeleting {
		t.Errorf("stuck row whose data is gone: %+v, want it left deleting", r)
	}
	if r := h.Blob(fresh.Digest); r.Status != harbordb.StatusDeleting {
		t.Errorf("fresh claim touched: %+v", r)
	}
}

// TestRemoveRowsWithoutData: rows whose data a walk did not find go when
// Harbor's GC would delete them (claimed rows at any age, unclaimed ones
// older than the window and in no project), with their leftovers and the
// quota; every other row stays as it was.
func TestRemoveRowsWithoutData(t *testing.T) {
	ctx := context.Background()
	h, db := newHarbor(t, harbortest.Latest)
	p := h.Project("library")
	blob := func(seed, status string, age time.Duration) harbortest.Blob {
		b := harbortest.FakeBlob(seed, 100, harbortest.MediaTypeOCILayer)
		h.Exec(`INSERT INTO blob (digest, content_type, size, creation_time, update_time, status, version)
VALUES ($1, $2, $3, LOCALTIMESTAMP - make_interval(secs => $4), LOCALTIMESTAMP - make_interval(secs => $4), $5, 3)`,
			b.Digest.String(), b.MediaType, b.Size, age.Seconds(), status)
		return b
	}
	inProject := func(b harbortest.Blob) {
		h.Exec(`INSERT INTO project_blob (project_id, blob_id) SELECT $1, id FROM blob WHERE digest = $2`, p, b.Digest.String())
	}
	// Removed: a claim whose database side failed (any age), released or
	// not; Harbor's GC's own candidates.
	deleting := blob("deleting, recent", harbordb.StatusDeleting, time.Minute)
	inProject(deleting)
	released := blob("deletefailed, recent", harbordb.StatusDeleteFailed, time.Minute)
	inProject(released)
	stale := blob("none, old", harbordb.StatusNone, 3*time.Hour)
	marked := blob("delete, old", harbordb.StatusDelete, 3*time.Hour)
	// Kept: inside the window, in a project, referenced, or changed since
	// the rows were read.
	young := blob("none, young", harbordb.StatusNone, 10*time.Minute)
	counted := blob("none, old, in a project", harbordb.StatusNone, 3*time.Hour)
	inProject(counted)
	referenced := blob("deletefailed, referenced", harbordb.StatusDeleteFailed, 3*time.Hour)
	img := harbortest.FakeImage("uses it", 0, "v1")
	img.Layers = []harbortest.Blob{referenced}
	h.PushImage("library/app", img)
	touched := blob("deletefailed, touched", harbordb.StatusDeleteFailed, 3*time.Hour)
	// Leftovers of the removed rows.
	h.Exec(`INSERT INTO artifact_blob (digest_af, digest_blob) VALUES ($1, $1)`, released.Digest.String())
	h.Exec(`INSERT INTO artifact_trash (media_type, manifest_media_type, repository_name, digest) VALUES ('m', 'mm', 'library/old', $1)`, released.Digest.String())
	h.SyncQuota(p)

	snap, err := db.Snapshot(ctx, window)
	if err != nil {
		t.Fatal(err)
	}
	var rows []harbordb.Blob
	for _, b := range []harbortest.Blob{deleting, released, stale, marked, young, counted, referenced, touched} {
		rows = append(rows, snap.Blobs[b.Digest])
	}
	h.Touch(touched.Digest) // a push, after the rows were read
	removed, err := db.RemoveRowsWithoutData(ctx, rows, window)
	if err != nil {
		t.Fatalf("RemoveRowsWithoutData: %v", err)
	}
	got := digestsOf(removed)
	for _, b := range []harbortest.Blob{deleting, released, stale, marked} {
		if _, ok := got[b.Digest]; !ok || h.Blob(b.Digest).Exists {
			t.Errorf("row %s (%s) stays", b.Digest, snap.Blobs[b.Digest].Status)
		}
	}
	for _, b := range []harbortest.Blob{young, counted, referenced, touched} {
		if _, ok := got[b.Digest]; ok || !h.Blob(b.Digest).Exists {
			t.Errorf("row %s was removed", b.Digest)
		}
	}
	if len(removed) != 4 {
		t.Errorf("%d rows removed, want 4", len(removed))
	}
	for table, n := range map[string]int64{
		"project_blob":   h.Count(`SELECT count(*) FROM project_blob pb JOIN blob b ON b.id = pb.blob_id WHERE b.digest = ANY($1)`, []string{deleting.Digest.String(), released.Digest.String()}),
		"artifact_blob":  h.Count(`SELECT count(*) FROM artifact_blob WHERE digest_blob = $1`, released.Digest.String()),
		"artifact_trash": h.Count(`SELECT count(*) FROM artifact_trash WHERE digest = $1`, released.Digest.String()),
	} {
		if n != 0 {
			t.Errorf("%s keeps %d rows of the removed blobs", table, n)
		}
	}
	if want := h.ComputedUsage(p); h.QuotaUsed(p) != want {
		t.Errorf("quota %d after removing the rows, want %d", h.QuotaUsed(p), want)
	}
}

// TestClaimBlobsWithoutStatus: Harbor 1.10 has no blob status; deleting needs
// Harbor read-only and the claim writes nothing.
func TestClaimBlobsWithoutStatus(t *testing.T) {
	ctx := context.Background()
	h, db := newHarbor(t, harbortest.Harbor110)
	h.Project("library")
	keep := harbortest.FakeImage("keep", 1, "v1")
	h.PushImage("library/app", keep)
	old := harbortest.FakeImage("old", 1, "old")
	oldArt := h.PushImage("library/app", old)
	h.DeleteArtifact(oldArt)
	h.Age(3 * time.Hour)
	snap, err := db.Snapshot(ctx, window)
	if err != nil {
		t.Fatal(err)
	}
	cands := candidates(snap)
	if len(cands) != len(old.Blobs()) {
		t.Fatalf("%d candidates, want %d", len(cands), len(old.Blobs()))
	}
	before := fingerprint(t, h)

	_, _, err = db.ClaimBlobs(ctx, cands, window)
	if !errors.Is(err, harbordb.ErrNotReadOnly) {
		t.Fatalf("ClaimBlobs while Harbor 1.10 is writable: %v, want ErrNotReadOnly", err)
	}
	h.SetReadOnly(false)
	if _, _, err = db.ClaimBlobs(ctx, cands, window); !errors.Is(err, harbordb.ErrNotReadOnly) {
		t.Fatalf("ClaimBlobs with read_only=false: %v, want ErrNotReadOnly", err)
	}

	h.SetReadOnly(true)
	// A tag re-pushed to the old manifest after the snapshot makes it live.
	h.PushImage("library/app", harbortest.Image{Manifest: old.Manifest, Config: old.Config, Layers: old.Layers, Tags: []string{"again"}})
	claimed, lost, err := db.ClaimBlobs(ctx, cands, window)
	if err != nil {
		t.Fatalf("ClaimBlobs while read-only: %v", err)
	}
	if len(claimed) != 0 || len(lost) != len(cands) {
		t.Errorf("claimed %d lost %d: the re-tagged image's blobs must be lost", len(claimed), len(lost))
	}
	h.Exec(`DELETE FROM artifact WHERE tag = 'again'`)
	before = fingerprint(t, h)
	claimed, lost, err = db.ClaimBlobs(ctx, cands, window)
	if err != nil || len(claimed) != len(cands) || len(lost) != 0 {
		t.Fatalf("ClaimBlobs: %d claimed %d lost %v", len(claimed), len(lost), err)
	}
	if fingerprint(t, h) != before {
		t.Error("ClaimBlobs wrote to a schema without blob status")
	}
	if err := db.ReleaseFailed(ctx, claimed); err != nil {
		t.Error(err)
	}
	if reset, err := db.RecoverStuck(ctx, window, func(digest.Digest) bool { return true }); reset != 0 || err != nil {
		t.Errorf("RecoverStuck on 1.10: %d %v", reset, err)
	}
	if removed, err := db.RemoveRowsWithoutData(ctx, cands, window); len(removed) != 0 || err != nil {
		t.Errorf("RemoveRowsWithoutData on 1.10: %v %v", removed, err)
	}
}
