package e2e

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/regsweep/regsweep/harbordb/harbortest"
	"github.com/regsweep/regsweep/internal/faultproxy"
	"github.com/regsweep/regsweep/internal/testenv"
)

// Harbor mode with Harbor online: pushes land at chosen instants of a
// deleting run. The registry (v2.8, as Harbor ships) writes to MinIO
// directly; regsweep reaches MinIO through a proxy whose gate holds one of
// its requests while the test pushes, then lets it through.

// harborS3Setup is a registry on MinIO, a Harbor database, and regsweep's
// way to the store through a gated proxy.
type harborS3Setup struct {
	b     *backendUnderTest // regsweep's flags point at the proxy
	h     *harbortest.Harbor
	proxy *faultproxy.Server
}

func newHarborS3Setup(t *testing.T) *harborS3Setup {
	t.Helper()
	b := minioBackend(t)
	b.reg.Stop()
	b.reg = testenv.StartRegistry(t, testenv.RegistryOptions{Version: testenv.RegistryV28, Storage: b.registry})
	p, err := faultproxy.New(b.cfg.S3.RegionEndpoint, 1)
	if err != nil {
		t.Fatal(err)
	}
	proxy := p.Start()
	t.Cleanup(proxy.Close)
	routed := *b
	routed.flags = append([]string(nil), b.flags...)
	for i, f := range routed.flags {
		if f == "--s3-endpoint" {
			routed.flags[i+1] = proxy.URL
		}
	}
	return &harborS3Setup{b: &routed, h: harbortest.Create(t, testenv.Postgres(t), harbortest.Latest), proxy: proxy}
}

// gate holds the first request its fault is given, until the test has
// landed its push.
type gate struct {
	once            sync.Once
	reached, resume chan struct{}
}

func newGate() *gate { return &gate{reached: make(chan struct{}), resume: make(chan struct{})} }

func (g *gate) fault(name string) faultproxy.Fault {
	return faultproxy.Before(name, func() {
		g.once.Do(func() {
			close(g.reached)
			<-g.resume
		})
	})
}

// runGated runs regsweep with args; when the gate is reached, land runs
// (in the test's goroutine) and the held request goes on. It fails the test
// if the run ends without reaching the gate.
func (s *harborS3Setup) runGated(t *testing.T, g *gate, land func(), args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(regsweepBinary(t), append(args, s.b.flags...)...)
	cmd.Env = append(os.Environ(), s.b.env...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case <-g.reached:
		land()
		close(g.resume)
		err = <-done
	case err = <-done:
		t.Fatalf("regsweep ended before the gate was reached (%v):\n%s", err, errOut.String())
	}
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

// gcArgs is a deleting Harbor-mode run with Harbor's window at 0, as an
// operator mirroring GC_TIME_WINDOW_HOURS=0 sets it.
func (s *harborS3Setup) gcArgs(t *testing.T, extra ...string) []string {
	return append([]string{"gc", "--delete", "--grace", "0s", "--upload-grace", "0s", "--max-delete-fraction", "1",
		"--cache-dir", t.TempDir(), "--format", "json", "--harbor-db", s.h.DSN}, extra...)
}

// repositoriesListing matches regsweep's listings of the repository tree.
var repositoriesListing = regexp.MustCompile(`prefix=[^&]*docker/registry/v2/repositories/`)

// TestHarborPushBetweenSnapshotAndWalk is issue 16's first hole: an
// artifact pushed after the database snapshot, before the walk reaches its
// repository, is in storage and in the database, and must pull afterwards.
func TestHarborPushBetweenSnapshotAndWalk(t *testing.T) {
	s := newHarborS3Setup(t)
	reg, h := s.b.reg, s.h
	r := func(n int) []byte { return testenv.RandomBytes(t, n) }
	h.Project("lib")
	dA := testenv.PushRandomImage(t, reg, "lib/app", r(1000))
	h.PushImage("lib/app", describe(t, reg, "lib/app", dA, "v1"))
	dG := testenv.PushRandomImage(t, reg, "lib/old", r(1100))
	h.DeleteArtifact(h.PushImage("lib/old", describe(t, reg, "lib/old", dG)))

	g := newGate()
	s.proxy.SetRules(faultproxy.Rule{Name: "walk", Method: "GET", Query: repositoriesListing, Times: 1, Fault: g.fault("first listing of the repository tree")})
	var dN string
	out, stderr, code := s.runGated(t, g, func() {
		dN = testenv.PushRandomImage(t, reg, "lib/new", r(1200))
		h.PushImage("lib/new", describe(t, reg, "lib/new", dN, "v1"))
	}, s.gcArgs(t)...)
	if code != 0 {
		t.Fatalf("gc --delete exited %d: %s\n%s", code, out, stderr)
	}
	reg.Restart()
	pull(t, reg, "lib/new", dN)
	pull(t, reg, "lib/app", dA)
	if code, _, _ := testenv.Get(t, reg, "/v2/lib/old/manifests/"+dG, acceptAll); code != 404 {
		t.Errorf("the deleted artifact's manifest still answers %d: the run collected nothing", code)
	}
}

// TestHarborRepushDuringLinkPhase is issue 15's fourth hole: an image
// re-pushed after the recheck, while the run deletes links, finds its
// layer links (HEAD 200) and Harbor touches its rows; its links must not
// be deleted. One link per batch and one batch at a time, so the re-push
// lands between the first batch and the next.
func TestHarborRepushDuringLinkPhase(t *testing.T) {
	s := newHarborS3Setup(t)
	reg, h := s.b.reg, s.h
	r := func(n int) []byte { return testenv.RandomBytes(t, n) }
	h.Project("lib")
	dA := testenv.PushRandomImage(t, reg, "lib/app", r(1000))
	h.PushImage("lib/app", describe(t, reg, "lib/app", dA, "v1"))
	// Two deleted artifacts: lib/aaa's links sort first, lib/zzz's image
	// comes back.
	dX := testenv.PushRandomImage(t, reg, "lib/aaa", r(1100))
	h.DeleteArtifact(h.PushImage("lib/aaa", describe(t, reg, "lib/aaa", dX)))
	layerD := r(1300)
	dD := testenv.PushRandomImage(t, reg, "lib/zzz", layerD)
	imgD := describe(t, reg, "lib/zzz", dD)
	h.DeleteArtifact(h.PushImage("lib/zzz", imgD))

	g := newGate()
	// The sweep's first delete: S3's multi-object delete, or a DELETE of
	// one key under the registry's tree (not the lock's).
	s.proxy.SetRules(
		faultproxy.Rule{Name: "first delete", Method: "POST", Query: regexp.MustCompile(`(^|&)delete(=|&|$)`), Times: 1, Fault: g.fault("first link batch")},
		faultproxy.Rule{Name: "first delete", Method: "DELETE", Path: regexp.MustCompile(`docker/registry/v2/`), Times: 1, Fault: g.fault("first link batch")},
	)
	out, stderr, code := s.runGated(t, g, func() {
		// The client finds every blob (HEAD 200).
		repushThroughHarbor(t, reg, h, "lib/zzz", layerD, imgD)
	}, s.gcArgs(t, "--delete-batch-size", "1", "--concurrency", "1")...)
	if code != 0 {
		t.Fatalf("gc --delete exited %d: %s\n%s", code, out, stderr)
	}
	reg.Restart()
	pull(t, reg, "lib/zzz", dD)
	pull(t, reg, "lib/app", dA)
	if code, _, _ := testenv.Get(t, reg, "/v2/lib/aaa/manifests/"+dX, acceptAll); code != 404 {
		t.Errorf("lib/aaa's deleted artifact still answers %d: the first batch was not deleted", code)
	}
	for _, b := range imgD.Blobs() {
		if row := h.Blob(b.Digest); !row.Exists || row.Status != "none" {
			t.Errorf("blob row %s of the re-pushed image: %+v", b.Digest, row)
		}
	}
}
