package harbordb_test

import (
	"context"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/harbordb"
	"github.com/regsweep/regsweep/harbordb/harbortest"
)

func TestFinish(t *testing.T) {
	for _, v := range []harbortest.Variant{harbortest.Latest, harbortest.Harbor28} {
		t.Run(v.String(), func(t *testing.T) {
			ctx := context.Background()
			h, db := newHarbor(t, v)
			s := buildScenario(t, h)
			snap, err := db.Snapshot(ctx, window)
			if err != nil {
				t.Fatal(err)
			}
			claimed, lost, err := db.ClaimBlobs(ctx, candidates(snap), window)
			if err != nil || len(lost) != 0 {
				t.Fatalf("ClaimBlobs: lost %v, %v", lost, err)
			}
			// The storage sweep: the orphan upload of the deleted project was
			// already gone (frees nothing); Harbor's push path failed one
			// claimed blob meanwhile (HEAD of a deleting blob past the window).
			var freed, deleted []harbordb.Blob
			var failed harbordb.Blob
			for _, b := range claimed {
				switch b.Digest {
				case s.goneImg.Layers[0].Digest:
					failed = b
				case s.goneUpload.Digest:
					deleted = append(deleted, b)
				default:
					deleted = append(deleted, b)
					freed = append(freed, b)
				}
			}
			h.Exec(`UPDATE blob SET status = 'deletefailed', version = version + 1 WHERE digest = $1`, failed.Digest.String())
			deleted = append(deleted, failed) // the caller thinks it deleted it
			var swept []harbordb.ManifestRef
			for _, tr := range snap.Trash {
				swept = append(swept, harbordb.ManifestRef{Repo: tr.Repo, Digest: tr.Digest})
			}
			quotaBefore := h.QuotaUsed(s.library)

			st, err := db.Finish(ctx, harbordb.Finish{
				DeletedBlobs:     deleted,
				FreedBlobs:       freed,
				SweptManifests:   swept,
				AffectedProjects: []int64{s.library},
			})
			if err != nil {
				t.Fatalf("Finish: %v", err)
			}

			wantFreed := int64(0)
			for _, b := range freed {
				wantFreed += b.Size
			}
			if st.FreedSpace != wantFreed {
				t.Errorf("FreedSpace %d, want %d", st.FreedSpace, wantFreed)
			}
			if st.BlobRows != int64(len(deleted)-1) || len(st.KeptBlobs) != 1 || st.KeptBlobs[0].Digest != failed.Digest {
				t.Errorf("BlobRows %d KeptBlobs %+v, want %d and the failed blob", st.BlobRows, st.KeptBlobs, len(deleted)-1)
			}
			for _, b := range deleted {
				if got := h.Blob(b.Digest).Exists; got != (b.Digest == failed.Digest) {
					t.Errorf("blob %s row exists=%v after Finish", b.Digest, got)
				}
			}
			for _, d := range append(s.liveDigests(), s.touched.Digest, s.stuckLive.Digest, s.stuckGone.Digest) {
				if d != s.sysBlob.Digest && !h.Blob(d).Exists {
					t.Errorf("blob %s (not swept) lost its row", d)
				}
			}

			// project_blob: the deleted blobs' rows and every row of the
			// soft-deleted project (also on a live blob) are gone.
			if n := h.Count(`SELECT count(*) FROM project_blob WHERE project_id = $1`, s.gone); n != 0 {
				t.Errorf("%d project_blob rows of the soft-deleted project left", n)
			}
			if st.DeletedProjectBlobRows != 1 || st.ProjectBlobRows != 2 {
				t.Errorf("project_blob rows: %d of deleted blobs, %d of deleted projects; want 2 and 1", st.ProjectBlobRows, st.DeletedProjectBlobRows)
			}
			if n := h.Count(`SELECT count(*) FROM project_blob pb WHERE NOT EXISTS (SELECT 1 FROM blob b WHERE b.id = pb.blob_id)`); n != 0 {
				t.Errorf("%d project_blob rows point at deleted blobs", n)
			}

			// artifact_blob of swept manifests with no artifact left; trash.
			for _, d := range []digest.Digest{s.trashed.Digest, s.goneImg.Manifest.Digest} {
				if n := h.Count(`SELECT count(*) FROM artifact_blob WHERE digest_af = $1`, d.String()); n != 0 {
					t.Errorf("%d artifact_blob rows of swept manifest %s left", n, d)
				}
			}
			if n := h.Count(`SELECT count(*) FROM artifact_blob WHERE digest_af = $1`, s.kept.Digest.String()); n != int64(len(s.keptImg.Blobs())) {
				t.Errorf("kept artifact has %d artifact_blob rows, want %d", n, len(s.keptImg.Blobs()))
			}
			if st.ArtifactBlobRows != int64(len(s.trashedImg.Blobs())+len(s.goneImg.Blobs())) {
				t.Errorf("ArtifactBlobRows %d", st.ArtifactBlobRows)
			}
			if n := h.Count(`SELECT count(*) FROM artifact_trash`); n != 0 || st.TrashRows != 2 {
				t.Errorf("%d artifact_trash rows left, %d deleted", n, st.TrashRows)
			}

			// Quota: Harbor's formula over what is left, compare-and-set.
			after := h.QuotaUsed(s.library)
			if after != h.ComputedUsage(s.library) || after != quotaBefore-s.upload.Size {
				t.Errorf("quota %d, want %d (the formula gives %d)", after, quotaBefore-s.upload.Size, h.ComputedUsage(s.library))
			}
			if len(st.Quotas) != 1 || st.Quotas[0] != (harbordb.QuotaChange{ProjectID: s.library, Old: quotaBefore, New: after}) {
				t.Errorf("Quotas %+v", st.Quotas)
			}

			// Nothing more to do: a second Finish changes nothing.
			before := fingerprint(t, h)
			st2, err := db.Finish(ctx, harbordb.Finish{DeletedBlobs: deleted, SweptManifests: swept, AffectedProjects: []int64{s.library}})
			if err != nil || st2.BlobRows != 0 || len(st2.Quotas) != 0 || fingerprint(t, h) != before {
				t.Errorf("second Finish: %+v %v", st2, err)
			}
		})
	}
}

// TestFinishRepushedTrash: a manifest swept from one repository whose digest
// was re-pushed there keeps its trash row, and artifact_blob rows stay while
// any artifact has the digest.
func TestFinishRepushedTrash(t *testing.T) {
	ctx := context.Background()
	h, db := newHarbor(t, harbortest.Latest)
	h.Project("library")
	img := harbortest.FakeImage("x", 1, "v1")
	a := h.PushImage("library/a", img)
	h.PushImage("library/b", img) // the same manifest in a second repository
	h.DeleteArtifact(a)
	c := h.PushImage("library/c", img)
	h.DeleteArtifact(c)
	h.PushImage("library/c", img) // re-pushed after deletion
	st, err := db.Finish(ctx, harbordb.Finish{SweptManifests: []harbordb.ManifestRef{
		{Repo: "library/a", Digest: img.Manifest.Digest},
		{Repo: "library/c", Digest: img.Manifest.Digest},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got := h.Strings(`SELECT repository_name FROM artifact_trash`); len(got) != 1 || got[0] != "library/c" || st.TrashRows != 1 {
		t.Errorf("trash rows left %v (deleted %d), want library/c's (re-pushed)", got, st.TrashRows)
	}
	if n := h.Count(`SELECT count(*) FROM artifact_blob WHERE digest_af = $1`, img.Manifest.Digest.String()); n != int64(len(img.Blobs())) {
		t.Errorf("%d artifact_blob rows, want %d (library/b still has the artifact)", n, len(img.Blobs()))
	}
}

func TestFinishHarbor110(t *testing.T) {
	ctx := context.Background()
	h, db := newHarbor(t, harbortest.Harbor110)
	p := h.Project("library")
	keep := harbortest.FakeImage("keep", 1, "v1")
	h.PushImage("library/app", keep)
	old := harbortest.FakeImage("old", 2, "old")
	h.DeleteArtifact(h.PushImage("library/app", old))
	h.SetQuotaUsed(p, 999999) // 1.x drift
	h.Age(3 * time.Hour)
	h.SetReadOnly(true)
	snap, err := db.Snapshot(ctx, window)
	if err != nil {
		t.Fatal(err)
	}
	claimed, _, err := db.ClaimBlobs(ctx, candidates(snap), window)
	if err != nil || len(claimed) != len(old.Blobs()) {
		t.Fatalf("claimed %d: %v", len(claimed), err)
	}
	countBefore := h.Count(`SELECT (used->>'count')::bigint FROM quota_usage`)
	st, err := db.Finish(ctx, harbordb.Finish{DeletedBlobs: claimed, FreedBlobs: claimed, AffectedProjects: []int64{p}})
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	if st.BlobRows != int64(len(claimed)) {
		t.Errorf("BlobRows %d", st.BlobRows)
	}
	for _, b := range old.Blobs() {
		if h.Blob(b.Digest).Exists {
			t.Errorf("blob %s still has a row", b.Digest)
		}
	}
	for _, b := range keep.Blobs() {
		if !h.Blob(b.Digest).Exists {
			t.Errorf("kept blob %s lost its row", b.Digest)
		}
	}
	if got := h.QuotaUsed(p); got != h.ComputedUsage(p) {
		t.Errorf("quota %d, want %d", got, h.ComputedUsage(p))
	}
	if got := h.Count(`SELECT (used->>'count')::bigint FROM quota_usage`); got != countBefore {
		t.Errorf("1.x quota count changed: %d -> %d", countBefore, got)
	}
}
