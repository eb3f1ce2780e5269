package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/ncw/swift/v2"
	"golang.org/x/sync/errgroup"

	"github.com/regsweep/regsweep/backend"
	"github.com/regsweep/regsweep/internal/testenv"
	"github.com/regsweep/regsweep/lock"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/sweep"
	"github.com/regsweep/regsweep/walker"
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
	return &backendUnderTest{name: "filesystem", fsRoot: root, registry: fmt.Sprintf("filesystem:\n  rootdirectory: %s\n", root),
		cfg:   backend.Config{Driver: "filesystem", Filesystem: backend.FilesystemConfig{RootDirectory: root}},
		flags: []string{"--fs-root", root}}
}

// checkNoDanglingAndKept asserts the storage invariant that must hold at
// every instant: no link points at a missing blob, and every kept blob is
// there.
func checkNoDanglingAndKept(t *testing.T, b *backendUnderTest, kept map[string]bool) map[string]bool {
	t.Helper()
	return checkInventory(t, b.inventory(t), kept)
}

func checkInventory(t *testing.T, inv *walker.Inventory, kept map[string]bool) map[string]bool {
	t.Helper()
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

// crashTarget is one backend the crash test kills gc on. Every kill runs
// on a fresh copy of one pushed corpus.
type crashTarget struct {
	kills int
	// rateLimit is the killed runs' --rate-limit: it stretches walk, mark
	// and every sweep phase so that random kill times reach each of them.
	rateLimit string
	// setup starts a registry on fresh storage (the corpus is pushed
	// through it).
	setup func(t *testing.T) *backendUnderTest
	// clone copies src's storage to fresh storage (no registry on it).
	clone func(t *testing.T, src *backendUnderTest) *backendUnderTest
	// heldKills of the kills (object stores) come while the answer to a
	// delete request is held back by a proxy: the store has deleted the
	// batch, the run has not heard so. store is the store's URL and
	// through returns b's flags with the store's URL replaced by the
	// proxy's.
	heldKills int
	store     string
	through   func(b *backendUnderTest, proxy string) []string
}

// TestKilledGCFilesystem, TestKilledGCS3 and TestKilledGCSwift kill
// `regsweep gc --delete` with SIGKILL at random points of its walk, mark
// and every sweep phase (batches of 3 keys, so kills land between and,
// where the store is slow enough, inside delete batches), then re-run it:
// after each kill no link dangles, the re-run finishes, the garbage is
// gone and every kept image pulls through a restarted registry. The first
// kill on each backend also checks how the killed run's stale lock is
// taken over (crash_lock_test.go).
func TestKilledGCFilesystem(t *testing.T) {
	runKilledGC(t, crashTarget{kills: 12, rateLimit: "100",
		setup: filesystemBackend,
		clone: func(t *testing.T, src *backendUnderTest) *backendUnderTest {
			return fsBackendAt(copyTree(t, src.fsRoot))
		}})
}

func TestKilledGCS3(t *testing.T) {
	m := testenv.MinIO(t)
	runKilledGC(t, crashTarget{kills: 10, rateLimit: "25",
		setup:     minioBackend,
		clone:     func(t *testing.T, src *backendUnderTest) *backendUnderTest { return cloneS3(t, m, src) },
		heldKills: 3, store: m.URL(),
		through: func(b *backendUnderTest, proxy string) []string { return replaceFlag(b.flags, "--s3-endpoint", proxy) }})
}

func TestKilledGCSwift(t *testing.T) {
	s := testenv.Swift(t)
	runKilledGC(t, crashTarget{kills: 8, rateLimit: "25",
		setup:     swiftBackend,
		clone:     func(t *testing.T, src *backendUnderTest) *backendUnderTest { return cloneSwift(t, s, src) },
		heldKills: 2, store: strings.TrimSuffix(s.AuthURL, "/auth/v1.0"),
		through: func(b *backendUnderTest, proxy string) []string {
			return replaceFlag(b.flags, "--swift-auth-url", proxy+"/auth/v1.0")
		}})
}

// crashBatchSize is the killed runs' --delete-batch-size.
const crashBatchSize = 3

func killedGCArgs(cacheDir, rateLimit string, extra ...string) []string {
	return append([]string{"gc", "--delete", "--delete-untagged", "--grace", "0s", "--upload-grace", "0s", "--max-delete-fraction", "0.9",
		"--cache-dir", cacheDir, "--log-format", "json", "--concurrency", "1", "--delete-batch-size", fmt.Sprint(crashBatchSize),
		"--rate-limit", rateLimit}, extra...)
}

// rerunGCArgs is the run after a kill, at full speed and with the default
// --lock-timeout.
func rerunGCArgs(cacheDir string, extra ...string) []string {
	return append([]string{"gc", "--delete", "--delete-untagged", "--grace", "0s", "--upload-grace", "0s", "--max-delete-fraction", "0.9",
		"--cache-dir", cacheDir}, extra...)
}

func runKilledGC(t *testing.T, target crashTarget) {
	began := time.Now()
	src := target.setup(t)
	c := pushCorpus(t, src.reg)
	src.reg.Stop()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d; corpus pushed in %s", seed, time.Since(began).Round(time.Millisecond))
	rng := rand.New(rand.NewPCG(seed, 6))

	// An unkilled run measures how long each stage lasts (kill times are
	// drawn from these) and must itself end garbage-free.
	cal := target.clone(t, src)
	plan := dryRunPlan(t, cal)
	calRun := cal
	var gate *deleteGate
	if target.heldKills > 0 {
		// Through a proxy that holds nothing: it counts the delete requests.
		gate = startDeleteGate(t, target.store, 0)
		calRun = target.routed(cal, gate)
	}
	p := startGC(t, calRun, killedGCArgs(t.TempDir(), target.rateLimit))
	stages, err := p.wait()
	if err != nil {
		t.Fatalf("unkilled run: %v\n%s", err, p.log.String())
	}
	total := p.ended.Sub(p.start)
	var desc []string
	for i, s := range stages {
		desc = append(desc, fmt.Sprintf("%s %s", s.label, stageLength(stages, i, total).Round(time.Millisecond)))
	}
	deletes := 0
	if gate != nil {
		deletes = gate.count()
		desc = append(desc, fmt.Sprintf("%d delete requests", deletes))
	}
	t.Logf("unkilled run: %s in all; stages: %s; plan: %s", total.Round(time.Millisecond), strings.Join(desc, ", "), plan.describe())
	checkGarbageGone(t, cal, c)

	points := killPoints(t, rng, stages, total, target.kills-target.heldKills)
	for range target.heldKills {
		if deletes == 0 {
			t.Fatalf("the unkilled run sent no delete request through the proxy")
		}
		points = append(points, killPoint{holdDelete: 1 + rng.IntN(deletes), deletes: deletes})
	}
	var mu sync.Mutex
	landed := map[string]int{}
	cut := 0
	// Kills run two at a time (go test's -parallel): most of a kill is
	// waiting on the lock's settle time and the rate limit.
	t.Run("kills", func(t *testing.T) {
		for k, pt := range points {
			t.Run(fmt.Sprintf("kill%02d", k+1), func(t *testing.T) {
				t.Parallel()
				where, batchCut := killOnce(t, target, src, c, plan, stages, k, pt)
				mu.Lock()
				defer mu.Unlock()
				landed[where]++
				if batchCut {
					cut++
				}
			})
		}
	})
	var where []string
	for l, n := range landed {
		where = append(where, fmt.Sprintf("%s: %d", l, n))
	}
	sort.Strings(where)
	t.Logf("%d kills landed in: %s; %d cut a delete batch; after each, all %d kept references pulled and verified; %s in all",
		target.kills, strings.Join(where, ", "), cut, len(c.kept), time.Since(began).Round(time.Millisecond))
}

// killPoint is where a kill is aimed: delay after a stage starts, or,
// when holdDelete is set, while the answer to that delete request (of
// deletes) is held.
type killPoint struct {
	stage      int
	delay      time.Duration
	holdDelete int
	deletes    int
}

// killPoints spreads kills over the stages an unkilled run went through,
// at a random time within each: the first kill is aimed at the mark (so
// that its lock is there for the stale-lock checks), the second at the
// walk, then each sweep phase in a random order, then every stage in a
// random order, again and again.
func killPoints(t *testing.T, rng *rand.Rand, stages []gcStage, total time.Duration, n int) []killPoint {
	t.Helper()
	var aims, sweeps []int
	for i, s := range stages {
		if stageLength(stages, i, total) >= 2*time.Millisecond {
			aims = append(aims, i)
			if strings.HasPrefix(s.label, "sweep") {
				sweeps = append(sweeps, i)
			}
		}
	}
	at := func(i int) killPoint {
		return killPoint{stage: i, delay: time.Duration(rng.Int64N(int64(stageLength(stages, i, total))))}
	}
	var points []killPoint
	for _, label := range []string{"mark+plan", "walk"} {
		i := slices.IndexFunc(stages, func(s gcStage) bool { return s.label == label })
		if i < 0 {
			t.Fatalf("the unkilled run logged no %s stage", label)
		}
		points = append(points, at(i))
	}
	for _, j := range rng.Perm(len(sweeps)) {
		if len(points) < n {
			points = append(points, at(sweeps[j]))
		}
	}
	for len(points) < n {
		for _, j := range rng.Perm(len(aims)) {
			if len(points) < n {
				points = append(points, at(aims[j]))
			}
		}
	}
	return points
}

// killOnce kills a gc on a fresh copy of src at pt, checks what the kill
// left and the lock, re-runs gc and checks the result. It returns where
// the kill landed and whether it cut a delete batch.
func killOnce(t *testing.T, target crashTarget, src *backendUnderTest, c *corpus, plan *crashPlan, stages []gcStage, k int, pt killPoint) (string, bool) {
	began := time.Now()
	b := target.clone(t, src)
	cloned := time.Now()
	cache := t.TempDir()
	// The second kill's run has a short lock timeout: its lock is then
	// waited out instead of rewritten as old.
	waitOut := k == 1 && b.name == "filesystem"
	var extra []string
	if waitOut {
		extra = []string{"--lock-timeout", shortLockTimeout.String()}
	}
	var p *gcProcess
	var aimed string
	var finished bool
	if pt.holdDelete > 0 {
		gate := startDeleteGate(t, target.store, pt.holdDelete)
		p = startGC(t, target.routed(b, gate), killedGCArgs(cache, target.rateLimit, extra...))
		aimed = fmt.Sprintf("aimed at delete request %d of %d, its answer held", pt.holdDelete, pt.deletes)
		finished = p.killWhenHeld(gate.held)
	} else {
		p = startGC(t, b, killedGCArgs(cache, target.rateLimit, extra...))
		aimed = fmt.Sprintf("aimed at %s +%s", stages[pt.stage].label, pt.delay.Round(time.Millisecond))
		finished = p.killAfter(pt.stage, pt.delay)
	}
	last := "finished before the kill"
	var gone goneState
	if finished {
		t.Logf("%s: the run finished before the kill", aimed)
	} else {
		var since time.Duration
		last, since = p.landing()
		gone = plan.gone(t, b)
		if pt.holdDelete > 0 {
			last += ", inside a delete request (done by the store, unanswered)"
		} else {
			last = gone.refine(last)
		}
		t.Logf("%s: landed in %s +%s; gone: %s", aimed, last, since.Round(time.Millisecond), gone.describe())
		gone.checkOrder(t)
		checkNoDanglingAndKept(t, b, c.keptBlobs)
	}

	held, err := readLock(t, b)
	switch {
	case err == nil && finished:
		t.Errorf("a finished run left its lock: %+v", held)
	case err == nil:
		checkKilledRunsLock(t, held, p.cmd.Process.Pid)
	case !storage.IsNotFound(err):
		t.Fatalf("reading the killed run's lock: %v", err)
	case !finished && !gone.complete():
		t.Fatalf("the killed run left no lock")
	default:
		// The run had released its lock (the kill came after its sweep):
		// the lock checks get one written as that run wrote it.
		if !finished {
			last = "after the sweep, lock released"
		}
		if k == 0 || waitOut {
			host, _ := os.Hostname()
			timeout := 30 * time.Minute
			if waitOut {
				timeout = shortLockTimeout
			}
			now := time.Now().UTC()
			held = lock.Info{Token: "written-by-the-test", Hostname: host, PID: p.cmd.Process.Pid, Command: "regsweep gc", StartedAt: now, RefreshedAt: now, Timeout: timeout}
			writeLock(t, b, held)
			t.Logf("the run released its lock before the kill: the lock checks use one naming it")
		}
	}
	switch {
	case k == 0:
		checkForeignLockRefused(t, b, held, cache)
	case waitOut:
		checkForeignLockWaitedOut(t, b, held, cache)
	}
	// A lock naming a dead process on this host is taken over at once: the
	// re-run has the default 30m --lock-timeout.
	rerun := time.Now()
	if _, stderr, code := b.run(t, rerunGCArgs(cache)...); code != 0 {
		t.Fatalf("re-run after the kill exited %d: %s", code, stderr)
	}
	checked := time.Now()
	checkGarbageGone(t, b, c)
	ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	t.Logf("this kill took %s: copy %s, killed run and its checks %s, re-run %s, final checks %s",
		ms(time.Since(began)), ms(cloned.Sub(began)), ms(rerun.Sub(cloned)), ms(checked.Sub(rerun)), ms(time.Since(checked)))
	return last, gone.batchCut()
}

// checkGarbageGone asserts what a finished gc leaves: the kept blobs and
// nothing else, no dangling link, no upload, no multipart upload, no
// orphan Swift segment, no lock, the emptied repository gone, and every
// kept image pulling and verifying through a freshly started registry.
func checkGarbageGone(t *testing.T, b *backendUnderTest, c *corpus) {
	t.Helper()
	inv := b.inventory(t)
	blobs := checkInventory(t, inv, c.keptBlobs)
	if left := diff(blobs, c.keptBlobs); len(left) > 0 {
		t.Errorf("garbage blobs left: %v", left)
	}
	if _, ok := inv.Repositories[c.emptiedRepo]; ok {
		t.Errorf("emptied repository %s still has keys", c.emptiedRepo)
	}
	if n := countUploads(inv.Repositories); n > 0 {
		t.Errorf("%d uploads left", n)
	}
	if len(inv.Multipart) > 0 {
		t.Errorf("multipart uploads left: %v", inv.Multipart)
	}
	owned := map[string]bool{}
	for _, prefix := range inv.BlobSegments.All() {
		owned[prefix] = true
	}
	for prefix := range inv.Segments {
		if !owned[prefix] {
			t.Errorf("orphan Swift segments left under %s", prefix)
		}
	}
	if _, err := readLock(t, b); err == nil {
		t.Errorf("the finished run left its lock")
	}
	version := testenv.RegistryV3
	if b.name == "swift" {
		version = testenv.RegistryV28
	}
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{Version: version, Storage: b.registry})
	for _, k := range c.kept {
		pull(t, reg, k[0], k[1])
	}
	reg.Stop()
}

// ----------------------------------------------------------- stages ----

// gcStage is a log line marking where a gc run is.
type gcStage struct {
	label string
	at    time.Duration // since the process started (when the test read it)
}

// stageOf names the stage a JSON log line starts, if it starts one.
func stageOf(line string) (string, bool) {
	var rec struct {
		Msg   string `json:"msg"`
		Phase int    `json:"phase"`
	}
	if json.Unmarshal([]byte(line), &rec) != nil {
		return "", false
	}
	switch rec.Msg {
	case "walking storage":
		return "walk", true
	case "marking":
		return "mark+plan", true
	case "rechecked the plan against storage":
		return "rechecked", true
	case "sweeping":
		return fmt.Sprintf("sweep phase %d (%s)", rec.Phase, phaseNames[rec.Phase]), true
	}
	return "", false
}

var phaseNames = map[int]string{1: "tag and revision links", 2: "layer links", 3: "blobs", 4: "segments", 5: "uploads", 6: "repositories"}

// stageLength is how long stage i lasted: until the next one or the end.
func stageLength(stages []gcStage, i int, total time.Duration) time.Duration {
	if i+1 < len(stages) {
		return stages[i+1].at - stages[i].at
	}
	return total - stages[i].at
}

// gcProcess is a running `regsweep gc` whose stderr the test follows.
type gcProcess struct {
	cmd    *exec.Cmd
	start  time.Time
	ended  time.Time
	stages chan gcStage // closed when stderr ends
	seen   []gcStage
	killed time.Duration
	log    bytes.Buffer // all of stderr, read once stages is closed
}

func startGC(t *testing.T, b *backendUnderTest, args []string) *gcProcess {
	t.Helper()
	cmd := exec.Command(regsweepBinary(t), append(args, b.flags...)...)
	cmd.Env = append(os.Environ(), b.env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &gcProcess{cmd: cmd, stages: make(chan gcStage, 64)}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.start = time.Now()
	go func() {
		defer close(p.stages)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.log.Write(append(sc.Bytes(), '\n'))
			if label, ok := stageOf(sc.Text()); ok {
				p.stages <- gcStage{label, time.Since(p.start)}
			}
		}
	}()
	return p
}

// wait reads stderr to its end and waits for the process.
func (p *gcProcess) wait() ([]gcStage, error) {
	for s := range p.stages {
		p.seen = append(p.seen, s)
	}
	err := p.cmd.Wait()
	p.ended = time.Now()
	return p.seen, err
}

// killAfter sends SIGKILL delay after the process starts stage number
// stage, and reports whether it had finished before that.
func (p *gcProcess) killAfter(stage int, delay time.Duration) bool {
	for len(p.seen) <= stage {
		s, ok := <-p.stages
		if !ok {
			break
		}
		p.seen = append(p.seen, s)
	}
	if len(p.seen) > stage {
		time.Sleep(delay)
		p.killed = time.Since(p.start)
		p.cmd.Process.Signal(syscall.SIGKILL)
	}
	_, err := p.wait()
	return err == nil
}

// killWhenHeld sends SIGKILL once held is closed, and reports whether
// the process had finished before that.
func (p *gcProcess) killWhenHeld(held <-chan struct{}) bool {
	for {
		select {
		case s, ok := <-p.stages:
			if ok {
				p.seen = append(p.seen, s)
				continue
			}
		case <-held:
			p.killed = time.Since(p.start)
			p.cmd.Process.Signal(syscall.SIGKILL)
		}
		_, err := p.wait()
		return err == nil
	}
}

// landing is the last stage the killed process reached and how long
// before the kill it started.
func (p *gcProcess) landing() (string, time.Duration) {
	if len(p.seen) == 0 {
		return "lock", p.killed
	}
	last := p.seen[len(p.seen)-1]
	return last.label, max(p.killed-last.at, 0)
}

// -------------------------------------------------------------- plan ----

// crashPlan is the sweep's plain deletions by phase, in the order the
// executor sends them (a plan sorts by phase, then key).
type crashPlan struct {
	phases map[int][]string
}

// crashPhase is the executor's order for the kinds deleted by key
// (multipart uploads and repositories are not).
var crashPhase = map[string]int{
	sweep.KindTagIndexLink: 1, sweep.KindTagCurrentLink: 1, sweep.KindRevisionLink: 1, sweep.KindSignatureLink: 1,
	sweep.KindLayerLink: 2, sweep.KindBlob: 3, sweep.KindSegment: segmentPhase, sweep.KindUploadFile: 5,
}

// segmentPhase deletes Swift segments: their keys are not the driver's
// object keys, so the test finds them by walking.
const segmentPhase = 4

// dryRunPlan asks for the plan a gc would execute on b.
func dryRunPlan(t *testing.T, b *backendUnderTest) *crashPlan {
	t.Helper()
	file := t.TempDir() + "/plan.json"
	if _, stderr, code := b.run(t, "gc", "--delete-untagged", "--grace", "0s", "--upload-grace", "0s", "--max-delete-fraction", "0.9",
		"--cache-dir", t.TempDir(), "--plan-out", file); code != 0 {
		t.Fatalf("dry run exited %d: %s", code, stderr)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	plan, err := sweep.ReadPlan(f)
	if err != nil {
		t.Fatal(err)
	}
	cp := &crashPlan{phases: map[int][]string{}}
	for _, it := range plan.Items {
		if ph, ok := crashPhase[it.Kind]; ok {
			cp.phases[ph] = append(cp.phases[ph], it.Key)
		}
	}
	return cp
}

func (cp *crashPlan) describe() string {
	var parts []string
	for _, ph := range sortedPhases(cp.phases) {
		parts = append(parts, fmt.Sprintf("phase %d: %d keys", ph, len(cp.phases[ph])))
	}
	return strings.Join(parts, ", ")
}

func sortedPhases(m map[int][]string) []int {
	var out []int
	for ph := range m {
		out = append(out, ph)
	}
	sort.Ints(out)
	return out
}

// goneState is which planned keys are gone after a kill.
type goneState struct {
	phases map[int][]string
	gone   map[int][]bool
}

func (cp *crashPlan) gone(t *testing.T, b *backendUnderTest) goneState {
	t.Helper()
	d, err := backend.Open(context.Background(), b.cfg, backend.OpenOptions{Concurrency: 8, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	g := goneState{phases: cp.phases, gone: map[int][]bool{}}
	segments := map[string]bool{}
	if len(cp.phases[segmentPhase]) > 0 {
		for _, segs := range b.inventory(t).Segments {
			for _, s := range segs {
				segments[s.Key] = true
			}
		}
	}
	for ph, keys := range cp.phases {
		g.gone[ph] = make([]bool, len(keys))
		for i, k := range keys {
			if ph == segmentPhase {
				g.gone[ph][i] = !segments[k]
				continue
			}
			_, err := d.Stat(context.Background(), k)
			switch {
			case err == nil:
			case storage.IsNotFound(err):
				g.gone[ph][i] = true
			default:
				t.Fatalf("stat %s: %v", k, err)
			}
		}
	}
	return g
}

func (g goneState) count(ph int) int {
	n := 0
	for _, x := range g.gone[ph] {
		if x {
			n++
		}
	}
	return n
}

// batchCut reports whether a delete batch was left half done: with one
// batch in flight at a time, some phase's gone count is then not a
// multiple of the batch size (nor the whole phase).
func (g goneState) batchCut() bool {
	for ph, keys := range g.phases {
		if n := g.count(ph); n%crashBatchSize != 0 && n != len(keys) {
			return true
		}
	}
	return false
}

// complete reports whether every planned key is gone.
func (g goneState) complete() bool {
	for ph, keys := range g.phases {
		if g.count(ph) != len(keys) {
			return false
		}
	}
	return true
}

// refine names where in a sweep stage a kill landed: a stage whose keys
// are all gone, with nothing of a later phase gone, was past its deletions
// (after phase 2 that is the re-listing before blobs).
func (g goneState) refine(stage string) string {
	var ph int
	if _, err := fmt.Sscanf(stage, "sweep phase %d", &ph); err != nil || len(g.phases[ph]) == 0 || g.count(ph) != len(g.phases[ph]) {
		return stage
	}
	for later := range g.phases {
		if later > ph && g.count(later) > 0 {
			return stage
		}
	}
	if ph == 2 {
		return "recheck before blobs (after phase 2)"
	}
	return fmt.Sprintf("end of sweep phase %d", ph)
}

func (g goneState) describe() string {
	var parts []string
	for _, ph := range sortedPhases(g.phases) {
		s := fmt.Sprintf("phase %d %d/%d", ph, g.count(ph), len(g.phases[ph]))
		if n := g.count(ph); n%crashBatchSize != 0 && n != len(g.phases[ph]) {
			s += " (inside a batch)"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

// checkOrder asserts the documented deletion order: no key of a phase is
// gone while a key of an earlier phase is still there.
func (g goneState) checkOrder(t *testing.T) {
	t.Helper()
	phases := sortedPhases(g.phases)
	for i, early := range phases {
		if g.count(early) == len(g.phases[early]) {
			continue
		}
		for _, late := range phases[i+1:] {
			if n := g.count(late); n > 0 {
				t.Errorf("phase %d started (%d keys gone) before phase %d ended (%d of %d gone)", late, n, early, g.count(early), len(g.phases[early]))
			}
		}
	}
}

// -------------------------------------------------------------- gate ----

// routed is b with the killed run's requests going through gate.
func (target crashTarget) routed(b *backendUnderTest, gate *deleteGate) *backendUnderTest {
	r := *b
	r.flags = target.through(b, gate.url)
	return &r
}

// deleteGate is a reverse proxy in front of MinIO or Swift that counts the
// sweep's delete requests (S3 DeleteObjects, Swift bulk deletes, single
// DELETEs; not the lock's) and holds the answer to the hold-th one: the
// store has carried out the deletions, the client has not heard back, and
// the test kills it right then.
type deleteGate struct {
	url  string
	hold int
	held chan struct{} // closed once that answer is held

	mu      sync.Mutex
	deletes int
}

type holdKey struct{}

func startDeleteGate(t *testing.T, store string, hold int) *deleteGate {
	t.Helper()
	target, err := url.Parse(store)
	if err != nil {
		t.Fatal(err)
	}
	g := &deleteGate{hold: hold, held: make(chan struct{})}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host // S3 signs the Host
		},
		ModifyResponse: func(resp *http.Response) error {
			// Swift's auth names the storage URL: keep the client on the gate.
			if su := resp.Header.Get("X-Storage-Url"); su != "" {
				resp.Header.Set("X-Storage-Url", strings.Replace(su, target.Scheme+"://"+target.Host, g.url, 1))
			}
			ctx := resp.Request.Context()
			if ctx.Value(holdKey{}) == nil {
				return nil
			}
			close(g.held)
			<-ctx.Done() // the client is killed
			return ctx.Err()
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			http.Error(w, "delete gate: "+err.Error(), http.StatusBadGateway)
		},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n := g.countDelete(r); n > 0 && n == g.hold {
			r = r.WithContext(context.WithValue(r.Context(), holdKey{}, true))
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	g.url = srv.URL
	return g
}

// countDelete numbers r if it is one of the sweep's delete requests.
func (g *deleteGate) countDelete(r *http.Request) int {
	q := r.URL.Query()
	_, multi := q["delete"]
	_, bulk := q["bulk-delete"]
	if !multi && !bulk && r.Method != http.MethodDelete {
		return 0
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return 0
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if strings.Contains(r.URL.Path, "lock.json") || bytes.Contains(body, []byte("lock.json")) {
		return 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.deletes++
	return g.deletes
}

func (g *deleteGate) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.deletes
}

// ------------------------------------------------------------ clones ----

// cloneS3 copies src's bucket server-side to a new bucket and opens a
// multipart upload at each key src has one (copies do not carry them).
func cloneS3(t *testing.T, m testenv.MinIOServer, src *backendUnderTest) *backendUnderTest {
	t.Helper()
	from, to := src.cfg.S3.Bucket, testenv.NewBucket(t, m)
	c := m.Client(t)
	ctx := context.Background()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for obj := range c.ListObjects(ctx, from, minio.ListObjectsOptions{Recursive: true}) {
		if obj.Err != nil {
			t.Fatalf("listing %s: %v", from, obj.Err)
		}
		g.Go(func() error {
			_, err := c.CopyObject(gctx, minio.CopyDestOptions{Bucket: to, Object: obj.Key}, minio.CopySrcOptions{Bucket: from, Object: obj.Key})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("copying bucket %s: %v", from, err)
	}
	core := minio.Core{Client: c}
	for u := range c.ListIncompleteUploads(ctx, from, "", true) {
		if u.Err != nil {
			t.Fatalf("listing multipart uploads of %s: %v", from, u.Err)
		}
		if _, err := core.NewMultipartUpload(ctx, to, u.Key, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	b := *src
	b.reg = nil
	b.cfg.S3.Bucket = to
	b.registry = strings.Replace(src.registry, "bucket: "+from+"\n", "bucket: "+to+"\n", 1)
	b.flags = replaceFlag(src.flags, "--s3-bucket", to)
	return &b
}

// cloneSwift copies src's container to a new one: plain objects
// server-side, and each large-object manifest (a 0-byte object whose
// X-Object-Manifest names its container) written anew naming the copy.
func cloneSwift(t *testing.T, s testenv.SwiftServer, src *backendUnderTest) *backendUnderTest {
	t.Helper()
	from, to := src.cfg.Swift.Container, testenv.NewContainer(t, s)
	c := s.Connection(t)
	ctx := context.Background()
	objs, err := c.ObjectsAll(ctx, from, nil)
	if err != nil {
		t.Fatalf("listing %s: %v", from, err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, o := range objs {
		g.Go(func() error {
			_, h, err := c.Object(gctx, from, o.Name)
			if err != nil {
				return err
			}
			if m, ok := h["X-Object-Manifest"]; ok {
				rest, found := strings.CutPrefix(m, from+"/")
				if !found {
					return fmt.Errorf("%s: X-Object-Manifest %q names another container", o.Name, m)
				}
				_, err = c.ObjectPut(gctx, to, o.Name, bytes.NewReader(nil), false, "", o.ContentType, swift.Headers{"X-Object-Manifest": to + "/" + rest})
				return err
			}
			_, err = c.ObjectCopy(gctx, from, o.Name, to, o.Name, nil)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("copying container %s: %v", from, err)
	}
	b := *src
	b.reg = nil
	b.cfg.Swift.Container = to
	b.registry = strings.Replace(src.registry, "container: "+from+"\n", "container: "+to+"\n", 1)
	b.flags = replaceFlag(src.flags, "--swift-container", to)
	return &b
}

func replaceFlag(flags []string, name, value string) []string {
	out := append([]string(nil), flags...)
	for i := range out[:len(out)-1] {
		if out[i] == name {
			out[i+1] = value
			return out
		}
	}
	panic("no flag " + name)
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
}

func toSet(s []string) map[string]bool {
	m := map[string]bool{}
	for _, v := range s {
		m[v] = true
	}
	return m
}
