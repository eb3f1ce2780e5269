package harbordb_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/harbordb"
	"github.com/regsweep/regsweep/harbordb/harbortest"
	"github.com/regsweep/regsweep/internal/testenv"
)

// window is the GC time window used by the tests; fixtures are aged by
// more than it.
const window = 2 * time.Hour

// testPassword is put in test DSNs (the test server trusts 127.0.0.1, so it
// is never checked) to prove it never leaks.
const testPassword = "hunter2-Sekret"

// newHarbor creates a Harbor schema in a fresh database and opens it.
func newHarbor(t *testing.T, v harbortest.Variant) (*harbortest.Harbor, *harbordb.DB) {
	t.Helper()
	dsn := testenv.Postgres(t)
	h := harbortest.Create(t, dsn, v)
	return h, open(t, dsn)
}

// open opens dsn with testPassword added.
func open(t *testing.T, dsn string) *harbordb.DB {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), testPassword)
	db, err := harbordb.Open(context.Background(), harbordb.Config{URL: u.String()})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(db.Close)
	return db
}

// scenario is a Harbor 2.x database holding every case of issue 4's
// Done-when list.
type scenario struct {
	h          *harbortest.Harbor
	library    int64 // project "library"
	gone       int64 // soft-deleted project
	kept       harbortest.Artifact
	keptImg    harbortest.Image
	trashedImg harbortest.Image // deleted: in artifact_trash
	trashed    harbortest.Artifact
	sharedLyr  harbortest.Blob // layer of both kept and trashed
	children   []harbortest.Artifact
	childImgs  []harbortest.Image
	index      harbortest.Artifact
	indexBlob  harbortest.Blob
	sig        harbortest.Artifact // cosign signature of kept
	sigImg     harbortest.Image
	untagged   harbortest.Artifact // --delete-untagged candidate
	untagImg   harbortest.Image
	goneImg    harbortest.Image // image of the soft-deleted project
	goneUpload harbortest.Blob  // upload without manifest in the soft-deleted project
	upload     harbortest.Blob  // upload without manifest in library
	stuckLive  harbortest.Blob  // stuck in deleting, data still in storage
	stuckGone  harbortest.Blob  // stuck in deleting, data gone
	sysBlob    harbortest.Blob  // system artifact (sys_harb0r)
	touched    harbortest.Blob  // re-pushed (touched) after aging: inside the window
	foreign    harbortest.Blob  // foreign layer of kept
}

func buildScenario(t *testing.T, h *harbortest.Harbor) *scenario {
	t.Helper()
	s := &scenario{h: h}
	s.library = h.Project("library")
	s.gone = h.Project("gone")

	s.sharedLyr = harbortest.FakeBlob("shared-layer", 4000, harbortest.MediaTypeOCILayer)
	s.foreign = harbortest.FakeBlob("foreign-layer", 99999, harbortest.MediaTypeForeignLayer)
	s.keptImg = harbortest.FakeImage("kept", 1, "v1")
	s.keptImg.Layers = append(s.keptImg.Layers, s.sharedLyr, s.foreign)
	s.kept = h.PushImage("library/app", s.keptImg)

	s.trashedImg = harbortest.FakeImage("trashed", 1, "old")
	s.trashedImg.Layers = append(s.trashedImg.Layers, s.sharedLyr)
	s.trashed = h.PushImage("library/app", s.trashedImg)
	h.DeleteArtifact(s.trashed)

	for _, seed := range []string{"child-amd64", "child-arm64"} {
		img := harbortest.FakeImage(seed, 1)
		s.childImgs = append(s.childImgs, img)
		s.children = append(s.children, h.PushImage("library/multi", img))
	}
	s.indexBlob = harbortest.FakeBlob("index", 700, harbortest.MediaTypeOCIIndex)
	s.index = h.PushIndex("library/multi", s.indexBlob, []string{"latest"}, s.children...)

	s.sigImg = harbortest.FakeImage("kept-signature", 1, harbortest.CosignTag(s.kept.Digest))
	s.sig = h.PushAccessory(s.kept, s.sigImg, harbortest.AccessoryCosign)

	s.untagImg = harbortest.FakeImage("untagged", 1)
	s.untagged = h.PushImage("library/app", s.untagImg)

	s.goneImg = harbortest.FakeImage("gone-image", 1, "v1")
	h.PushImage("gone/app", s.goneImg)
	s.goneUpload = harbortest.FakeBlob("gone-upload", 123, "")
	h.UploadBlob("gone", s.goneUpload)
	h.UploadBlob("gone", s.sharedLyr) // a project_blob row of the deleted project on a live blob
	h.SoftDeleteProject(s.gone)

	s.upload = harbortest.FakeBlob("library-upload", 321, "")
	h.UploadBlob("library", s.upload)

	s.sysBlob = harbortest.FakeBlob("scandata-export", 5555, "")
	h.SystemArtifact("scandata_export", "report-1", "ScanData_CSV", s.sysBlob)

	s.touched = harbortest.FakeBlob("touched", 777, "")
	h.UploadBlob("library", s.touched)
	h.Exec(`DELETE FROM project_blob WHERE blob_id = (SELECT id FROM blob WHERE digest = $1)`, s.touched.Digest.String())
	h.SyncQuota(s.library)

	s.stuckLive = harbortest.FakeBlob("stuck-live", 1111, harbortest.MediaTypeOCILayer)
	s.stuckGone = harbortest.FakeBlob("stuck-gone", 2222, harbortest.MediaTypeOCILayer)
	h.StuckDeleting(s.stuckLive, time.Minute)
	h.StuckDeleting(s.stuckGone, time.Minute)

	h.Age(3 * time.Hour)
	h.Touch(s.touched.Digest) // re-pushed: back inside the window
	return s
}

// liveDigests are the digests the scenario's Harbor needs.
func (s *scenario) liveDigests() []digest.Digest {
	var out []digest.Digest
	for _, img := range append([]harbortest.Image{s.keptImg, s.sigImg, s.untagImg}, s.childImgs...) {
		for _, b := range img.Blobs() {
			out = append(out, b.Digest)
		}
	}
	return append(out, s.indexBlob.Digest, s.sysBlob.Digest)
}

// garbageDigests are blob rows nothing needs and old enough to collect.
func (s *scenario) garbageDigests() []digest.Digest {
	out := []digest.Digest{s.trashedImg.Manifest.Digest, s.trashedImg.Config.Digest, s.trashedImg.Layers[0].Digest,
		s.upload.Digest, s.goneUpload.Digest}
	for _, b := range s.goneImg.Blobs() {
		out = append(out, b.Digest)
	}
	return out
}
