package harbordb_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/harbordb"
	"github.com/regsweep/regsweep/harbordb/harbortest"
)

func TestTrashArtifacts(t *testing.T) {
	for _, v := range []harbortest.Variant{harbortest.Latest, harbortest.Harbor28} {
		t.Run(v.String(), func(t *testing.T) {
			testTrashArtifacts(t, v)
		})
	}
}

func testTrashArtifacts(t *testing.T, v harbortest.Variant) {
	ctx := context.Background()
	h, db := newHarbor(t, v)
	p := h.Project("library")
	shared := harbortest.FakeBlob("shared", 5000, harbortest.MediaTypeOCILayer)

	keptImg := harbortest.FakeImage("kept", 1, "v1")
	keptImg.Layers = append(keptImg.Layers, shared)
	h.PushImage("library/app", keptImg)

	untaggedImg := harbortest.FakeImage("untagged", 1)
	untaggedImg.Layers = append(untaggedImg.Layers, shared)
	untagged := h.PushImage("library/app", untaggedImg)
	h.Label(untagged, "old")

	laterTagged := h.PushImage("library/app", harbortest.FakeImage("later-tagged", 1))

	// An untagged index with two untagged children and a signed index.
	var children []harbortest.Artifact
	var childImgs []harbortest.Image
	for _, seed := range []string{"c1", "c2"} {
		img := harbortest.FakeImage(seed, 1)
		childImgs = append(childImgs, img)
		children = append(children, h.PushImage("library/multi", img))
	}
	idxBlob := harbortest.FakeBlob("idx", 600, harbortest.MediaTypeOCIIndex)
	idx := h.PushIndex("library/multi", idxBlob, nil, children...)
	sigImg := harbortest.FakeImage("idx-sig", 1, harbortest.CosignTag(idxBlob.Digest))
	sig := h.PushAccessory(idx, sigImg, harbortest.AccessoryCosign)

	snap, err := db.Snapshot(ctx, window)
	if err != nil {
		t.Fatal(err)
	}
	// Harbor's rule: untagged, not a child, not an accessory.
	var cands []harbordb.Artifact
	for _, a := range snap.Artifacts {
		if len(a.Tags) == 0 && !a.IsChild && !a.IsAccessory {
			cands = append(cands, a)
		}
	}
	if len(cands) != 3 {
		t.Fatalf("untagged candidates %+v, want untagged, later-tagged and the index", cands)
	}
	// Passed anyway: a child and the accessory are skipped by the re-check.
	for _, a := range snap.Artifacts {
		if a.Digest == children[0].Digest || a.Digest == sig.Digest {
			cands = append(cands, a)
		}
	}
	h.Exec(`INSERT INTO tag (repository_id, artifact_id, name) VALUES ($1, $2, 'now-tagged')`, laterTagged.RepositoryID, laterTagged.ID)
	quotaBefore := h.QuotaUsed(p)

	trashed, err := db.TrashArtifacts(ctx, cands)
	if err != nil {
		t.Fatalf("TrashArtifacts: %v", err)
	}
	var got []digest.Digest
	for _, a := range trashed {
		got = append(got, a.Digest)
	}
	want := []digest.Digest{untagged.Digest, idx.Digest, sig.Digest, children[0].Digest, children[1].Digest}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("trashed %v, want %v", got, want)
	}
	for _, d := range want {
		if n := h.Count(`SELECT count(*) FROM artifact WHERE digest = $1`, d.String()); n != 0 {
			t.Errorf("artifact %s still exists", d)
		}
	}
	for _, d := range []digest.Digest{laterTagged.Digest, snap.Artifacts[0].Digest} {
		if n := h.Count(`SELECT count(*) FROM artifact WHERE digest = $1`, d.String()); n != 1 {
			t.Errorf("artifact %s was deleted", d)
		}
	}
	// One trash row per deleted artifact, with Harbor's columns.
	rows := h.Strings(`SELECT repository_name || '@' || digest || ' ' || media_type || ' ' || manifest_media_type FROM artifact_trash ORDER BY 1`)
	if len(rows) != len(want) {
		t.Errorf("trash rows %v", rows)
	}
	if !slices.Contains(rows, "library/app@"+untagged.Digest.String()+" "+harbortest.MediaTypeOCIConfig+" "+harbortest.MediaTypeOCIManifest) {
		t.Errorf("trash rows %v lack the untagged image", rows)
	}
	for table, sql := range map[string]string{
		"artifact_reference":   `SELECT count(*) FROM artifact_reference`,
		"artifact_accessory":   `SELECT count(*) FROM artifact_accessory`,
		"label_reference":      `SELECT count(*) FROM label_reference`,
		"tag of the signature": `SELECT count(*) FROM tag WHERE name LIKE 'sha256-%'`,
	} {
		if n := h.Count(sql); n != 0 {
			t.Errorf("%s: %d rows left", table, n)
		}
	}
	// project_blob: the untagged image's own blobs left the project, the
	// layer the kept image shares stayed; artifact_blob stays for the sweep.
	for _, b := range untaggedImg.Blobs() {
		n := h.Count(`SELECT count(*) FROM project_blob pb JOIN blob b ON b.id = pb.blob_id WHERE b.digest = $1`, b.Digest.String())
		if want := map[bool]int64{true: 1, false: 0}[b.Digest == shared.Digest]; n != want {
			t.Errorf("blob %s has %d project_blob rows, want %d", b.Digest, n, want)
		}
	}
	if n := h.Count(`SELECT count(*) FROM artifact_blob WHERE digest_af = $1`, untagged.Digest.String()); n == 0 {
		t.Error("artifact_blob rows of the trashed artifact were deleted before the sweep")
	}
	if q := h.QuotaUsed(p); q != h.ComputedUsage(p) || q >= quotaBefore {
		t.Errorf("quota %d (before %d), want Harbor's formula %d", q, quotaBefore, h.ComputedUsage(p))
	}

	// The snapshot taken after it no longer counts them live; the trash
	// lists them for the sweep.
	snap2, err := db.Snapshot(ctx, window)
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range append(childImgs, untaggedImg, sigImg) {
		if _, live := snap2.Live[img.Config.Digest]; live {
			t.Errorf("config %s of a trashed artifact is still live", img.Config.Digest)
		}
	}
	if _, live := snap2.Live[shared.Digest]; !live {
		t.Error("shared layer not live")
	}

	// Trashing again finds nothing.
	again, err := db.TrashArtifacts(ctx, cands)
	if err != nil || len(again) != 0 {
		t.Errorf("second TrashArtifacts: %v %v", again, err)
	}
}

func TestTrashArtifactsHarbor110(t *testing.T) {
	_, db := newHarbor(t, harbortest.Harbor110)
	_, err := db.TrashArtifacts(context.Background(), []harbordb.Artifact{{ID: 1}})
	if err == nil || !strings.Contains(err.Error(), "Harbor 2.x") {
		t.Fatalf("TrashArtifacts on 1.10: %v", err)
	}
}
