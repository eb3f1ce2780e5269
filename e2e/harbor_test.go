package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/redis/go-redis/v9"

	"github.com/regsweep/regsweep/backend"
	"github.com/regsweep/regsweep/harbordb"
	"github.com/regsweep/regsweep/harbordb/harbortest"
	"github.com/regsweep/regsweep/internal/testenv"
)

// harborSetup is a real registry (v2.8, what Harbor ships) on a filesystem
// with its blob descriptor cache in a real Redis, and a Harbor database
// describing what was pushed, row by row as Harbor's push path writes it.
type harborSetup struct {
	b        *backendUnderTest
	h        *harbortest.Harbor
	redisURL string
	redis    *redis.Client
}

const harborRedisDB = 9 // the registry's cache DB in this test (harbordb's tests own 14 and 15)

func newHarborSetup(t *testing.T, v harbortest.Variant) *harborSetup {
	t.Helper()
	addr := testenv.Redis(t)
	root := t.TempDir()
	storageYAML := fmt.Sprintf("filesystem:\n  rootdirectory: %s\ncache:\n  blobdescriptor: redis\n", root)
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{Version: testenv.RegistryV28, Storage: storageYAML,
		Extra: fmt.Sprintf("redis:\n  addr: %s\n  db: %d\n", addr, harborRedisDB)})
	rc := redis.NewClient(&redis.Options{Addr: addr, DB: harborRedisDB})
	t.Cleanup(func() { rc.Close() })
	if err := rc.FlushDB(context.Background()).Err(); err != nil {
		t.Fatalf("flushing the test's Redis DB: %v", err)
	}
	return &harborSetup{
		b: &backendUnderTest{name: "filesystem", fsRoot: root, reg: reg, registry: storageYAML,
			cfg:   backend.Config{Driver: "filesystem", Filesystem: backend.FilesystemConfig{RootDirectory: root}},
			flags: []string{"--fs-root", root}},
		h:        harbortest.Create(t, testenv.Postgres(t), v),
		redisURL: fmt.Sprintf("redis://%s/%d", addr, harborRedisDB),
		redis:    rc,
	}
}

// describe reads what Harbor would record of a pushed manifest.
func describe(t *testing.T, reg *testenv.Registry, repo, ref string, tags ...string) harbortest.Image {
	t.Helper()
	code, body, hdr := testenv.Get(t, reg, "/v2/"+repo+"/manifests/"+ref, acceptAll)
	if code != http.StatusOK {
		t.Fatalf("GET manifest %s@%s: HTTP %d", repo, ref, code)
	}
	var m struct {
		Config *struct {
			MediaType string        `json:"mediaType"`
			Digest    digest.Digest `json:"digest"`
			Size      int64         `json:"size"`
		} `json:"config"`
		Layers []struct {
			MediaType string        `json:"mediaType"`
			Digest    digest.Digest `json:"digest"`
			Size      int64         `json:"size"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	img := harbortest.Image{Manifest: harbortest.Blob{Digest: digest.Digest(sha(body)), Size: int64(len(body)), MediaType: hdr.Get("Content-Type")}, Tags: tags}
	if m.Config != nil {
		img.Config = harbortest.Blob{Digest: m.Config.Digest, Size: m.Config.Size, MediaType: m.Config.MediaType}
	}
	for _, l := range m.Layers {
		img.Layers = append(img.Layers, harbortest.Blob{Digest: l.Digest, Size: l.Size, MediaType: l.MediaType})
	}
	return img
}

// ageStorage moves every file's mtime back, so the grace period passes.
func ageStorage(t *testing.T, root string, d time.Duration) {
	t.Helper()
	old := time.Now().Add(-d)
	err := filepath.Walk(root, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(path, old, old)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (s *harborSetup) cacheKeys(t *testing.T) []string {
	t.Helper()
	var keys []string
	iter := s.redis.Scan(context.Background(), 0, "*", 1000).Iterator()
	for iter.Next(context.Background()) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestHarborMode is issue 4's scenario: every artifact still in the
// database pulls afterwards, every garbage blob is gone from storage and
// database, the history row reads as Harbor's UI expects, quotas match and
// the registry's cache is purged.
func TestHarborMode(t *testing.T)    { runHarborScenario(t, harbortest.Latest) }
func TestHarborMode2_8(t *testing.T) { runHarborScenario(t, harbortest.Harbor28) }

func runHarborScenario(t *testing.T, v harbortest.Variant) {
	s := newHarborSetup(t, v)
	reg, h := s.b.reg, s.h
	r := func(n int) []byte { return testenv.RandomBytes(t, n) }
	base := r(3000)
	h.Project("lib")
	h.Project("gone")

	// Harbor 2.15 pushes by digest: storage has no tags for these.
	dA := testenv.PushRandomImage(t, reg, "lib/app", base, r(1000))
	imgA := describe(t, reg, "lib/app", dA, "v1")
	artA := h.PushImage("lib/app", imgA)
	// An older push wrote a tag to storage; the database deleted it since.
	dT := testenv.PushRandomImage(t, reg, "lib/app:old", base, r(1100))
	artT := h.PushImage("lib/app", describe(t, reg, "lib/app", dT, "old"))
	h.DeleteArtifact(artT)
	// A second deleted artifact whose layer a push touches just before gc.
	dT2 := testenv.PushRandomImage(t, reg, "lib/app", r(1150))
	imgT2 := describe(t, reg, "lib/app", dT2)
	h.DeleteArtifact(h.PushImage("lib/app", imgT2))
	// An untagged artifact: --delete-untagged collects it.
	dU := testenv.PushRandomImage(t, reg, "lib/app", r(1175))
	imgU := describe(t, reg, "lib/app", dU)
	h.PushImage("lib/app", imgU)
	// A multi-arch index with untagged children.
	c1 := testenv.PushRandomOCIImage(t, reg, "lib/multi", r(1200))
	c2 := testenv.PushRandomOCIImage(t, reg, "lib/multi", r(1300))
	idx := testenv.PushIndex(t, reg, "lib/multi:tmp", c1, c2)
	code, idxBody, idxHdr := testenv.Get(t, reg, "/v2/lib/multi/manifests/"+idx, acceptAll)
	if code != http.StatusOK {
		t.Fatalf("index: HTTP %d", code)
	}
	artC1 := h.PushImage("lib/multi", describe(t, reg, "lib/multi", c1))
	artC2 := h.PushImage("lib/multi", describe(t, reg, "lib/multi", c2))
	h.PushIndex("lib/multi", harbortest.Blob{Digest: digest.Digest(idx), Size: int64(len(idxBody)), MediaType: idxHdr.Get("Content-Type")}, []string{"latest"}, artC1, artC2)
	// A cosign signature of A, an accessory (pushed under cosign's tag).
	dSig := testenv.PushRandomImage(t, reg, "lib/app:"+harbortest.CosignTag(digest.Digest(dA)), r(200))
	h.PushAccessory(artA, describe(t, reg, "lib/app", dSig, harbortest.CosignTag(digest.Digest(dA))), harbortest.AccessoryCosign)
	// A project deleted in Harbor: its image shares the base layer.
	dG := testenv.PushRandomImage(t, reg, "gone/x", base, r(1400))
	h.PushImage("gone/x", describe(t, reg, "gone/x", dG, "v1"))
	h.SoftDeleteProject(h.ProjectID("gone"))
	// Another project's image; lib still has a project_blob row for its
	// layer (stale: no artifact of lib uses it), which Harbor's GC prunes.
	h.Project("team")
	dTeam := testenv.PushRandomImage(t, reg, "team/img", r(1250))
	imgTeam := describe(t, reg, "team/img", dTeam, "v1")
	h.PushImage("team/img", imgTeam)
	stale := imgTeam.Layers[0]
	h.UploadBlob("lib", stale)
	// A blob in storage Harbor never recorded.
	orphan := testenv.UploadBlob(t, reg, "lib/app", r(700))
	// A system artifact: a blob pushed straight under sys_harb0r, no blob row.
	sysRepo := harbortest.SystemArtifactRepo("scandata_export", "exports")
	sysBlob := testenv.UploadBlob(t, reg, sysRepo, r(800))
	h.SystemArtifact("scandata_export", "exports", "ScanData_CSV", harbortest.Blob{Digest: digest.Digest(sysBlob), Size: 800, MediaType: "application/octet-stream"})
	// Blobs stuck in deleting by a GC killed mid-sweep: one still in
	// storage, one whose data is gone.
	stuckData := r(600)
	stuck := testenv.UploadBlob(t, reg, "lib/app", stuckData)
	h.StuckDeleting(harbortest.Blob{Digest: digest.Digest(stuck), Size: 600, MediaType: harbortest.MediaTypeDockerLayer}, 5*time.Hour)
	stuckGone := harbortest.FakeBlob("stuck and gone", 500, harbortest.MediaTypeDockerLayer)
	h.StuckDeleting(stuckGone, 5*time.Hour)
	// An artifact the database has and storage never got: broken. In a
	// repository of its own: the mark keeps every layer link of a
	// repository whose root is missing (a re-push may recover it).
	ghost := harbortest.FakeImage("ghost", 1, "ghost")
	h.PushImage("lib/ghost", ghost)

	// Everything is older than the window, then a push touches T2's layer.
	ageStorage(t, s.b.fsRoot, 3*time.Hour)
	h.Age(3 * time.Hour)
	touched := imgT2.Layers[0].Digest
	h.Touch(touched)
	// Pushed by digest a moment ago and not tagged yet (CI tags after
	// pushing): --delete-untagged leaves it to the window.
	dY := testenv.PushRandomImage(t, reg, "lib/app", r(1180))
	h.PushImage("lib/app", describe(t, reg, "lib/app", dY))
	h.SetQuotaUsed(h.ProjectID("lib"), 1) // drift Harbor's formula repairs

	keptArtifacts := [][2]string{{"lib/app", dA}, {"lib/app", dSig}, {"lib/app", dY}, {"lib/multi", idx}, {"lib/multi", c1}, {"lib/multi", c2}, {"team/img", dTeam}}
	keptBlobs := map[string]bool{sysBlob: true, stuck: true, string(touched): true}
	for _, k := range keptArtifacts {
		for _, d := range pull(t, reg, k[0], k[1]) {
			keptBlobs[d] = true
		}
	}
	if len(s.cacheKeys(t)) == 0 {
		t.Fatal("the registry wrote no cache keys to Redis: the scenario cannot check the purge")
	}
	before := s.b.inventory(t)
	garbage := diff(blobSet(before), keptBlobs)
	wantGarbage := []string{dT, dT2, dU, dG, orphan}
	for _, g := range wantGarbage {
		if !strings.Contains(strings.Join(garbage, ","), g) {
			t.Fatalf("test setup: %s should be garbage; garbage is %v", g, garbage)
		}
	}
	rowsBefore := h.Count(`SELECT count(*) FROM blob`)
	versionsBefore := h.Strings(`SELECT digest || ':' || status || ':' || version FROM blob ORDER BY digest`)

	db := testenv.Postgres(t) // an unrelated, empty database: wrong schema
	args := []string{"gc", "--delete-untagged", "--grace", "2h", "--upload-grace", "2h", "--cache-dir", t.TempDir(), "--format", "json",
		"--max-delete-fraction", "0.9", "--harbor-db", h.DSN, "--harbor-redis", s.redisURL}

	// Fail closed: a database of no known schema, an unreachable one, and
	// one where a query fails (a table Harbor has is missing).
	broken := harbortest.Create(t, testenv.Postgres(t), v)
	broken.Exec(`DROP TABLE quota_usage`)
	for _, bad := range []string{db, "postgres://postgres@127.0.0.1:1/registry?sslmode=disable&connect_timeout=3", broken.DSN} {
		badArgs := append(append([]string{}, args...), "--delete", "--harbor-db", bad)
		if out, code := s.b.regsweep(t, badArgs...); code != 10 {
			t.Errorf("gc --delete with database %s exited %d, want 10: %s", bad, code, out)
		}
	}
	if after := s.b.inventory(t); after.Keys != before.Keys {
		t.Fatalf("a failed Harbor run changed storage: %d keys, then %d", before.Keys, after.Keys)
	}

	// The audit finds what Harbor and storage disagree on.
	out, code := s.b.regsweep(t, "audit", "--format", "json", "--fail-on", "none", "--grace", "2h", "--cache-dir", t.TempDir(), "--harbor-db", h.DSN)
	if code != 0 {
		t.Fatalf("audit exited %d: %s", code, out)
	}
	var audit struct {
		FindingsByKind map[string]int `json:"findings_by_kind"`
		Findings       []struct {
			Kind   string `json:"kind"`
			Digest string `json:"digest"`
			Repo   string `json:"repository"`
		} `json:"findings"`
	}
	if err := json.Unmarshal([]byte(out), &audit); err != nil {
		t.Fatal(err)
	}
	wantKinds := map[string]int{
		"harbor_missing_in_storage": 3,  // the ghost's manifest (no revision link either), config and layer
		"harbor_quota_drift":        1,  // lib
		"harbor_stuck_blob":         2,  // both stuck rows
		"harbor_stale_trash":        3,  // T, T2 and the deleted project's G
		"harbor_unknown_in_db":      -1, // checked below
	}
	for k, n := range wantKinds {
		if n >= 0 && audit.FindingsByKind[k] != n {
			t.Errorf("audit: %s = %d, want %d", k, audit.FindingsByKind[k], n)
		}
	}
	unknown := map[string]bool{}
	for _, f := range audit.Findings {
		if f.Kind == "harbor_unknown_in_db" {
			unknown[f.Digest+f.Repo] = true
		}
	}
	if !unknown[orphan] || !unknown["gone/x"] || unknown[sysBlob] {
		t.Errorf("harbor_unknown_in_db findings %v: want the orphan blob and the deleted project's repository, not the system artifact", unknown)
	}

	// A dry run changes nothing, in storage or in the database.
	out, code = s.b.regsweep(t, args...)
	if code != 0 {
		t.Fatalf("dry run exited %d: %s", code, out)
	}
	var dry gcDoc
	if err := json.Unmarshal([]byte(out), &dry); err != nil {
		t.Fatal(err)
	}
	if num(dry.Plan, "blobs") != int64(len(garbage)) {
		t.Errorf("dry run plans %d blobs, the garbage is %d: %v", num(dry.Plan, "blobs"), len(garbage), garbage)
	}
	if got := h.Strings(`SELECT digest || ':' || status || ':' || version FROM blob ORDER BY digest`); strings.Join(got, ",") != strings.Join(versionsBefore, ",") {
		t.Errorf("the dry run changed blob rows")
	}
	if after := s.b.inventory(t); after.Keys != before.Keys {
		t.Errorf("the dry run changed storage")
	}

	// An earlier run was killed after it recorded its start.
	killed := startKilledRun(t, h.DSN)

	// The real run.
	out, code = s.b.regsweep(t, append(args, "--delete")...)
	if code != 0 {
		t.Fatalf("gc --delete exited %d: %s", code, out)
	}
	after := s.b.inventory(t)
	if lost := diff(keptBlobs, blobSet(after)); len(lost) > 0 {
		t.Fatalf("KEPT BLOBS DELETED: %v", lost)
	}
	if left := diff(blobSet(after), keptBlobs); len(left) > 0 {
		t.Errorf("garbage blobs left in storage: %v", left)
	}
	for name, repo := range after.Repositories {
		for d := range repo.Revisions.All() {
			if !after.Blobs.Has(d) {
				t.Errorf("%s: dangling revision link %s", name, d)
			}
		}
		for d := range repo.Layers.All() {
			if !after.Blobs.Has(d) {
				t.Errorf("%s: dangling layer link %s", name, d)
			}
		}
		for tag, tg := range repo.Tags {
			if tg.Current != "" && !after.Blobs.Has(tg.Current) {
				t.Errorf("%s:%s: tag names a deleted manifest", name, tag)
			}
		}
	}
	if _, ok := after.Repositories["gone/x"]; ok {
		t.Errorf("the deleted project's repository is still in storage")
	}

	// The database, as Harbor's own GC would leave it.
	for _, g := range garbage {
		if h.Blob(digest.Digest(g)).Exists {
			t.Errorf("blob row of swept blob %s remains", g)
		}
	}
	if row := h.Blob(touched); !row.Exists || row.Status != "none" {
		t.Errorf("the touched blob's row: %+v, want it kept in status none", row)
	}
	if row := h.Blob(digest.Digest(stuck)); !row.Exists || row.Status != "none" {
		t.Errorf("the stuck blob still in storage: %+v, want reset to none", row)
	}
	if h.Blob(stuckGone.Digest).Exists {
		t.Errorf("the stuck blob whose data is gone kept its row")
	}
	if n := h.Count(`SELECT count(*) FROM blob WHERE status = 'deleting'`); n != 0 {
		t.Errorf("%d blob rows left in deleting", n)
	}
	if n := h.Count(`SELECT count(*) FROM artifact_trash`); n != 0 {
		t.Errorf("%d artifact_trash rows left", n)
	}
	if n := h.Count(`SELECT count(*) FROM artifact WHERE digest = $1`, dU); n != 0 {
		t.Errorf("the untagged artifact is still in the database")
	}
	if n := h.Count(`SELECT count(*) FROM artifact WHERE digest = $1`, dY); n != 1 {
		t.Errorf("the untagged artifact pushed within the window was deleted from the database")
	}
	if n := h.Count(`SELECT count(*) FROM project_blob pb JOIN blob b ON b.id = pb.blob_id WHERE pb.project_id = $1 AND b.digest = $2`,
		h.ProjectID("lib"), stale.Digest.String()); n != 0 {
		t.Errorf("lib's stale project_blob row for team's layer was not pruned")
	}
	if used, want := h.QuotaUsed(h.ProjectID("lib")), h.ComputedUsage(h.ProjectID("lib")); used != want {
		t.Errorf("lib's quota is %d, its blobs sum to %d", used, want)
	}
	if rows := h.Count(`SELECT count(*) FROM blob`); rows >= rowsBefore {
		t.Errorf("blob rows: %d before, %d after", rowsBefore, rows)
	}
	var extra string
	if got := h.Strings(`SELECT status FROM execution WHERE id = $1`, killed); len(got) != 1 || got[0] != "Error" {
		t.Errorf("the killed run's execution: %v, want Error", got)
	}
	status := h.Strings(`SELECT status FROM execution WHERE vendor_type = 'GARBAGE_COLLECTION' AND vendor_id = -1 AND id <> $1`, killed)
	if len(status) != 1 || status[0] != "Success" {
		t.Errorf("execution rows: %v, want one Success", status)
	} else {
		extra = h.Strings(`SELECT extra_attrs::text FROM execution WHERE vendor_type = 'GARBAGE_COLLECTION' AND id <> $1`, killed)[0]
		var attrs map[string]any
		if err := json.Unmarshal([]byte(extra), &attrs); err != nil {
			t.Fatalf("extra_attrs: %v", err)
		}
		for _, k := range []string{"freed_space", "purged_blobs", "purged_manifests", "workers", "time_window"} {
			if f, ok := attrs[k].(float64); !ok || f != float64(int64(f)) {
				t.Errorf("extra_attrs[%s] = %#v, want a JSON integer", k, attrs[k])
			}
		}
		if attrs["dry_run"] != false || attrs["delete_untagged"] != true {
			t.Errorf("extra_attrs: %s", extra)
		}
		// Harbor's counts: every blob deleted from storage, with a row or
		// not (the orphan), manifests apart, and every row deleted whose
		// data was already gone (stuckGone); the bytes storage lost.
		var freed int64
		manifests := 0
		for _, g := range garbage {
			b, _ := before.Blobs.Get(digest.Digest(g))
			freed += b.Size
			for _, m := range []string{dT, dT2, dU, dG} {
				if g == m {
					manifests++
				}
			}
		}
		for k, want := range map[string]int64{"purged_manifests": int64(manifests), "purged_blobs": int64(len(garbage) - manifests + 1), "freed_space": freed} {
			if got, _ := attrs[k].(float64); int64(got) != want {
				t.Errorf("extra_attrs[%s] = %v, want %d", k, attrs[k], want)
			}
		}
	}
	// jobservice logs to files here (Harbor's default): Harbor would never
	// read a job_log row.
	if n := h.Count(`SELECT count(*) FROM job_log`); n != 0 {
		t.Errorf("%d job_log rows written, though Harbor reads job logs from files", n)
	}
	for _, k := range s.cacheKeys(t) {
		if strings.HasPrefix(k, "blobs::") || strings.HasPrefix(k, "repository::") {
			t.Errorf("registry cache key %s survived the purge", k)
		}
	}

	// Every artifact still in the database pulls through the registry.
	reg.Restart()
	for _, k := range keptArtifacts {
		pull(t, reg, k[0], k[1])
	}
	code, data, _ := testenv.Get(t, reg, "/v2/"+sysRepo+"/blobs/"+sysBlob, "")
	if code != http.StatusOK || sha(data) != sysBlob {
		t.Errorf("system artifact: HTTP %d", code)
	}

	// A second run plans nothing: the formerly stuck blob, reset to none
	// now, is an ordinary candidate once the window has passed again.
	out, code = s.b.regsweep(t, args...)
	var second gcDoc
	if err := json.Unmarshal([]byte(out), &second); err != nil || code != 0 {
		t.Fatalf("second run: exit %d, %v", code, err)
	}
	for _, k := range []string{"blobs", "manifests", "layer_links", "repositories"} {
		if n := num(second.Plan, k); n != 0 {
			t.Errorf("second run plans %d %s", n, k)
		}
	}
}

// Harbor 1.10: tag-level artifact rows, no blob status. Deleting needs
// Harbor read-only, as its own GC did; storage tags count as roots too.
func TestHarborMode1_10(t *testing.T) {
	s := newHarborSetup(t, harbortest.Harbor110)
	reg, h := s.b.reg, s.h
	h.Project("lib")
	r := func(n int) []byte { return testenv.RandomBytes(t, n) }
	base := r(2000)
	dA := testenv.PushRandomImage(t, reg, "lib/app:v1", base, r(900))
	h.PushImage("lib/app", describe(t, reg, "lib/app", dA, "v1"))
	dB := testenv.PushRandomImage(t, reg, "lib/app:v2", base, r(950))
	imgB := describe(t, reg, "lib/app", dB, "v2")
	h.PushImage("lib/app", imgB)
	// 1.10 deletes through the registry's API, then its rows.
	reg.Crane(t, "delete", reg.Ref("lib/app@"+dB))
	h.Exec(`DELETE FROM artifact WHERE digest = $1`, dB)
	orphan := testenv.UploadBlob(t, reg, "lib/app", r(300))
	ageStorage(t, s.b.fsRoot, 3*time.Hour)
	h.Age(3 * time.Hour)

	keptBlobs := map[string]bool{}
	for _, d := range pull(t, reg, "lib/app", "v1") {
		keptBlobs[d] = true
	}
	before := s.b.inventory(t)
	args := []string{"gc", "--delete", "--grace", "2h", "--format", "json", "--max-delete-fraction", "0.9", "--cache-dir", t.TempDir(), "--harbor-db", h.DSN}

	// Not read-only: refused before anything is deleted.
	if out, stderr, code := s.b.run(t, args...); code != 10 || !strings.Contains(stderr, "read-only") {
		t.Fatalf("gc --delete on Harbor 1.10 not read-only exited %d, want 10 naming read-only: %s\n%s", code, out, stderr)
	}
	if after := s.b.inventory(t); after.Keys != before.Keys {
		t.Fatalf("the refused run changed storage: %d keys, then %d", before.Keys, after.Keys)
	}

	h.SetReadOnly(true)
	if out, code := s.b.regsweep(t, args...); code != 0 {
		t.Fatalf("gc --delete exited %d: %s", code, out)
	}
	after := s.b.inventory(t)
	if lost := diff(keptBlobs, blobSet(after)); len(lost) > 0 {
		t.Fatalf("KEPT BLOBS DELETED: %v", lost)
	}
	if left := diff(blobSet(after), keptBlobs); len(left) > 0 {
		t.Errorf("garbage left: %v", left)
	}
	for _, b := range append(imgB.Blobs(), harbortest.Blob{Digest: digest.Digest(orphan)}) {
		if b.Digest == digest.Digest(sha(base)) || keptBlobs[string(b.Digest)] {
			continue
		}
		if h.Blob(b.Digest).Exists {
			t.Errorf("blob row of swept %s remains", b.Digest)
		}
	}
	reg.Restart()
	pull(t, reg, "lib/app", "v1")
}

// startKilledRun records a GC execution as a deleting run does when it
// starts, and never finishes it: the run was killed.
func startKilledRun(t *testing.T, dsn string) int64 {
	t.Helper()
	db, err := harbordb.Open(context.Background(), harbordb.Config{URL: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	e, err := db.StartExecution(context.Background(), harbordb.ExecutionStart{Workers: 1, TimeWindow: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return e.ID
}
