package harbordb_test

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/harbordb"
	"github.com/regsweep/regsweep/harbordb/harbortest"
)

func TestSnapshotScenario(t *testing.T) {
	for _, v := range []harbortest.Variant{harbortest.Latest, harbortest.Harbor28} {
		t.Run(v.String(), func(t *testing.T) {
			h, db := newHarbor(t, v)
			s := buildScenario(t, h)
			before := fingerprint(t, h)
			snap, err := db.Snapshot(context.Background(), window)
			if err != nil {
				t.Fatalf("Snapshot: %v", err)
			}
			if after := fingerprint(t, h); after != before {
				t.Fatal("Snapshot changed the database")
			}
			checkScenarioSnapshot(t, s, snap)
		})
	}
}

func checkScenarioSnapshot(t *testing.T, s *scenario, snap *harbordb.Snapshot) {
	t.Helper()
	if snap.Now.IsZero() || snap.Now.Location().String() != "UTC" {
		t.Errorf("Now = %v, want the database clock in UTC", snap.Now)
	}
	if snap.Schema.Migration != s.h.Variant.Migration() {
		t.Errorf("Schema = %v", snap.Schema)
	}

	// Projects: the soft-deleted one is kept with deleted=true and its new name.
	if p := snap.Projects[s.gone]; !p.Deleted || p.Name != "gone#"+itoa(s.gone) {
		t.Errorf("soft-deleted project = %+v", p)
	}
	if p := snap.Projects[s.library]; p.Deleted || p.Name != "library" {
		t.Errorf("library = %+v", p)
	}
	if r, ok := snap.Repositories["library/multi"]; !ok || r.ProjectID != s.library {
		t.Errorf("repository library/multi = %+v (%v)", r, ok)
	}
	if _, ok := snap.Repositories["gone/app"]; ok {
		t.Error("the soft-deleted project's repository row is still listed")
	}

	// Artifacts and their flags.
	byDigest := map[digest.Digest]harbordb.Artifact{}
	for _, a := range snap.Artifacts {
		byDigest[a.Digest] = a
	}
	want := map[digest.Digest]struct {
		tags            []string
		child, accessor bool
	}{
		s.kept.Digest:        {[]string{"v1"}, false, false},
		s.index.Digest:       {[]string{"latest"}, false, false},
		s.children[0].Digest: {nil, true, false},
		s.children[1].Digest: {nil, true, false},
		s.sig.Digest:         {[]string{harbortest.CosignTag(s.kept.Digest)}, false, true},
		s.untagged.Digest:    {nil, false, false},
	}
	if len(snap.Artifacts) != len(want) {
		t.Errorf("%d artifacts, want %d: %+v", len(snap.Artifacts), len(want), snap.Artifacts)
	}
	for d, w := range want {
		a, ok := byDigest[d]
		if !ok {
			t.Errorf("artifact %s missing", d)
			continue
		}
		if !slices.Equal(a.Tags, w.tags) && !(len(a.Tags) == 0 && len(w.tags) == 0) {
			t.Errorf("artifact %s tags %q, want %q", d, a.Tags, w.tags)
		}
		if a.IsChild != w.child || a.IsAccessory != w.accessor {
			t.Errorf("artifact %s IsChild=%v IsAccessory=%v, want %v %v", d, a.IsChild, a.IsAccessory, w.child, w.accessor)
		}
		if a.ProjectID != s.library || a.RepositoryID == 0 || a.PushTime.IsZero() || a.ManifestMediaType == "" || a.MediaType == "" {
			t.Errorf("artifact %s = %+v: fields not filled", d, a)
		}
	}
	if a := byDigest[s.kept.Digest]; a.Repo != "library/app" || a.MediaType != harbortest.MediaTypeOCIConfig || a.ManifestMediaType != harbortest.MediaTypeOCIManifest {
		t.Errorf("kept artifact = %+v", a)
	}

	// Liveness.
	for _, d := range s.liveDigests() {
		if _, ok := snap.Live[d]; !ok {
			t.Errorf("live digest %s not in Live", d)
		}
	}
	for _, d := range append(s.garbageDigests(), s.stuckLive.Digest, s.stuckGone.Digest, s.touched.Digest) {
		if _, ok := snap.Live[d]; ok {
			t.Errorf("digest %s is in Live but nothing needs it", d)
		}
	}
	if _, ok := snap.Live[s.sharedLyr.Digest]; !ok {
		t.Error("the layer shared by a kept and a trashed image is not live")
	}

	// Blobs and what Harbor's protocol lets a GC claim.
	if b := snap.Blobs[s.stuckGone.Digest]; b.Status != harbordb.StatusDeleting || b.Version != 2 {
		t.Errorf("stuck blob = %+v", b)
	}
	if _, ok := snap.Blobs[s.sysBlob.Digest]; ok {
		t.Error("a system artifact has a blob row")
	}
	for _, d := range s.garbageDigests() {
		b, ok := snap.Blobs[d]
		if !ok {
			t.Errorf("garbage blob %s has no row", d)
			continue
		}
		if !snap.Collectable(b) {
			t.Errorf("garbage blob %+v is not collectable (cutoff %v)", b, snap.Cutoff())
		}
	}
	for _, d := range append(s.liveDigests()[:3], s.touched.Digest, s.stuckLive.Digest) {
		if b, ok := snap.Blobs[d]; ok && snap.Collectable(b) {
			t.Errorf("blob %+v is collectable", b)
		}
	}
	if b := snap.Blobs[s.foreign.Digest]; !b.IsForeignLayer() {
		t.Errorf("foreign layer %+v", b)
	}
	if b := snap.Blobs[s.kept.Digest]; !b.IsManifest() || b.Size != s.keptImg.Manifest.Size {
		t.Errorf("manifest blob %+v", b)
	}

	// Trash: the deleted image and everything of the soft-deleted project.
	trash := map[harbordb.ManifestRef]bool{}
	for _, tr := range snap.Trash {
		trash[harbordb.ManifestRef{Repo: tr.Repo, Digest: tr.Digest}] = true
		if tr.ManifestMediaType == "" || tr.CreationTime.IsZero() {
			t.Errorf("trash row %+v not filled", tr)
		}
	}
	for _, ref := range []harbordb.ManifestRef{
		{Repo: "library/app", Digest: s.trashed.Digest},
		{Repo: "gone/app", Digest: s.goneImg.Manifest.Digest},
	} {
		if !trash[ref] {
			t.Errorf("trash lacks %v: %+v", ref, snap.Trash)
		}
	}
	if len(snap.Trash) != 2 {
		t.Errorf("%d trash rows, want 2", len(snap.Trash))
	}

	// Quotas: one per live project (the deleted project's rows went with it),
	// consistent after the pushes.
	if len(snap.Quotas) != 1 || snap.Quotas[0].ProjectID != s.library {
		t.Fatalf("quotas %+v", snap.Quotas)
	}
	q := snap.Quotas[0]
	if q.Used != q.Computed || q.Drift() != 0 || q.Computed != s.h.ComputedUsage(s.library) || q.Version == 0 {
		t.Errorf("quota %+v, computed by the fixture %d", q, s.h.ComputedUsage(s.library))
	}
}

func TestSnapshotQuotaDrift(t *testing.T) {
	h, db := newHarbor(t, harbortest.Latest)
	p := h.Project("library")
	h.PushImage("library/app", harbortest.FakeImage("a", 2, "v1"))
	want := h.ComputedUsage(p)
	h.SetQuotaUsed(p, want+12345)
	snap, err := db.Snapshot(context.Background(), window)
	if err != nil {
		t.Fatal(err)
	}
	if q := snap.Quotas[0]; q.Used != want+12345 || q.Computed != want || q.Drift() != 12345 {
		t.Errorf("quota %+v, want used %d computed %d", q, want+12345, want)
	}
}

// TestSnapshotHarbor110 reads a 1.10 schema: tag-level artifact rows merged
// per digest, blobs without status.
func TestSnapshotHarbor110(t *testing.T) {
	h, db := newHarbor(t, harbortest.Harbor110)
	lib := h.Project("library")
	gone := h.Project("gone")
	img := harbortest.FakeImage("app", 2, "v1", "latest")
	h.PushImage("library/app", img)
	old := harbortest.FakeImage("old", 1, "old")
	oldArt := h.PushImage("library/app", old)
	h.DeleteArtifact(oldArt)
	goneImg := harbortest.FakeImage("gone", 1, "v1")
	h.PushImage("gone/app", goneImg)
	h.FlagProjectDeleted(gone)
	h.Age(3 * time.Hour)

	snap, err := db.Snapshot(context.Background(), window)
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if !snap.Schema.Harbor1 || snap.Trash != nil {
		t.Errorf("schema %v trash %v", snap.Schema, snap.Trash)
	}
	var app *harbordb.Artifact
	for i, a := range snap.Artifacts {
		if a.Digest == img.Manifest.Digest {
			app = &snap.Artifacts[i]
		}
	}
	if app == nil || !slices.Equal(app.Tags, []string{"latest", "v1"}) || app.ManifestMediaType != harbortest.MediaTypeOCIManifest ||
		app.RepositoryID == 0 || app.ProjectID != lib {
		t.Fatalf("merged 1.10 artifact = %+v", app)
	}
	if len(snap.Artifacts) != 2 {
		t.Errorf("artifacts %+v, want app and the flagged project's", snap.Artifacts)
	}
	for _, b := range img.Blobs() {
		if _, ok := snap.Live[b.Digest]; !ok {
			t.Errorf("%s not live", b.Digest)
		}
	}
	for _, b := range append(old.Blobs(), goneImg.Blobs()...) {
		if _, ok := snap.Live[b.Digest]; ok {
			t.Errorf("%s live", b.Digest)
		}
		blob := snap.Blobs[b.Digest]
		if blob.Status != "" || blob.UpdateTime != blob.CreationTime || !snap.Collectable(blob) {
			t.Errorf("1.10 blob %+v: want no status, update time = creation time, collectable", blob)
		}
	}
	if len(snap.Quotas) != 2 {
		t.Fatalf("quotas %+v", snap.Quotas)
	}
	for _, q := range snap.Quotas {
		if q.Computed != h.ComputedUsage(q.ProjectID) {
			t.Errorf("quota %+v, fixture computes %d", q, h.ComputedUsage(q.ProjectID))
		}
	}
}

// fingerprint hashes every row of the tables GC touches.
func fingerprint(t *testing.T, h *harbortest.Harbor) string {
	t.Helper()
	tables := []string{"blob", "project_blob", "artifact", "artifact_blob", "quota_usage", "project", "repository"}
	if h.Variant.Harbor2() {
		tables = append(tables, "artifact_trash", "tag", "artifact_reference", "artifact_accessory", "execution", "task")
	}
	out := ""
	for _, tb := range tables {
		out += tb + ":" + h.Strings(`SELECT COALESCE(md5(string_agg(t::text, ',' ORDER BY t::text)), '') FROM ` + tb + ` t`)[0] + ";"
	}
	return out
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
