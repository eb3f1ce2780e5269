package progress

import (
	"io"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// refresh is how often the live line is redrawn.
const refresh = 200 * time.Millisecond

// terminal draws the running stage as one line with mpb, which keeps the
// line below whatever is logged meanwhile (Write) and erases it when the
// stage ends. Counting stays in the stage's atomics; the bar is only told
// the figure when it is redrawn.
type terminal struct {
	w        io.Writer
	p        *mpb.Progress
	refresh  chan any
	shutdown chan any // closed when mpb stops (at close, or after it failed to draw)
	stop     func()
	wg       sync.WaitGroup
	quit     chan struct{}

	mu    sync.Mutex
	bar   *mpb.Bar
	stage *stage
	shut  bool
}

func newTerminal(w io.Writer, tick func(time.Duration) (<-chan time.Time, func())) *terminal {
	t := &terminal{w: w, refresh: make(chan any), shutdown: make(chan any), quit: make(chan struct{})}
	t.p = mpb.New(mpb.WithOutput(w), mpb.WithManualRefresh(t.refresh), mpb.WithShutdownNotifier(t.shutdown), mpb.WithWidth(100))
	c, stop := tick(refresh)
	t.stop = stop
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		for {
			select {
			case <-t.quit:
				return
			case <-c:
				t.redraw()
			}
		}
	}()
	return t
}

// redraw hands the bar its figure and asks mpb to draw.
func (t *terminal) redraw() {
	t.mu.Lock()
	if t.bar != nil {
		setCurrent(t.bar, t.stage)
	}
	t.mu.Unlock()
	t.draw()
}

// draw asks mpb to draw, unless it has stopped: a terminal it failed to
// draw on ends the drawing, never the run.
func (t *terminal) draw() {
	select {
	case t.refresh <- time.Now():
	case <-t.shutdown:
	}
}

// setCurrent gives the bar the stage's count, at most its total (the bar
// is full, not past it).
func setCurrent(bar *mpb.Bar, s *stage) {
	done := s.done.Load()
	if s.total > 0 {
		done = min(done, s.total)
	}
	bar.SetCurrent(done)
}

func (t *terminal) show(s *stage) {
	filler := mpb.NopStyle()
	if s.total > 0 {
		filler = mpb.BarStyle()
	}
	// Total 0 (unknown to mpb) keeps the bar from completing by itself when
	// a count passes its estimate; Done removes it.
	bar := t.p.New(0, filler, mpb.BarWidth(24),
		mpb.PrependDecorators(decor.Name(s.name+" ", decor.WC{W: 7, C: decor.DindentRight})),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string { return " " + s.snapshot().line() })))
	if s.total > 0 {
		bar.SetTotal(s.total, false)
	}
	t.mu.Lock()
	t.bar, t.stage = bar, s
	t.mu.Unlock()
}

func (t *terminal) hide(s *stage) {
	t.mu.Lock()
	var bar *mpb.Bar
	if t.stage == s {
		bar = t.bar
		t.bar, t.stage = nil, nil
	}
	shut := t.shut
	t.mu.Unlock()
	if bar != nil && !shut {
		setCurrent(bar, s) // its last frame shows the final count
		bar.Abort(true)
		// Two draws: one takes the aborted bar out, the next erases it.
		t.draw()
		t.draw()
	}
}

// Write prints p above the live line; once the meter is closed, straight
// to the terminal.
func (t *terminal) Write(p []byte) (int, error) {
	if n, err := t.p.Write(p); err == nil {
		return n, nil
	}
	return t.w.Write(p)
}

func (t *terminal) close() {
	t.mu.Lock()
	if t.shut {
		t.mu.Unlock()
		return
	}
	t.shut = true
	t.mu.Unlock()
	close(t.quit)
	t.wg.Wait()
	t.stop()
	t.draw() // prints what was written since the last draw
	t.p.Wait()
}
