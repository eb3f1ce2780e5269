package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/regsweep/regsweep/harbordb/harbortest"
	"github.com/regsweep/regsweep/internal/faultproxy"
	"github.com/regsweep/regsweep/internal/testenv"
)

// Holes found in review of Harbor mode with Harbor online. Each test
// fails on the code it was written against; see the report.

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

// TestReviewHarborRepushFoundInRegistryCache: Harbor's registry caches
// blob descriptors in Redis, per repository. regsweep deletes a
// repository's layer links in the link phase but purges the cache only at
// the end of the run. A client re-pushing the same image into that
// repository after the recheck before the blobs (here: during the blob
// phase) is told by the registry that the blobs are there (HEAD 200 from
// the cache); the registry accepts the manifest on the cache's word too.
// The blobs stay (another repository uses them, and the rows were
// touched), but the repository's layer links are gone and no recheck
// heals them: once the cache is purged, pulls answer BLOB_UNKNOWN. Harbor's
// own GC never deletes layer links.
func TestReviewHarborRepushFoundInRegistryCache(t *testing.T) {
	const cacheDB = 8
	s, redisURL := newHarborS3RedisSetup(t, cacheDB)
	reg, h := s.b.reg, s.h
	r := func(n int) []byte { return testenv.RandomBytes(t, n) }
	h.Project("lib")
	layer := r(1500)
	// The same image in two repositories: live in lib/app, deleted in
	// lib/old (an image is a function of its layers).
	dA := testenv.PushRandomImage(t, reg, "lib/app", layer)
	img := describe(t, reg, "lib/app", dA, "v1")
	h.PushImage("lib/app", img)
	if dX := testenv.PushRandomImage(t, reg, "lib/old", layer); dX != dA {
		t.Fatalf("lib/old got %s, want %s", dX, dA)
	}
	h.DeleteArtifact(h.PushImage("lib/old", harbortest.Image{Manifest: img.Manifest, Config: img.Config, Layers: img.Layers}))
	// A blob Harbor has no row for: the run has a blob to delete.
	testenv.UploadBlob(t, reg, "lib/app", r(700))

	out, stderr, code := s.runWhen(t, blobPhase, deleteRequests, func() {
		// Re-push lib/old through Harbor: each HEAD touches the row
		// (status none), then the registry answers.
		for _, b := range img.Blobs() {
			if b.Digest != img.Manifest.Digest {
				h.Touch(b.Digest)
			}
		}
		if again := testenv.PushRandomImage(t, reg, "lib/old", layer); again != dA {
			t.Fatalf("the re-push made %s, not %s", again, dA)
		}
		h.PushImage("lib/old", harbortest.Image{Manifest: img.Manifest, Config: img.Config, Layers: img.Layers})
		pull(t, reg, "lib/old", dA) // accepted and pulling while the cache answers
	}, s.gcArgs(t, "--harbor-redis", redisURL, "--delete-batch-size", "1", "--concurrency", "1")...)
	if code != 0 {
		t.Fatalf("gc --delete exited %d: %s\n%s", code, out, stderr)
	}
	reg.Restart()
	pull(t, reg, "lib/app", dA)
	pull(t, reg, "lib/old", dA)
}
