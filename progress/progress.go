// Package progress shows how far a long run has come, one stage at a time
// (walk, mark, verify, sweep). On a terminal it draws a live line per
// stage, cleared when the stage ends; elsewhere (cron mail, kubectl logs)
// it writes a structured log line when a stage starts and ends and at
// most one per interval while it runs; quiet, it shows nothing.
//
// It owns only the display: the engine says what a stage is and counts
// through Stage; it may not read storage or decide anything.
package progress

import (
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vbauerster/mpb/v8/decor"
)

// Reporter starts stages. Implementations are safe for concurrent use.
type Reporter interface {
	// Start begins a stage: its name, the unit it counts ("keys",
	// "manifests", "items"; "bytes" counts bytes) and its total, 0 when
	// unknown. One stage runs at a time: Done the previous one first.
	Start(stage, unit string, total int64) Stage
}

// Stage is one running stage. Add and Count are safe for concurrent use
// and cheap enough to call once per object.
type Stage interface {
	// Add counts n more units done.
	Add(n int64)
	// Count adds n to a named figure shown beside the main count
	// ("from_cache", "freed_bytes"; a name ending in "bytes" is shown as
	// bytes). Names are snake_case: they are log keys.
	Count(name string, n int64)
	// Done ends the stage: the live line is cleared, the end is logged.
	Done()
}

// Nop shows nothing (--quiet, tests).
type Nop struct{}

func (Nop) Start(string, string, int64) Stage { return Nop{} }
func (Nop) Add(int64)                         {}
func (Nop) Count(string, int64)               {}
func (Nop) Done()                             {}

// Options choose where progress goes.
type Options struct {
	// Terminal, when set, gets the live line: it must be a terminal.
	Terminal io.Writer
	// Log, when set and Terminal is not, gets the stage lines.
	Log *slog.Logger
	// Interval is the least time between two "running" log lines of a
	// stage; 0 logs only starts and ends.
	Interval time.Duration

	// now and tick replace the clock in tests.
	now  func() time.Time
	tick func(time.Duration) (<-chan time.Time, func())
}

// Meter is a Reporter that draws on a terminal or logs. Close it when the
// run ends, before anything else is written to the terminal.
type Meter struct {
	o    Options
	term *terminal // nil unless drawing

	mu      sync.Mutex
	current *stage
}

// New returns a Meter; with neither Terminal nor Log it shows nothing.
func New(o Options) *Meter {
	if o.now == nil {
		o.now = time.Now
	}
	if o.tick == nil {
		o.tick = func(d time.Duration) (<-chan time.Time, func()) {
			t := time.NewTicker(d)
			return t.C, t.Stop
		}
	}
	m := &Meter{o: o}
	if o.Terminal != nil {
		m.term = newTerminal(o.Terminal, o.tick)
	}
	return m
}

// Writer is where log lines go while the meter may draw: on a terminal
// they are printed above the live line instead of through it.
func (m *Meter) Writer(w io.Writer) io.Writer {
	if m.term == nil {
		return w
	}
	return m.term
}

// Start implements Reporter.
func (m *Meter) Start(name, unit string, total int64) Stage {
	m.mu.Lock()
	prev := m.current
	m.mu.Unlock()
	if prev != nil {
		prev.Done()
	}
	s := &stage{m: m, name: name, unit: unit, total: total, started: m.o.now(), counts: map[string]int64{}}
	m.mu.Lock()
	m.current = s
	m.mu.Unlock()
	switch {
	case m.term != nil:
		m.term.show(s)
	case m.o.Log != nil:
		m.o.Log.Info("progress", s.attrs("started")...)
		if m.o.Interval > 0 {
			s.stopLog = make(chan struct{})
			s.logDone = make(chan struct{})
			go s.logEvery(m.o.Interval)
		}
	}
	return s
}

// Close ends the running stage, if any (logged as stopped: the run ended
// before it did), and clears the terminal line.
func (m *Meter) Close() {
	m.mu.Lock()
	s := m.current
	m.mu.Unlock()
	if s != nil {
		s.end("stopped")
	}
	if m.term != nil {
		m.term.close()
	}
}

type stage struct {
	m       *Meter
	name    string
	unit    string
	total   int64
	started time.Time
	done    atomic.Int64

	mu     sync.Mutex
	counts map[string]int64
	ended  bool

	stopLog, logDone chan struct{}
}

func (s *stage) Add(n int64) { s.done.Add(n) }

func (s *stage) Count(name string, n int64) {
	s.mu.Lock()
	s.counts[name] += n
	s.mu.Unlock()
}

func (s *stage) Done() { s.end("done") }

// end ends the stage once; state is what its last log line says.
func (s *stage) end(state string) {
	s.mu.Lock()
	ended := s.ended
	s.ended = true
	s.mu.Unlock()
	if ended {
		return
	}
	if s.stopLog != nil {
		close(s.stopLog)
		<-s.logDone
	}
	m := s.m
	m.mu.Lock()
	if m.current == s {
		m.current = nil
	}
	m.mu.Unlock()
	switch {
	case m.term != nil:
		m.term.hide(s)
	case m.o.Log != nil:
		m.o.Log.Info("progress", s.attrs(state)...)
	}
}

func (s *stage) logEvery(d time.Duration) {
	defer close(s.logDone)
	c, stop := s.m.o.tick(d)
	defer stop()
	for {
		select {
		case <-s.stopLog:
			return
		case <-c:
			s.m.o.Log.Info("progress", s.attrs("running")...)
		}
	}
}

// snapshot is a stage's figures at one instant.
type snapshot struct {
	name, unit string
	done       int64
	total      int64
	elapsed    time.Duration
	counts     []count
}

type count struct {
	name string
	n    int64
}

func (s *stage) snapshot() snapshot {
	sn := snapshot{name: s.name, unit: s.unit, done: s.done.Load(), total: s.total, elapsed: s.m.o.now().Sub(s.started)}
	s.mu.Lock()
	for k, v := range s.counts {
		sn.counts = append(sn.counts, count{k, v})
	}
	s.mu.Unlock()
	slices.SortFunc(sn.counts, func(a, b count) int { return strings.Compare(a.name, b.name) })
	return sn
}

// rate is units a second since the stage started (0 before any time has
// passed).
func (sn snapshot) rate() float64 {
	if sn.elapsed <= 0 {
		return 0
	}
	return float64(sn.done) / sn.elapsed.Seconds()
}

// eta is the time left at the rate so far; ok is false when it cannot be
// told (no total, nothing done yet, or past the total).
func (sn snapshot) eta() (time.Duration, bool) {
	r := sn.rate()
	if sn.total <= 0 || r <= 0 || sn.done >= sn.total {
		return 0, false
	}
	secs := float64(sn.total-sn.done) / r
	if secs > math.MaxInt64/float64(time.Second) {
		return 0, false
	}
	return (time.Duration(secs * float64(time.Second))).Round(time.Second), true
}

// attrs are the log line's attributes: state is started, running, done or
// stopped.
func (s *stage) attrs(state string) []any {
	sn := s.snapshot()
	a := []any{"stage", sn.name, "state", state, "unit", sn.unit, "done", sn.done}
	if sn.total > 0 {
		a = append(a, "total", sn.total)
	}
	if state != "started" {
		a = append(a, "elapsed_seconds", sn.elapsed.Round(time.Millisecond).Seconds(), "per_second", math.Round(sn.rate()))
	}
	if eta, ok := sn.eta(); ok && state == "running" {
		a = append(a, "eta_seconds", int64(eta.Seconds()))
	}
	for _, c := range sn.counts {
		a = append(a, c.name, c.n)
	}
	return a
}

// line is the terminal's status line, without the bar.
func (sn snapshot) line() string {
	var b strings.Builder
	if sn.total > 0 && sn.unit != "bytes" {
		b.WriteString(group(sn.done))
	} else {
		b.WriteString(sn.amount(sn.done))
	}
	if sn.total > 0 {
		fmt.Fprintf(&b, " of %s (%.0f%%)", sn.amount(sn.total), 100*float64(min(sn.done, sn.total))/float64(sn.total))
	}
	fmt.Fprintf(&b, ", %s/s", sn.amount(int64(sn.rate())))
	if eta, ok := sn.eta(); ok {
		fmt.Fprintf(&b, ", ETA %s", eta)
	}
	for _, c := range sn.counts {
		label := strings.ReplaceAll(strings.TrimSuffix(strings.TrimSuffix(c.name, "bytes"), "_"), "_", " ")
		if strings.HasSuffix(c.name, "bytes") {
			fmt.Fprintf(&b, ", %s %s", label, humanBytes(c.n))
		} else {
			fmt.Fprintf(&b, ", %s %s", label, group(c.n))
		}
	}
	return b.String()
}

func (sn snapshot) amount(n int64) string {
	if sn.unit == "bytes" {
		return humanBytes(n)
	}
	return group(n) + " " + sn.unit
}

// group writes n with thousands separators: 1234567 is 1,234,567.
func group(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// humanBytes formats bytes with binary units ("1.5 MiB").
func humanBytes(n int64) string { return fmt.Sprintf("% .1f", decor.SizeB1024(n)) }
