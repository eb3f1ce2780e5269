package progress

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
)

// fakeClock is a clock the test moves, and the ticks it sends.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	ticks chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Unix(1000, 0), ticks: make(chan time.Time)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func (c *fakeClock) options(o Options) Options {
	o.now = c.Now
	o.tick = func(time.Duration) (<-chan time.Time, func()) { return c.ticks, func() {} }
	return o
}

func logLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, rec)
	}
	return out
}

// lineWriter keeps what is written and signals each write.
type lineWriter struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	written chan struct{}
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.buf.Write(p)
	w.mu.Unlock()
	select {
	case w.written <- struct{}{}:
	default:
	}
	return len(p), nil
}

// Without a terminal, a stage logs its start, one line per interval tick
// while it runs, and its end, with the figures so far.
func TestMeterLogsStages(t *testing.T) {
	out := &lineWriter{written: make(chan struct{}, 1)}
	clock := newFakeClock()
	m := New(clock.options(Options{Log: slog.New(slog.NewJSONHandler(out, nil)), Interval: 30 * time.Second}))
	st := m.Start("mark", "manifests", 400)
	st.Add(100)
	st.Count("from_cache", 60)
	st.Count("from_storage", 40)
	clock.advance(10 * time.Second)
	<-out.written              // the start line
	clock.ticks <- clock.Now() // the interval passed: one running line
	<-out.written
	st.Add(100)
	clock.advance(10 * time.Second)
	st.Done()
	st.Done() // a second Done logs nothing
	w := m.Start("walk", "keys", 0)
	w.Add(7)
	m.Close() // ends the running stage: stopped, not done

	recs := logLines(t, &out.buf)
	if len(recs) != 5 {
		t.Fatalf("%d log lines, want 5 (start, running, done; start, done):\n%s", len(recs), out.buf.String())
	}
	want := []struct {
		stage, state string
		done         float64
	}{{"mark", "started", 0}, {"mark", "running", 100}, {"mark", "done", 200}, {"walk", "started", 0}, {"walk", "stopped", 7}}
	for i, w := range want {
		r := recs[i]
		if r["msg"] != "progress" || r["stage"] != w.stage || r["state"] != w.state || r["done"] != w.done {
			t.Errorf("line %d: %v, want stage %s state %s done %v", i, r, w.stage, w.state, w.done)
		}
	}
	running := recs[1]
	if running["total"] != 400.0 || running["per_second"] != 10.0 || running["eta_seconds"] != 30.0 ||
		running["from_cache"] != 60.0 || running["from_storage"] != 40.0 || running["unit"] != "manifests" {
		t.Errorf("running line: %v", running)
	}
	if recs[2]["elapsed_seconds"] != 20.0 {
		t.Errorf("done line: %v", recs[2])
	}
	if _, ok := recs[3]["total"]; ok {
		t.Errorf("a stage of unknown total logs a total: %v", recs[3])
	}
}

// Interval 0 logs starts and ends only.
func TestMeterWithoutInterval(t *testing.T) {
	var buf bytes.Buffer
	m := New(Options{Log: slog.New(slog.NewJSONHandler(&buf, nil))})
	st := m.Start("sweep", "items", 3)
	st.Add(3)
	st.Done()
	m.Close()
	if n := len(logLines(t, &buf)); n != 2 {
		t.Errorf("%d lines, want 2:\n%s", n, buf.String())
	}
}

func TestMeterShowsNothingWithoutOutputs(t *testing.T) {
	m := New(Options{})
	st := m.Start("walk", "keys", 0)
	st.Add(1)
	st.Count("x", 1)
	st.Done()
	m.Close()
	var r Reporter = Nop{}
	r.Start("walk", "keys", 0).Done()
}

func TestLine(t *testing.T) {
	sn := snapshot{name: "verify", unit: "bytes", done: 100 << 20, total: 400 << 20, elapsed: 10 * time.Second}
	if got, want := sn.line(), "100.0 MiB of 400.0 MiB (25%), 10.0 MiB/s, ETA 30s"; got != want {
		t.Errorf("line %q, want %q", got, want)
	}
	sn = snapshot{name: "walk", unit: "keys", done: 1234567, elapsed: 2 * time.Second}
	if got, want := sn.line(), "1,234,567 keys, 617,283 keys/s"; got != want {
		t.Errorf("line %q, want %q", got, want)
	}
	sn = snapshot{name: "sweep", unit: "items", done: 500, total: 1000, elapsed: 5 * time.Second,
		counts: []count{{"freed_bytes", 3 << 30}}}
	if got, want := sn.line(), "500 of 1,000 items (50%), 100 items/s, ETA 5s, freed 3.0 GiB"; got != want {
		t.Errorf("line %q, want %q", got, want)
	}
	// Past its estimate a count shows no ETA and at most 100%.
	sn = snapshot{name: "mark", unit: "manifests", done: 12, total: 10, elapsed: time.Second,
		counts: []count{{"from_cache", 2}, {"from_storage", 10}}}
	if got, want := sn.line(), "12 of 10 manifests (100%), 12 manifests/s, from cache 2, from storage 10"; got != want {
		t.Errorf("line %q, want %q", got, want)
	}
}

// On a terminal the stage's line is drawn and erased when it ends; what
// is logged meanwhile is printed, not torn by the line.
func TestMeterDrawsOnATerminal(t *testing.T) {
	master, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	if err := pty.Setsize(master, &pty.Winsize{Rows: 24, Cols: 160}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	read := make(chan struct{})
	go func() {
		io.Copy(&out, master)
		close(read)
	}()
	clock := newFakeClock()
	m := New(clock.options(Options{Terminal: tty}))
	log := slog.New(slog.NewTextHandler(m.Writer(tty), nil))
	st := m.Start("walk", "keys", 0)
	st.Add(4321)
	clock.advance(time.Second)
	clock.ticks <- clock.Now()
	log.Info("a log line while drawing")
	st.Done()
	m.Close()
	tty.Close()
	<-read
	s := out.String()
	for _, want := range []string{"walk", "4,321 keys, 4,321 keys/s", "a log line while drawing"} {
		if !strings.Contains(s, want) {
			t.Errorf("terminal output lacks %q:\n%q", want, s)
		}
	}
	// The last thing written erases the line: cursor up and clear to
	// the end of the screen, with no line drawn after it.
	last := strings.LastIndex(s, "\x1b[J")
	if last < 0 || strings.Contains(s[last:], "keys") {
		t.Errorf("the line was not erased at the end:\n%q", s)
	}
}
