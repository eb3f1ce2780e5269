package e2e

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/regsweep/regsweep/backend"
	"github.com/regsweep/regsweep/internal/testenv"
)

// copyTree copies a storage tree (cp -a keeps mtimes).
func copyTree(t *testing.T, from string) string {
	t.Helper()
	to := t.TempDir()
	if out, err := exec.Command("cp", "-a", from+"/.", to).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	return to
}

func fsBackendAt(root string) *backendUnderTest {
	return &backendUnderTest{name: "filesystem", fsRoot: root,
		cfg:   backend.Config{Driver: "filesystem", Filesystem: backend.FilesystemConfig{RootDirectory: root}},
		flags: []string{"--fs-root", root}}
}

// checkNoDanglingAndKept asserts the storage invariant that must hold at
// every instant: no link points at a missing blob, and every kept blob is
// there.
func checkNoDanglingAndKept(t *testing.T, b *backendUnderTest, kept map[string]bool) map[string]bool {
	t.Helper()
	inv := b.inventory(t)
	for name, r := range inv.Repositories {
		for d := range r.Layers.All() {
			if !inv.Blobs.Has(d) {
				t.Errorf("%s: dangling layer link %s", name, d)
			}
		}
		for d := range r.Revisions.All() {
			if !inv.Blobs.Has(d) {
				t.Errorf("%s: dangling revision link %s", name, d)
			}
		}
		for tag, tg := range r.Tags {
			if tg.Current != "" && !inv.Blobs.Has(tg.Current) {
				t.Errorf("%s:%s: tag points at a missing manifest", name, tag)
			}
		}
	}
	blobs := blobSet(inv)
	if lost := diff(kept, blobs); len(lost) > 0 {
		t.Fatalf("KEPT BLOBS DELETED: %v", lost)
	}
	return blobs
}

// TestKilledSweepLeavesOnlyGarbage kills `gc --delete` with SIGKILL at 20
// random points of its sweep, on copies of one corpus, then re-runs it:
// every kept image must pull and the storage must end garbage-free.
func TestKilledSweepLeavesOnlyGarbage(t *testing.T) {
	src := filesystemBackend(t)
	c := pushCorpus(t, src.reg)
	src.reg.Stop()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	bin := regsweepBinary(t)
	args := func(root string) []string {
		return []string{"gc", "--delete", "--delete-untagged", "--grace", "0s", "--upload-grace", "0s", "--max-delete-fraction", "0.9",
			"--cache-dir", t.TempDir(), "--fs-root", root, "--concurrency", "1", "--delete-batch-size", "1", "--rate-limit", "150"}
	}
	// sweepStart runs gc and returns once it logs the start of the sweep.
	sweepStart := func(root string) (*exec.Cmd, time.Time) {
		cmd := exec.Command(bin, args(root)...)
		stderr, _ := cmd.StderrPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "msg=sweeping") {
				go func() {
					for sc.Scan() {
					}
				}()
				return cmd, time.Now()
			}
		}
		cmd.Wait()
		t.Fatalf("gc ended without sweeping")
		return nil, time.Time{}
	}
	// Calibrate: how long does a whole sweep take here?
	cal := copyTree(t, src.fsRoot)
	cmd, started := sweepStart(cal)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("calibration run: %v", err)
	}
	sweepTime := time.Since(started)
	t.Logf("a whole sweep takes %s", sweepTime)

	for i := 0; i < 20; i++ {
		root := copyTree(t, src.fsRoot)
		b := fsBackendAt(root)
		cmd, _ := sweepStart(root)
		delay := time.Duration(rng.Int64N(int64(sweepTime)))
		time.Sleep(delay)
		cmd.Process.Kill()
		err := cmd.Wait()
		t.Logf("kill %2d after %s into the sweep: %v", i+1, delay.Round(time.Millisecond), err)
		checkNoDanglingAndKept(t, b, c.keptBlobs)
		// The killed run's lock names a dead process on this host: the
		// re-run takes it over at once.
		if out, code := b.regsweep(t, args(root)[:len(args(root))-6]...); code != 0 {
			t.Fatalf("re-run after kill %d exited %d: %s", i+1, code, out)
		}
		blobs := checkNoDanglingAndKept(t, b, c.keptBlobs)
		if left := diff(blobs, c.keptBlobs); len(left) > 0 {
			t.Errorf("kill %d: garbage left after the re-run: %v", i+1, left)
		}
		if i%5 == 4 { // and through the real registry now and then
			reg := testenv.StartRegistry(t, testenv.RegistryOptions{Version: testenv.RegistryV3, Storage: fmt.Sprintf("filesystem:\n  rootdirectory: %s\n", root)})
			for _, k := range c.kept {
				pull(t, reg, k[0], k[1])
			}
			reg.Stop()
		}
	}
}

// TestCompareWithReferenceGC runs distribution v3's own garbage-collect
// --delete-untagged on a copy of the corpus: regsweep must delete all it
// deletes that is really garbage, and keep what it wrongly deletes.
func TestCompareWithReferenceGC(t *testing.T) {
	src := filesystemBackend(t)
	c := pushCorpus(t, src.reg)
	src.reg.Stop()
	before := blobSet(src.inventory(t))
	garbage := map[string]bool{}
	for _, d := range diff(before, c.keptBlobs) {
		garbage[d] = true
	}

	refRoot := copyTree(t, src.fsRoot)
	ref := testenv.StartRegistry(t, testenv.RegistryOptions{Version: testenv.RegistryV3, Storage: fmt.Sprintf("filesystem:\n  rootdirectory: %s\n", refRoot)})
	ref.GarbageCollect(t, "--delete-untagged")
	ref.Stop()
	refLeft := blobSet(fsBackendAt(refRoot).inventory(t))
	refDeleted := diff(before, refLeft)

	ours := fsBackendAt(copyTree(t, src.fsRoot))
	if out, code := ours.regsweep(t, "gc", "--delete", "--delete-untagged", "--grace", "0s", "--upload-grace", "0s", "--max-delete-fraction", "0.9", "--cache-dir", t.TempDir()); code != 0 {
		t.Fatalf("regsweep exited %d: %s", code, out)
	}
	oursLeft := blobSet(ours.inventory(t))
	oursDeleted := diff(before, oursLeft)

	var wrong []string
	for _, d := range refDeleted {
		if !garbage[d] {
			wrong = append(wrong, d)
			if !oursLeft[d] {
				t.Errorf("regsweep deleted %s, which a kept image needs", d)
			}
		} else if oursLeft[d] {
			t.Errorf("the reference GC deleted garbage blob %s that regsweep kept", d)
		}
	}
	t.Logf("reference GC deleted %d blobs, %d of them needed by kept images (the untagged referrer of a kept image): %v", len(refDeleted), len(wrong), wrong)
	t.Logf("regsweep deleted %d blobs; garbage the reference GC left: %v", len(oursDeleted), diff(toSet(oursDeleted), toSet(refDeleted)))
	refInv := fsBackendAt(refRoot).inventory(t)
	oursInv := ours.inventory(t)
	t.Logf("left behind by the reference GC: %d repositories (regsweep: %d), %d uploads, %d keys in all (regsweep: %d)",
		len(refInv.Repositories), len(oursInv.Repositories), countUploads(refInv.Repositories), refInv.Keys, oursInv.Keys)
	if _, ok := oursInv.Repositories[c.emptiedRepo]; ok {
		t.Errorf("regsweep left the emptied repository")
	}
	_ = os.Getenv
}

func toSet(s []string) map[string]bool {
	m := map[string]bool{}
	for _, v := range s {
		m[v] = true
	}
	return m
}
