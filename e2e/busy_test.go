package e2e

// gc --delete on a busy, writable registry (issue 15): what is promised,
// asserted against the real registry (v3, filesystem and S3).
//
// gc cannot lock a registry out. What it promises on a writable one
// (docs/safety.md, section 10): a push the registry accepted loses nothing
// unless it overlaps a run's window, which opens when the last listing of
// the recheck before the blobs starts (gc logs "rechecking: listing
// storage again" there) and closes when the run ends. Pushes during the
// link phase are healed: the links they need that the run deleted are
// written again before the blobs go. A run that deleted links and did not
// finish that recheck healed nothing: its window opens with its first
// recheck.
//
//   - TestConcurrentPushesBusyRegistry loops gc under a random load and
//     asserts that at least 95% of the runs finish (exit 0) and that every
//     accepted push that did not overlap a window pulls afterwards, through
//     a restarted registry. Losses inside a window are counted.
//   - TestConcurrentPushesAtPhaseBoundaries stops gc (SIGSTOP) at each
//     boundary of its run, re-pushes garbage images in place and mounts
//     their blobs into new repositories, waits for the registry's answers
//     and lets gc go on (SIGCONT): the interleaving is then exact, not a
//     matter of luck. Every push that lands before the last listing of the
//     recheck before the blobs must pull; the others (the window) are
//     counted.
//   - TestConcurrentPushesAggressive is the client: two workers
//     pushing, deleting, re-pushing and mounting the whole time, and
//     manifest PUTs whose headers were sent before the run and whose bodies
//     are sent at each boundary, without stopping gc. The same assertion
//     as under the random load.
//
// The windows are read from gc's log times and the pushes' from the test's
// clock: the same clock, and an order of events, not a duration. A log
// time is written before the listing it announces starts, and rounded
// down, so a window is only ever taken wider than it is.
//
// REGSWEEP_CONCURRENT_RUNS=n runs n gc runs per backend and test (n rounds
// of every boundary), for soak runs; make test runs short ones.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/regsweep/regsweep/internal/testenv"
)

// ------------------------------------------------------------- gc's log ---

// The log lines the tests follow (sweep.ExecuteChecked, sweep.Execute).
const (
	msgRechecking = "rechecking: listing storage again"
	msgRechecked  = "rechecked the plan against storage"
	msgSweeping   = "sweeping"
)

// gcEvent is one line of gc's log (slog's text format).
type gcEvent struct {
	at    time.Time // when gc logged it, on its clock (the test's)
	msg   string
	attrs map[string]string
}

var logAttr = regexp.MustCompile(`([A-Za-z_][\w.]*)=("(?:[^"\\]|\\.)*"|\S*)`)

func parseGCLine(line string) gcEvent {
	ev := gcEvent{attrs: map[string]string{}}
	for _, m := range logAttr.FindAllStringSubmatch(line, -1) {
		v := m[2]
		if strings.HasPrefix(v, `"`) {
			if u, err := strconv.Unquote(v); err == nil {
				v = u
			}
		}
		ev.attrs[m[1]] = v
	}
	ev.msg = ev.attrs["msg"]
	ev.at, _ = time.Parse(time.RFC3339Nano, ev.attrs["time"])
	return ev
}

func (ev gcEvent) is(msg, key, value string) bool {
	return ev.msg == msg && (key == "" || ev.attrs[key] == value)
}

// gcProc is a running gc that the test may stop and let go on.
type gcProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	paused bool
	// pausedAt is when every thread of gc had stopped, resumedAt when
	// it was let go on: gc logged nothing in between.
	pausedAt, resumedAt time.Time
}

// pause stops gc and returns once every one of its threads has stopped.
// It stops some time after the line that made the test pause it: gc may
// have gone on and logged more (the test reads that after resume).
func (p *gcProc) pause() {
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		p.t.Fatalf("stopping gc: %v", err)
	}
	p.paused = true
	tasks := fmt.Sprintf("/proc/%d/task", p.cmd.Process.Pid)
	for !allStopped(tasks) {
		time.Sleep(time.Millisecond)
	}
	p.pausedAt = time.Now()
}

// allStopped says whether no thread under /proc/<pid>/task runs: each is
// stopped, or gone (a process that ended is a zombie until waited for).
func allStopped(tasks string) bool {
	entries, err := os.ReadDir(tasks)
	if err != nil {
		return true
	}
	for _, e := range entries {
		b, err := os.ReadFile(tasks + "/" + e.Name() + "/stat")
		if err != nil {
			continue // a thread that ended
		}
		// The state follows the command name, which is in parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || len(b) < i+3 || !strings.ContainsRune("TtZX", rune(b[i+2])) {
			return false
		}
	}
	return true
}

func (p *gcProc) resume() {
	p.resumedAt = time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		p.t.Fatalf("letting gc go on: %v", err)
	}
	p.paused = false
}

// watchedRun is one gc --delete whose log was followed.
type watchedRun struct {
	code    int
	last    string // the last line of its log: the error, when it failed
	events  []gcEvent
	exited  time.Time
	deleted map[string]int
	healed  int
	walks   int
}

// runGCWatched runs gc --delete --delete-untagged with both graces 0s (and
// extra flags) and hands each line of its log to on as it comes; on may
// pause the process.
func runGCWatched(t *testing.T, b *backendUnderTest, on func(ev gcEvent, p *gcProc), extra ...string) watchedRun {
	t.Helper()
	args := append([]string{"gc", "--delete", "--delete-untagged", "--grace", "0s", "--upload-grace", "0s",
		"--max-delete-fraction", "1", "--cache-dir", t.TempDir(), "--format", "json"}, extra...)
	cmd := exec.Command(regsweepBinary(t), append(args, b.flags...)...)
	cmd.Env = append(os.Environ(), b.env...)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &gcProc{t: t, cmd: cmd}
	waited := false
	defer func() {
		if !waited { // the test is failing: do not leave gc stopped
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	var r watchedRun
	var stderr strings.Builder
	sc := bufioScanner(pipe, make([]byte, 0, 64<<10))
	for sc.Scan() {
		line := sc.Text()
		stderr.WriteString(line + "\n")
		r.last = line
		ev := parseGCLine(line)
		r.events = append(r.events, ev)
		if on != nil {
			on(ev, p)
		}
		if p.paused {
			p.resume()
		}
	}
	err = cmd.Wait()
	waited = true
	r.exited = time.Now()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	refuseSecrets(t, b, args, stdout.String(), stderr.String())
	var doc struct {
		Result *struct {
			Deleted map[string]int `json:"deleted"`
		} `json:"result"`
		Recheck *struct {
			Healed int `json:"healed"`
			Walks  int `json:"walks"`
		} `json:"recheck"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil && r.code == 0 {
		t.Fatalf("gc printed no JSON report: %v\n%s", err, stdout.String())
	}
	if doc.Result != nil {
		r.deleted = doc.Result.Deleted
	}
	if doc.Recheck != nil {
		r.healed, r.walks = doc.Recheck.Healed, doc.Recheck.Walks
	}
	return r
}

// window is when a push may lose data to this run (see the file comment).
func (r watchedRun) window() (start, end time.Time, ok bool) {
	var first, last time.Time
	for _, ev := range r.events {
		if ev.msg == msgRechecking {
			if first.IsZero() {
				first = ev.at
			}
			last = ev.at
		}
	}
	switch {
	case first.IsZero():
		return time.Time{}, time.Time{}, false // it deleted nothing
	case r.unhealed():
		return first, r.exited, true
	default:
		return last, r.exited, true
	}
}

// unhealed says the run deleted links and did not finish the recheck
// after them, which heals what a push since needs.
func (r watchedRun) unhealed() bool {
	links, healed := false, false
	for _, ev := range r.events {
		switch {
		case ev.is(msgSweeping, "phase", "1"), ev.is(msgSweeping, "phase", "2"):
			links, healed = true, false
		case ev.msg == msgRechecked && ev.attrs["healed_links"] != "":
			healed = true
		}
	}
	return links && !healed
}

// short names a line of gc's log in a timeline.
func (ev gcEvent) short() string {
	switch ev.msg {
	case msgRechecking:
		return "listing " + ev.attrs["walk"]
	case msgSweeping:
		return "phase " + ev.attrs["phase"]
	case msgRechecked:
		if ev.attrs["healed_links"] != "" {
			return "heal"
		}
		return "recheck"
	}
	return ev.msg
}

// landing says where pushes made while p was paused landed in the run:
// after the last line gc logged before it stopped, before the first it
// logged once let go on; and whether that was before the last listing of
// the recheck before the blobs started. Log times are rounded down to the
// millisecond, so a line logged after the pause shows a later time than
// pausedAt only if gc stayed stopped more than a millisecond; otherwise
// the answer is "not known" and not before the last listing.
func (r watchedRun) landing(p *gcProc) (where string, beforeLastListing bool) {
	if p.resumedAt.Sub(p.pausedAt) <= time.Millisecond {
		return "not known (gc stopped for a millisecond or less)", false
	}
	after, before := "the start", "the exit"
	var lastListing time.Time
	for _, ev := range r.events {
		if ev.msg == msgRechecking {
			lastListing = ev.at
		}
		switch {
		case !ev.at.After(p.pausedAt):
			after = ev.short()
		case before == "the exit":
			before = ev.short()
		}
	}
	return "after " + after + ", before " + before, lastListing.After(p.pausedAt)
}

// exitClass is a short class of a failed run's error, for the figures.
func (r watchedRun) exitClass() string {
	line := r.last
	if ev := parseGCLine(line); ev.attrs["msg"] != "" {
		line = ev.attrs["msg"]
	}
	for _, known := range []string{"listed but not found when read", "exists but the walk did not list it", "unknown_keys"} {
		if strings.Contains(line, known) {
			return fmt.Sprintf("exit %d: %s", r.code, known)
		}
	}
	if len(line) > 100 {
		line = line[:100]
	}
	return fmt.Sprintf("exit %d: %s", r.code, line)
}

// overlapping is the run whose window p overlapped, if any.
func overlapping(p pushRecord, runs []watchedRun) (watchedRun, bool) {
	for _, r := range runs {
		if start, end, ok := r.window(); ok && !p.end.Before(start) && !p.start.After(end) {
			return r, true
		}
	}
	return watchedRun{}, false
}

// timeline says when the run listed, deleted and ended: the interleaving
// of a loss.
func (r watchedRun) timeline() string {
	var parts []string
	for _, ev := range r.events {
		switch ev.msg {
		case "walking storage":
			parts = append(parts, "walk at "+clock(ev.at))
		case msgRechecking:
			parts = append(parts, "listing "+ev.attrs["walk"]+" at "+clock(ev.at))
		case msgSweeping:
			parts = append(parts, "phase "+ev.attrs["phase"]+" at "+clock(ev.at))
		}
	}
	return strings.Join(append(parts, "exit at "+clock(r.exited)), ", ")
}

// nextRun is the timeline of the run going at t, or of the first after.
func nextRun(t time.Time, runs []watchedRun) string {
	for _, r := range runs {
		if !r.exited.Before(t) && len(r.events) > 0 {
			return r.timeline()
		}
	}
	return "none"
}

// ---------------------------------------------------------- the figures ---

// busyFigures are what a test reports per backend and scenario.
type busyFigures struct {
	runs, finished int
	exits          map[string]int // failed runs, by class
	accepted       int            // pushes the registry accepted
	lostInWindow   []lostPush     // lost, and overlapping a run's window
	lostIn         []watchedRun   // that run, for each
	lostOutside    []lostPush     // lost, and not: the promise broken
	unhealed       int            // runs that finished without the recheck after their links
	deletedBlobs   int
	deletedLinks   int
	healed, walks  int
	windowMS       []int // per run, how long its window stayed open (figures only)
	all            []watchedRun
}

func (f *busyFigures) addRun(r watchedRun) {
	f.all = append(f.all, r)
	f.runs++
	if r.code == 0 {
		f.finished++
		if r.unhealed() {
			f.unhealed++
		}
	} else {
		if f.exits == nil {
			f.exits = map[string]int{}
		}
		f.exits[r.exitClass()]++
	}
	f.deletedBlobs += r.deleted["blob"]
	for k, n := range r.deleted {
		if strings.HasSuffix(k, "_link") {
			f.deletedLinks += n
		}
	}
	f.healed += r.healed
	f.walks += r.walks
	if start, end, ok := r.window(); ok {
		f.windowMS = append(f.windowMS, int(end.Sub(start).Milliseconds()))
	}
}

func (f *busyFigures) classify(lost []lostPush, runs []watchedRun) {
	for _, l := range lost {
		if r, ok := overlapping(l.pushRecord, runs); ok {
			f.lostInWindow = append(f.lostInWindow, l)
			f.lostIn = append(f.lostIn, r)
		} else {
			f.lostOutside = append(f.lostOutside, l)
		}
	}
}

func (f *busyFigures) String() string {
	sort.Ints(f.windowMS)
	median := 0
	if n := len(f.windowMS); n > 0 {
		median = f.windowMS[n/2]
	}
	return fmt.Sprintf("%d gc runs, %d finished (exit 0), failed %v; %d pushes accepted, %d lost in a window, %d lost outside; "+
		"deleted %d blobs and %d links, healed %d links, %d recheck listings; median window %d ms",
		f.runs, f.finished, f.exits, f.accepted, len(f.lostInWindow), len(f.lostOutside),
		f.deletedBlobs, f.deletedLinks, f.healed, f.walks, median)
}

// check asserts the promise and the finish rate.
func (f *busyFigures) check(t *testing.T, what string) {
	t.Helper()
	t.Logf("%s: %s", what, f)
	for i, l := range f.lostInWindow {
		t.Logf("  lost in a window: %s pushed %s..%s (%v); the run: %s", l.ref, clock(l.start), clock(l.end), l.why, f.lostIn[i].timeline())
	}
	for _, l := range f.lostOutside {
		t.Errorf("%s: accepted push %s (%s..%s) overlapped no gc window and does not pull: %v; the next run: %s",
			what, l.ref, clock(l.start), clock(l.end), l.why, nextRun(l.end, f.all))
	}
	if f.unhealed > 0 {
		t.Errorf("%s: %d gc runs deleted links and finished without the recheck that heals them", what, f.unhealed)
	}
	if f.finished*100 < 95*f.runs {
		t.Errorf("%s: %d of %d gc runs finished, want at least 95%%: %v", what, f.finished, f.runs, f.exits)
	}
}

func clock(t time.Time) string { return t.Format("15:04:05.000") }

// checkUntouched pulls the corpus's kept images: tagged before the runs
// and never touched, every run marks them.
func checkUntouched(t *testing.T, reg *testenv.Registry, c *corpus) {
	t.Helper()
	for _, k := range c.kept {
		if err := pullErr(reg, k[0], k[1], ""); err != nil {
			t.Errorf("an image nobody touched during the runs: %v", err)
		}
	}
}

// soakRuns is REGSWEEP_CONCURRENT_RUNS, or def.
func soakRuns(def int) int {
	if n, err := strconv.Atoi(os.Getenv("REGSWEEP_CONCURRENT_RUNS")); err == nil && n > 0 {
		return n
	}
	return def
}

// ---------------------------------------------------------- random load ---

func TestConcurrentPushesBusyRegistry(t *testing.T) {
	for _, c := range []struct {
		name string
		open func(*testing.T) *backendUnderTest
		runs int
	}{{"filesystem", filesystemBackend, soakRuns(6)}, {"s3", minioBackend, soakRuns(4)}} {
		t.Run(c.name, func(t *testing.T) {
			b := c.open(t)
			corpus := pushCorpus(t, b.reg)
			l := newLoad(t, b.reg)
			stop := l.run(3)
			var f busyFigures
			var runs []watchedRun
			for i := 0; i < c.runs; i++ {
				r := l.runGC(t, b, nil)
				runs = append(runs, r)
				f.addRun(r)
			}
			stop()
			o := verifyAfterLoad(t, b, l)
			f.accepted = l.stats.Accepted
			f.classify(o.lost, runs)
			checkUntouched(t, b.reg, corpus)
			for _, p := range l.problems {
				t.Error(p)
			}
			f.check(t, c.name+", random load")
			t.Logf("load %+v; %d tags, %d broken; %d dangling links", l.stats, o.tags, o.brokenTags, o.dangling)
			for _, d := range o.details {
				t.Logf("  %s", d)
			}
			if l.stats.RawRepushes+l.stats.CraneRepushes == 0 || l.stats.MountPushes == 0 || l.stats.CranePushes == 0 {
				t.Errorf("the load did not run every scenario: %+v", l.stats)
			}
		})
	}
}

// ------------------------------------------------------ phase boundaries ---

// boundary is a line of gc's log at which a trial stops gc and pushes.
type boundary struct {
	name string
	at   func(gcEvent) bool
	// linksOnly: the trial's garbage is links only (its blobs are kept by
	// another repository, its repositories keep another image), so the
	// plan has no blob phase.
	linksOnly bool
	// blobsAt, if set, is an earlier line at which the blobs are pushed
	// (uploaded or mounted); at at, only the manifests are.
	blobsAt func(gcEvent) bool
}

// The blob phase comes first: the runs of the other trials then show that
// gc takes nothing more of what it lost (checkRecoverable).
var boundaries = []boundary{
	{name: "blobs", at: func(ev gcEvent) bool { return ev.is(msgSweeping, "phase", "3") }},
	{name: "blobs (layers pushed in the layer-link phase)", at: func(ev gcEvent) bool { return ev.is(msgSweeping, "phase", "3") },
		blobsAt: func(ev gcEvent) bool { return ev.is(msgSweeping, "phase", "2") }},
	{name: "first recheck listing (before the links)", at: func(ev gcEvent) bool { return ev.is(msgRechecking, "walk", "1") }},
	{name: "revision links (first sweeping)", at: func(ev gcEvent) bool { return ev.is(msgSweeping, "phase", "1") }},
	{name: "layer links", at: func(ev gcEvent) bool { return ev.is(msgSweeping, "phase", "2") }},
	{name: "layer links, plan of links only", at: func(ev gcEvent) bool { return ev.is(msgSweeping, "phase", "2") }, linksOnly: true},
	{name: "recheck listing before the blobs", at: func(ev gcEvent) bool { return ev.is(msgRechecking, "walk", "2") }},
}

// aimedPush is a push fired at a boundary while gc was stopped.
type aimedPush struct {
	repo, how string
	im        *rawImage
	boundary  string
	landed    string // between which lines of gc's log
	// mustPull: it landed before the last listing of the recheck before
	// the blobs started, in a run that finished.
	mustPull bool
	// missing are the digests (blobs, manifest) its repository no longer
	// served right after the run that took them.
	missing []string
	src     string // for a mount, the repository it mounted from
}

// pushBlobs uploads (HEAD first) or mounts ap's blobs.
func (ap aimedPush) pushBlobs(raw rawClient) error {
	for _, b := range ap.im.blobs() {
		var err error
		if ap.src == "" {
			_, err = raw.pushBlob(ap.repo, b)
		} else {
			_, err = raw.mountBlob(ap.repo, ap.src, b)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// push pushes ap's manifest as v1, its blobs first if withBlobs.
func (ap aimedPush) push(raw rawClient, withBlobs bool) error {
	if withBlobs {
		if err := ap.pushBlobs(raw); err != nil {
			return err
		}
	}
	return raw.putManifest(ap.repo, "v1", ap.im)
}

// missingOf lists what of im repo no longer serves (HEAD): its blobs and
// its manifest.
func missingOf(raw rawClient, repo string, im *rawImage) []string {
	var missing []string
	for _, b := range im.blobs() {
		if code, _, err := raw.do(http.MethodHead, "/v2/"+repo+"/blobs/"+testenv.Digest(b), "", nil); err == nil && code == http.StatusNotFound {
			missing = append(missing, testenv.Digest(b))
		}
	}
	if code, _, _, err := raw.exchange(http.MethodHead, "/v2/"+repo+"/manifests/"+im.digest, "", acceptAll, nil); err == nil && code == http.StatusNotFound {
		missing = append(missing, im.digest)
	}
	return missing
}

// boundaryFigures count, per boundary, the trials and pushes.
type boundaryFigures struct {
	trials, fired, finished int
	accepted, mustPull      int
	landed                  map[string]int // pushes by where they landed
	lost                    []string       // lost, landed in the window
	lostMustPull            []string       // lost, landed before it: the promise broken
}

func TestConcurrentPushesAtPhaseBoundaries(t *testing.T) {
	for _, c := range []struct {
		name string
		open func(*testing.T) *backendUnderTest
	}{{"filesystem", filesystemBackend}, {"s3", minioBackend}} {
		t.Run(c.name, func(t *testing.T) {
			runBoundaries(t, c.open(t), soakRuns(1))
		})
	}
}

func runBoundaries(t *testing.T, b *backendUnderTest, rounds int) {
	corpus := pushCorpus(t, b.reg)
	raw := newRawClient(b.reg)
	figures := map[string]*boundaryFigures{}
	var pushes []aimedPush
	trial := 0
	for round := 0; round < rounds; round++ {
		for _, bd := range boundaries {
			trial++
			fig := figures[bd.name]
			if fig == nil {
				fig = &boundaryFigures{landed: map[string]int{}}
				figures[bd.name] = fig
			}
			fig.trials++
			ims := garbageImages(t, raw, trial, bd.linksOnly)
			var mu sync.Mutex
			var landed []aimedPush
			var refused []string // pushes the registry refused (not a loss)
			var stopped *gcProc
			// Even images are pushed again in place, odd ones mounted
			// into a new repository.
			aims := make([]aimedPush, len(ims))
			for j, im := range ims {
				src := fmt.Sprintf("aim/%d-%d", trial, j)
				aims[j] = aimedPush{repo: src, how: "re-push in place", im: im, boundary: bd.name}
				if j%2 == 1 {
					aims[j].repo, aims[j].how, aims[j].src = fmt.Sprintf("aim-mount/%d-%d", trial, j), "mount into a new repository", src
				}
			}
			blobsPushed := bd.blobsAt == nil
			fire := func(push func(ap aimedPush) error) {
				var wg sync.WaitGroup
				for _, ap := range aims {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if err := push(ap); err != nil {
							mu.Lock()
							refused = append(refused, fmt.Sprintf("%s (%s): %v", ap.repo, ap.how, err))
							mu.Unlock()
						}
					}()
				}
				wg.Wait()
			}
			r := runGCWatched(t, b, func(ev gcEvent, p *gcProc) {
				switch {
				case !blobsPushed && bd.blobsAt(ev):
					blobsPushed = true
					p.pause()
					fire(func(ap aimedPush) error { return ap.pushBlobs(raw) })
				case stopped == nil && blobsPushed && bd.at(ev):
					stopped = p
					p.pause()
					fire(func(ap aimedPush) error {
						err := ap.push(raw, bd.blobsAt == nil)
						if err == nil {
							mu.Lock()
							landed = append(landed, ap)
							mu.Unlock()
						}
						return err
					})
				}
			})
			switch {
			case r.code != 0:
				t.Errorf("trial %d (%s): gc %s", trial, bd.name, r.exitClass())
			case r.unhealed():
				t.Errorf("trial %d (%s): gc deleted links and finished without the recheck that heals them", trial, bd.name)
			default:
				fig.finished++
			}
			if stopped == nil {
				t.Errorf("trial %d: gc never reached the boundary %q", trial, bd.name)
				continue
			}
			fig.fired++
			where, beforeLast := r.landing(stopped)
			mustPull := r.code == 0 && !r.unhealed() && beforeLast
			t.Logf("trial %d (%s): %d pushes accepted, landed %s, refused %v; deleted %v, healed %d; %s", trial, bd.name, len(landed), where, refused, r.deleted, r.healed, r.timeline())
			for _, ap := range landed {
				ap.landed, ap.mustPull = where, mustPull
				ap.missing = missingOf(raw, ap.repo, ap.im)
				pushes = append(pushes, ap)
				fig.accepted++
				fig.landed[where]++
				if mustPull {
					fig.mustPull++
				}
			}
		}
	}
	b.reg.Restart()
	for _, ap := range pushes {
		err := pullErr(b.reg, ap.repo, "v1", ap.im.digest)
		if err == nil {
			continue
		}
		fig := figures[ap.boundary]
		what := fmt.Sprintf("%s (%s), landed %s: %v", ap.repo, ap.how, ap.landed, err)
		if ap.mustPull {
			fig.lostMustPull = append(fig.lostMustPull, what)
		} else {
			fig.lost = append(fig.lost, what)
		}
	}
	checkUntouched(t, b.reg, corpus)
	checkRecoverable(t, b, pushes)
	for _, bd := range boundaries {
		fig := figures[bd.name]
		if fig == nil {
			continue
		}
		t.Logf("%s, pushes at %q: %d trials (%d reached it, %d finished); %d pushes accepted, %d of them before the last recheck listing; lost: %d before it, %d in the window; landed %v",
			b.name, bd.name, fig.trials, fig.fired, fig.finished, fig.accepted, fig.mustPull, len(fig.lostMustPull), len(fig.lost), fig.landed)
		for _, l := range fig.lost {
			t.Logf("  lost in the window: %s", l)
		}
		for _, l := range fig.lostMustPull {
			t.Errorf("%s: a push at %q, before the last recheck listing, was lost: %s", b.name, bd.name, l)
		}
		if fig.accepted == 0 {
			t.Errorf("%s: no push at %q was accepted: the trial proves nothing", b.name, bd.name)
		}
	}
}

// checkRecoverable asserts that gc does not compound a loss: the runs
// after the one that lost a push took nothing more of it (its repository
// is broken: its layer links and its link to the missing manifest stay),
// and pushing the image again the way it was pushed, then running gc,
// makes it pull.
func checkRecoverable(t *testing.T, b *backendUnderTest, pushes []aimedPush) {
	t.Helper()
	raw := newRawClient(b.reg)
	var lost []aimedPush
	for _, ap := range pushes {
		if len(ap.missing) == 0 {
			continue
		}
		lost = append(lost, ap)
		now := missingOf(raw, ap.repo, ap.im)
		for _, d := range now {
			if !slices.Contains(ap.missing, d) {
				t.Errorf("%s: %s went in a later run; right after the loss only %v were missing", ap.repo, d, ap.missing)
			}
		}
		if err := ap.push(raw, true); err != nil {
			t.Errorf("%s: pushing the lost image again: %v", ap.repo, err)
		}
	}
	if len(lost) == 0 {
		return
	}
	if r := runGCWatched(t, b, nil); r.code != 0 {
		t.Errorf("gc after the recovery: %s", r.exitClass())
	}
	b.reg.Restart()
	for _, ap := range lost {
		if err := pullErr(b.reg, ap.repo, "v1", ap.im.digest); err != nil {
			t.Errorf("%s: pushed again after its loss, then gc: %v", ap.repo, err)
		}
	}
	t.Logf("%s: %d lost pushes checked: what later runs took of them, and whether each pulls once pushed again", b.name, len(lost))
}

// garbageImages pushes four images to aim/<trial>-<j> and makes them
// garbage: the first two lose their tag (an untagged manifest: its
// revision link is garbage too), the others are deleted (the registry
// deletes the revision link). With linksOnly each is also tagged in
// keep/<trial>-<j> (its blobs stay) and each aim repository keeps another
// image, so only links are garbage.
func garbageImages(t *testing.T, raw rawClient, trial int, linksOnly bool) []*rawImage {
	t.Helper()
	ims := make([]*rawImage, 4)
	for j := range ims {
		ims[j] = newRawImage(t)
		repo := fmt.Sprintf("aim/%d-%d", trial, j)
		if err := rawPushImage(raw, repo, ims[j]); err != nil {
			t.Fatalf("pushing %s: %v", repo, err)
		}
		if linksOnly {
			if err := rawPushImage(raw, fmt.Sprintf("keep/%d-%d", trial, j), ims[j]); err != nil {
				t.Fatal(err)
			}
			other := newRawImage(t)
			for _, blob := range other.blobs() {
				if _, err := raw.pushBlob(repo, blob); err != nil {
					t.Fatal(err)
				}
			}
			if err := raw.putManifest(repo, "other", other); err != nil {
				t.Fatal(err)
			}
		}
		ref := ims[j].digest
		if j < 2 {
			ref = "v1"
		}
		if err := raw.deleteManifest(repo, ref); err != nil {
			t.Fatal(err)
		}
	}
	return ims
}

// rawPushImage pushes im as repo:v1 the way clients do (HEAD, upload what
// is missing, PUT).
func rawPushImage(c rawClient, repo string, im *rawImage) error {
	for _, b := range im.blobs() {
		if _, err := c.pushBlob(repo, b); err != nil {
			return err
		}
	}
	return c.putManifest(repo, "v1", im)
}

// mountPushAll mounts im's blobs from repo from into repo (uploading what
// cannot be mounted) and pushes im there as v1.
func mountPushAll(c rawClient, repo, from string, im *rawImage) error {
	for _, b := range im.blobs() {
		if _, err := c.mountBlob(repo, from, b); err != nil {
			return err
		}
	}
	return c.putManifest(repo, "v1", im)
}

// ------------------------------------------------------ aggressive client ---

// armedPut is a manifest PUT whose headers are sent when it is armed and
// whose body is sent when it is fired: the registry takes the manifest the
// moment the body is complete.
type armedPut struct {
	pw    *io.PipeWriter
	body  []byte
	done  chan error
	fired bool
}

// patientClient waits for an armed PUT as long as a gc run may take.
var patientClient = &http.Client{Timeout: 10 * time.Minute, Transport: &http.Transport{Proxy: nil}}

func (c rawClient) armPut(repo, ref string, im *rawImage) *armedPut {
	pr, pw := io.Pipe()
	a := &armedPut{pw: pw, body: im.manifest, done: make(chan error, 1)}
	req, err := http.NewRequest(http.MethodPut, c.base+"/v2/"+repo+"/manifests/"+ref, pr)
	if err != nil {
		a.done <- err
		return a
	}
	req.ContentLength = int64(len(im.manifest))
	req.Header.Set("Content-Type", ociManifest)
	go func() {
		resp, err := patientClient.Do(req)
		if err != nil {
			a.done <- err
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		a.done <- statusErr("PUT manifest", resp.StatusCode, http.StatusCreated)
	}()
	return a
}

func (a *armedPut) fire() {
	a.fired = true
	go func() {
		a.pw.Write(a.body)
		a.pw.Close()
	}()
}

// wait returns the registry's answer; a PUT never fired is abandoned.
func (a *armedPut) wait() error {
	if !a.fired {
		a.pw.CloseWithError(errors.New("never fired"))
	}
	return <-a.done
}

func TestConcurrentPushesAggressive(t *testing.T) {
	for _, c := range []struct {
		name string
		open func(*testing.T) *backendUnderTest
		runs int
	}{{"filesystem", filesystemBackend, soakRuns(3)}, {"s3", minioBackend, soakRuns(0)}} {
		if c.runs == 0 {
			continue // a soak configuration (REGSWEEP_CONCURRENT_RUNS)
		}
		t.Run(c.name, func(t *testing.T) {
			runAggressive(t, c.open(t), c.runs)
		})
	}
}

// runAggressive runs gc back to back while two workers push, delete,
// re-push and mount, and fires at each boundary (the link phase's first
// sweeping line, the first listing of the recheck before the blobs, the
// blob phase) manifest PUTs armed before the run, and full re-pushes and
// mounts.
func runAggressive(t *testing.T, b *backendUnderTest, runs int) {
	corpus := pushCorpus(t, b.reg)
	raw := newRawClient(b.reg)
	l := newLoad(t, b.reg)
	stop := l.run(2)
	var f busyFigures
	var watched []watchedRun
	type aimed struct {
		rec   pushRecord
		armed *armedPut
		full  func() error
	}
	var all []pushRecord
	fires := []func(gcEvent) bool{
		func(ev gcEvent) bool { return ev.is(msgSweeping, "phase", "1") || ev.is(msgSweeping, "phase", "2") },
		func(ev gcEvent) bool { return ev.is(msgRechecking, "walk", "2") },
		func(ev gcEvent) bool { return ev.is(msgSweeping, "phase", "3") },
	}
	for i := 0; i < runs; i++ {
		// Per boundary: an image re-pushed in place, and one whose blobs
		// were mounted into a new repository before the run (links no
		// manifest uses: garbage too), both with armed PUTs; and one
		// re-pushed and one mounted from scratch when the boundary comes.
		var shots [][]aimed
		for k := range fires {
			var shot []aimed
			for j := 0; j < 4; j++ {
				im := newRawImage(t)
				src := fmt.Sprintf("agg/%d-%d-%d", i, k, j)
				start := time.Now()
				if err := rawPushImage(raw, src, im); err != nil {
					t.Fatalf("pushing %s: %v", src, err)
				}
				// Untagged (its revision link is garbage too), or deleted.
				ref := im.digest
				if j%2 == 0 {
					ref = "v1"
				}
				if err := raw.deleteManifest(src, ref); err != nil {
					t.Fatal(err)
				}
				a := aimed{rec: pushRecord{ref: src + ":v1", digest: im.digest, start: start}}
				switch j {
				case 0:
					a.armed = raw.armPut(src, "v1", im)
				case 1:
					dst := fmt.Sprintf("agg-mount/%d-%d-%d", i, k, j)
					for _, blob := range im.blobs() {
						if _, err := raw.mountBlob(dst, src, blob); err != nil {
							t.Fatal(err)
						}
					}
					a.rec.ref = dst + ":v1"
					a.armed = raw.armPut(dst, "v1", im)
				case 2:
					a.full = func() error { return rawPushImage(raw, src, im) }
				case 3:
					dst := fmt.Sprintf("agg-mount/%d-%d-%d", i, k, j)
					a.rec.ref = dst + ":v1"
					a.full = func() error { return mountPushAll(raw, dst, src, im) }
				}
				shot = append(shot, a)
			}
			shots = append(shots, shot)
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		record := func(a aimed, err error) {
			if err != nil {
				return
			}
			a.rec.end = time.Now()
			mu.Lock()
			all = append(all, a.rec)
			mu.Unlock()
		}
		fired := make([]bool, len(fires))
		r := l.runGC(t, b, func(ev gcEvent, _ *gcProc) {
			for k, at := range fires {
				if fired[k] || !at(ev) {
					continue
				}
				fired[k] = true
				for _, a := range shots[k] {
					if a.armed != nil {
						a.armed.fire()
						continue
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						if a.full != nil {
							a.rec.start = time.Now()
						}
						record(a, a.full())
					}()
				}
			}
		})
		for _, shot := range shots {
			for _, a := range shot {
				if a.armed != nil {
					record(a, a.armed.wait())
				}
			}
		}
		wg.Wait()
		watched = append(watched, r)
		f.addRun(r)
	}
	stop()
	o := verifyAfterLoad(t, b, l)
	f.accepted = l.stats.Accepted + len(all)
	lost := o.lost
	for _, p := range all {
		repo, tag, _ := strings.Cut(p.ref, ":")
		if err := pullErr(b.reg, repo, tag, p.digest); err != nil {
			lost = append(lost, lostPush{p, err})
		}
	}
	f.classify(lost, watched)
	checkUntouched(t, b.reg, corpus)
	for _, p := range l.problems {
		t.Error(p)
	}
	f.check(t, b.name+", aggressive client")
	t.Logf("load %+v; %d pushes fired at the boundaries accepted; %d tags, %d broken; %d dangling links", l.stats, len(all), o.tags, o.brokenTags, o.dangling)
	for _, d := range o.details {
		t.Logf("  %s", d)
	}
}
