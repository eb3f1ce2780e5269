package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/redis/go-redis/v9"

	"github.com/regsweep/regsweep/harbordb/harbortest"
	"github.com/regsweep/regsweep/internal/faultproxy"
	"github.com/regsweep/regsweep/internal/testenv"
	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/storage"
)

// Promises of Harbor mode with Harbor online that a review found broken
// (issue 16): each test failed on the code it was written against.

// lockedBuffer is a bytes.Buffer a gate may read while the run writes it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newHarborS3RedisSetup is newHarborS3Setup with the registry caching blob
// descriptors in Redis, as Harbor's registry does by default
// (storage.cache.layerinfo: redis, the registry's Redis DB).
func newHarborS3RedisSetup(t *testing.T, redisDB int) (*harborS3Setup, string) {
	t.Helper()
	s := newHarborS3Setup(t)
	addr := testenv.Redis(t)
	s.b.reg.Stop()
	s.b.reg = testenv.StartRegistry(t, testenv.RegistryOptions{Version: testenv.RegistryV28,
		Storage: s.b.registry + "cache:\n  blobdescriptor: redis\n",
		Extra:   fmt.Sprintf("redis:\n  addr: %s\n  db: %d\n", addr, redisDB)})
	rc := redis.NewClient(&redis.Options{Addr: addr, DB: redisDB})
	t.Cleanup(func() { rc.Close() })
	if err := rc.FlushDB(context.Background()).Err(); err != nil {
		t.Fatalf("flushing the test's Redis DB: %v", err)
	}
	return s, fmt.Sprintf("redis://%s/%d", addr, redisDB)
}

// runWhen runs regsweep; the first request the rule's gate sees once the
// run's stderr matches when is held while land runs.
func (s *harborS3Setup) runWhen(t *testing.T, when *regexp.Regexp, rules func(faultproxy.Fault) []faultproxy.Rule, land func(), args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr lockedBuffer
	reached, resume := make(chan struct{}), make(chan struct{})
	var once sync.Once
	s.proxy.SetRules(rules(faultproxy.Before("gate", func() {
		if !when.MatchString(stderr.String()) {
			return
		}
		once.Do(func() {
			close(reached)
			<-resume
		})
	}))...)
	cmd := exec.Command(regsweepBinary(t), append(args, s.b.flags...)...)
	cmd.Env = append(os.Environ(), s.b.env...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case <-reached:
		land()
		close(resume)
		err = <-done
	case err = <-done:
		t.Fatalf("regsweep ended before the gate was reached (%v):\n%s", err, stderr.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

// deleteRequests matches every delete regsweep sends to S3 under the
// registry's tree: a multi-object delete, or a DELETE of one key.
func deleteRequests(f faultproxy.Fault) []faultproxy.Rule {
	return []faultproxy.Rule{
		{Name: "delete", Method: "POST", Query: regexp.MustCompile(`(^|&)delete(=|&|$)`), Fault: f},
		{Name: "delete", Method: "DELETE", Path: regexp.MustCompile(`docker/registry/v2/`), Fault: f},
	}
}

// blobPhase matches gc's log line that starts the blob phase (phase 3).
var blobPhase = regexp.MustCompile(`sweeping.*phase["=:]+3\b`)

// sameImageLiveAndDeleted pushes one image of one layer into two
// repositories (an image is a function of its layers): live in lib/app,
// deleted in Harbor from lib/old.
func (s *harborS3Setup) sameImageLiveAndDeleted(t *testing.T) (layer []byte, d string, img harbortest.Image) {
	t.Helper()
	reg, h := s.b.reg, s.h
	h.Project("lib")
	layer = testenv.RandomBytes(t, 1500)
	d = testenv.PushRandomImage(t, reg, "lib/app", layer)
	img = describe(t, reg, "lib/app", d, "v1")
	h.PushImage("lib/app", img)
	if dX := testenv.PushRandomImage(t, reg, "lib/old", layer); dX != d {
		t.Fatalf("lib/old got %s, want %s", dX, d)
	}
	h.DeleteArtifact(h.PushImage("lib/old", untagged(img)))
	return layer, d, img
}

// untagged is img without its tags.
func untagged(img harbortest.Image) harbortest.Image {
	return harbortest.Image{Manifest: img.Manifest, Config: img.Config, Layers: img.Layers}
}

// repushThroughHarbor pushes img (made of layer) into repo again as a
// client does through Harbor: each blob the client asks for has its row
// touched (Harbor's HEAD middleware, before the registry answers), and the
// artifact is recorded once the registry took the manifest.
func repushThroughHarbor(t *testing.T, reg *testenv.Registry, h *harbortest.Harbor, repo string, layer []byte, img harbortest.Image) {
	t.Helper()
	for _, b := range img.Blobs() {
		if b.Digest != img.Manifest.Digest {
			h.Touch(b.Digest)
		}
	}
	if again := testenv.PushRandomImage(t, reg, repo, layer); again != string(img.Manifest.Digest) {
		t.Fatalf("the re-push into %s made %s, not %s", repo, again, img.Manifest.Digest)
	}
	h.PushImage(repo, untagged(img))
}

// TestHarborRepushAfterLinkPhaseIsNotServedFromStaleCache: Harbor's
// registry caches blob descriptors in Redis, per repository. A client
// re-pushing an image into a repository whose layer links the run just
// deleted, after the recheck before the blobs (here: during the blob
// phase), must not be told by the cache that the blobs are there (HEAD
// 200) and have its manifest accepted on the cache's word: no recheck
// would heal those links, and once the cache went, pulls would answer
// BLOB_UNKNOWN. The cache is purged once the links are gone, before that
// recheck. (Review of Harbor mode: it was purged only at the end.)
func TestHarborRepushAfterLinkPhaseIsNotServedFromStaleCache(t *testing.T) {
	const cacheDB = 8
	s, redisURL := newHarborS3RedisSetup(t, cacheDB)
	reg, h := s.b.reg, s.h
	layer, dA, img := s.sameImageLiveAndDeleted(t)
	// A blob Harbor has no row for: the run has a blob to delete.
	testenv.UploadBlob(t, reg, "lib/app", testenv.RandomBytes(t, 700))

	out, stderr, code := s.runWhen(t, blobPhase, deleteRequests, func() {
		repushThroughHarbor(t, reg, h, "lib/old", layer, img)
		pull(t, reg, "lib/old", dA) // accepted and pulling while the cache answers
	}, s.gcArgs(t, "--harbor-redis", redisURL, "--delete-batch-size", "1", "--concurrency", "1")...)
	if code != 0 {
		t.Fatalf("gc --delete exited %d: %s\n%s", code, out, stderr)
	}
	reg.Restart()
	pull(t, reg, "lib/app", dA)
	pull(t, reg, "lib/old", dA)
}

// TestHarborRepushAfterKilledRunIsNotServedFromStaleCache: a run killed
// in its link phase leaves the registry's cache answering for links it
// deleted. The next deleting run purges the cache before its walk, so a
// re-push during that run uploads what the repository lacks instead of
// relying on the cache, and pulls afterwards.
func TestHarborRepushAfterKilledRunIsNotServedFromStaleCache(t *testing.T) {
	const cacheDB = 7
	s, redisURL := newHarborS3RedisSetup(t, cacheDB)
	reg, h := s.b.reg, s.h
	layer, dA, img := s.sameImageLiveAndDeleted(t)
	pull(t, reg, "lib/old", dA) // the cache holds lib/old's blobs

	// What a run killed after deleting lib/old's links leaves: the links
	// gone from storage, the cache not purged.
	d := lockDriver(t, s.b)
	var links []string
	if err := d.Walk(context.Background(), layout.RepoPrefix("lib/old"), func(oi storage.ObjectInfo) error {
		links = append(links, oi.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if res, err := d.Delete(context.Background(), links); err != nil {
		t.Fatal(err)
	} else {
		for _, r := range res {
			if r.Err != nil {
				t.Fatalf("deleting %s: %v", r.Key, r.Err)
			}
		}
	}

	g := newGate()
	s.proxy.SetRules(faultproxy.Rule{Name: "walk", Method: "GET", Query: repositoriesListing, Times: 1, Fault: g.fault("first listing of the repository tree")})
	out, stderr, code := s.runGated(t, g, func() {
		repushThroughHarbor(t, reg, h, "lib/old", layer, img) // while the run walks
	}, s.gcArgs(t, "--harbor-redis", redisURL)...)
	if code != 0 {
		t.Fatalf("gc --delete exited %d: %s\n%s", code, out, stderr)
	}
	reg.Restart()
	pull(t, reg, "lib/app", dA)
	pull(t, reg, "lib/old", dA)
}

// TestHarborFinishFailureReleasesRowsAndRerunFinishes: the database fails
// while regsweep brings it in line after the sweep (a failover, a
// statement timeout). The blobs are gone from storage; their rows must not
// stay in `deleting` (Harbor's push path refuses those digests, "the
// asking blob is in GC"): they become deletefailed, as Harbor's own GC
// marks a row it cannot delete. A run soon after, the database back,
// finishes the database side without waiting for the window: the rows'
// data is gone. (Review of Harbor mode: the rows stayed deleting, and the
// re-run left them.)
func TestHarborFinishFailureReleasesRowsAndRerunFinishes(t *testing.T) {
	s := newHarborSetup(t, harbortest.Latest)
	reg, h := s.b.reg, s.h
	r := func(n int) []byte { return testenv.RandomBytes(t, n) }
	h.Project("lib")
	dA := testenv.PushRandomImage(t, reg, "lib/app", r(1000))
	h.PushImage("lib/app", describe(t, reg, "lib/app", dA, "v1"))
	dG := testenv.PushRandomImage(t, reg, "lib/old", r(1100))
	imgG := describe(t, reg, "lib/old", dG)
	h.DeleteArtifact(h.PushImage("lib/old", imgG))
	ageStorage(t, s.b.fsRoot, 3*time.Hour)
	h.Age(3 * time.Hour)
	// The database fails as soon as regsweep deletes blob rows.
	h.Exec(`CREATE FUNCTION fail_blob_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'injected failure deleting blob %', OLD.id; END $$`)
	h.Exec(`CREATE TRIGGER fail_blob_delete BEFORE DELETE ON blob FOR EACH ROW EXECUTE FUNCTION fail_blob_delete()`)

	args := []string{"gc", "--delete", "--grace", "2h", "--cache-dir", t.TempDir(), "--format", "json", "--harbor-db", h.DSN, "--harbor-redis", s.redisURL}
	out, code := s.b.regsweep(t, args...)
	if code != 10 {
		t.Fatalf("gc --delete with the database failing in Finish exited %d, want 10: %s", code, out)
	}
	if code, _, _ := testenv.Get(t, reg, "/v2/lib/old/blobs/"+string(imgG.Layers[0].Digest), ""); code != 404 {
		t.Fatalf("the garbage layer answers %d: the sweep did not delete it, nothing to check", code)
	}
	deleting := h.Strings(`SELECT digest FROM blob WHERE status = 'deleting' ORDER BY digest`)
	if len(deleting) > 0 {
		t.Errorf("%d blob row(s) left in deleting after the run (Harbor refuses pushes of them): %v", len(deleting), deleting)
	}

	// The database is back: a re-run finishes the database side.
	h.Exec(`DROP TRIGGER fail_blob_delete ON blob`)
	if out, code := s.b.regsweep(t, args...); code != 0 {
		t.Fatalf("the re-run exited %d: %s", code, out)
	}
	for _, b := range imgG.Blobs() {
		if row := h.Blob(b.Digest); row.Exists {
			t.Errorf("after the re-run, the row of deleted blob %s is still there: %+v", b.Digest, row)
		}
	}
}

// TestHarborBehindDatabaseRefusedWithGraceZero: the database is a backup
// restored from before the last push (10 minutes ago). The run refuses
// (exit 10) with --grace 2h and with --grace 0s, which docs/harbor.md
// gives as the mirror of GC_TIME_WINDOW_HOURS=0: the check has a lookback
// of its own (--harbor-behind-lookback, at least --grace), and the image
// the backup lacks stays. (Review of Harbor mode: the lookback was the
// grace, so with 0s the check judged no link and the image was deleted.)
func TestHarborBehindDatabaseRefusedWithGraceZero(t *testing.T) {
	s := newHarborSetup(t, harbortest.Latest)
	reg, h := s.b.reg, s.h
	r := func(n int) []byte { return testenv.RandomBytes(t, n) }
	h.Project("lib")
	for _, repo := range []string{"lib/app", "lib/web"} {
		d := testenv.PushRandomImage(t, reg, repo, r(1000))
		h.PushImage(repo, describe(t, reg, repo, d, "v1"))
	}
	// Pushed after the backup was taken: storage has it, the database not.
	dNew := testenv.PushRandomImage(t, reg, "lib/app", r(1200))
	ageStorage(t, s.b.fsRoot, 10*time.Minute)
	h.Age(10 * time.Minute)

	args := []string{"gc", "--delete", "--cache-dir", t.TempDir(), "--format", "json", "--harbor-db", h.DSN, "--harbor-redis", s.redisURL}
	if out, code := s.b.regsweep(t, append(args, "--grace", "2h")...); code != 10 {
		t.Fatalf("with --grace 2h gc --delete exited %d, want 10 (database behind storage): %s", code, out)
	}
	out, code := s.b.regsweep(t, append(args, "--grace", "0s", "--upload-grace", "0s")...)
	if code != 10 {
		t.Errorf("with --grace 0s gc --delete exited %d, want 10 (database behind storage): %s", code, out)
	}
	reg.Restart()
	pull(t, reg, "lib/app", dNew)
}

// TestHarborGarbageRowsWithoutDataAreRemoved: a garbage blob row whose
// data is no longer in storage (a run cancelled while its delete request
// was in flight releases the row as deletefailed; registryctl answered 404
// to an earlier collector) is a candidate of Harbor's own GC, which
// deletes the row (its storage delete ignores not-found) and counts it in
// its history. regsweep removes it too, so the database ends as Harbor's
// GC leaves it. (Review of Harbor mode: regsweep planned only what the
// walk found, and such rows stayed forever.)
func TestHarborGarbageRowsWithoutDataAreRemoved(t *testing.T) {
	s := newHarborSetup(t, harbortest.Latest)
	reg, h := s.b.reg, s.h
	h.Project("lib")
	d := testenv.PushRandomImage(t, reg, "lib/app", testenv.RandomBytes(t, 1000))
	h.PushImage("lib/app", describe(t, reg, "lib/app", d, "v1"))
	h.GarbageBlobs(2) // rows no artifact or project uses, no data in storage
	h.Exec(`UPDATE blob SET status = 'deletefailed' WHERE id = (SELECT max(id) FROM blob)`)
	ageStorage(t, s.b.fsRoot, 3*time.Hour)
	h.Age(3 * time.Hour)

	out, code := s.b.regsweep(t, "gc", "--delete", "--grace", "2h", "--cache-dir", t.TempDir(), "--format", "json",
		"--harbor-db", h.DSN, "--harbor-redis", s.redisURL)
	if code != 0 {
		t.Fatalf("gc --delete exited %d: %s", code, out)
	}
	if left := h.Strings(`SELECT digest || ' ' || status FROM blob WHERE content_type = $1 ORDER BY id`, harbortest.MediaTypeOCILayer); len(left) > 0 {
		t.Errorf("garbage rows whose data is gone are still there (Harbor's GC deletes them): %v", left)
	}
	// Harbor counts a row it deletes as purged, bytes apart.
	if got := h.Strings(`SELECT (extra_attrs->>'purged_blobs') || ' ' || (extra_attrs->>'freed_space') FROM execution WHERE vendor_type = 'GARBAGE_COLLECTION'`); len(got) != 1 || got[0] != "2 0" {
		t.Errorf("the run's history (purged_blobs freed_space): %v, want [2 0]", got)
	}
	pull(t, s.b.reg, "lib/app", d)
}

// TestHarborQueryErrorMidSweepStopsTheRun: a query that fails once the
// sweep has begun (here the check of a batch of links, as a failover or a
// statement timeout would) cannot undo what earlier batches deleted: the
// run stops after the batches in flight, deletes no blob, exits 10, and
// leaves only garbage; the next run, the database back, collects the rest.
// (Review of Harbor mode: the docs said every query error ends the run
// before anything is deleted.)
func TestHarborQueryErrorMidSweepStopsTheRun(t *testing.T) {
	s := newHarborS3Setup(t)
	reg, h := s.b.reg, s.h
	r := func(n int) []byte { return testenv.RandomBytes(t, n) }
	h.Project("lib")
	dA := testenv.PushRandomImage(t, reg, "lib/app", r(1000))
	h.PushImage("lib/app", describe(t, reg, "lib/app", dA, "v1"))
	dX := testenv.PushRandomImage(t, reg, "lib/aaa", r(1100))
	imgX := describe(t, reg, "lib/aaa", dX)
	h.DeleteArtifact(h.PushImage("lib/aaa", imgX))
	dZ := testenv.PushRandomImage(t, reg, "lib/zzz", r(1200))
	h.DeleteArtifact(h.PushImage("lib/zzz", describe(t, reg, "lib/zzz", dZ)))

	g := newGate()
	s.proxy.SetRules(deleteRequests(g.fault("first link batch"))...)
	args := s.gcArgs(t, "--delete-batch-size", "1", "--concurrency", "1")
	out, stderr, code := s.runGated(t, g, func() {
		h.Exec(`ALTER TABLE artifact RENAME TO artifact_gone`)
	}, args...)
	if code != 10 {
		t.Fatalf("gc --delete whose database fails mid-sweep exited %d, want 10: %s\n%s", code, out, stderr)
	}
	if !strings.Contains(stderr, `relation "artifact" does not exist`) {
		t.Errorf("the error does not say what failed:\n%s", stderr)
	}
	inv := s.b.inventory(t)
	if !inv.Blobs.Has(digest.Digest(dX)) || !inv.Blobs.Has(digest.Digest(dZ)) {
		t.Error("a blob was deleted although the run stopped in the link phase")
	}
	linksLeft := 0
	for _, repo := range []string{"lib/aaa", "lib/zzz"} {
		if r := inv.Repositories[repo]; r != nil {
			linksLeft += r.Revisions.Len() + r.Layers.Len()
		}
	}
	if linksLeft == 0 {
		t.Fatal("every link was deleted: the failure came too late to show a run stopped mid-sweep")
	}
	if n := h.Count(`SELECT count(*) FROM blob WHERE status IN ('delete', 'deleting')`); n != 0 {
		t.Errorf("%d blob row(s) left claimed", n)
	}
	pull(t, reg, "lib/app", dA)

	h.Exec(`ALTER TABLE artifact_gone RENAME TO artifact`)
	s.proxy.SetRules()
	if out, code := s.b.regsweep(t, s.gcArgs(t)...); code != 0 {
		t.Fatalf("the re-run exited %d: %s", code, out)
	}
	reg.Restart()
	pull(t, reg, "lib/app", dA)
	for _, d := range []string{dX, dZ} {
		if s.b.inventory(t).Blobs.Has(digest.Digest(d)) {
			t.Errorf("garbage manifest %s is still in storage after the re-run", d)
		}
	}
}
