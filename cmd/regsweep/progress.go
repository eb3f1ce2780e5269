package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/term"

	"github.com/regsweep/regsweep/mark"
	"github.com/regsweep/regsweep/reports"
	"github.com/regsweep/regsweep/storage"
)

// progress draws one status line on a terminal's stderr: the phase, how
// much is done, its rate and, when the total is known, an ETA. It draws
// nothing when stderr is not a terminal or with --quiet, so logs and
// pipes stay clean.
type progress struct {
	w       io.Writer
	enabled bool

	mu      sync.Mutex
	phase   string
	unit    string
	bytes   bool
	started time.Time
	total   int64
	done    atomic.Int64

	stop chan struct{}
	wg   sync.WaitGroup
}

func newProgress(g *globalOptions) *progress {
	p := &progress{w: g.stderr}
	if f, ok := g.stderr.(*os.File); ok && !g.quiet && term.IsTerminal(int(f.Fd())) {
		p.enabled = true
		p.stop = make(chan struct{})
		p.wg.Add(1)
		go p.loop()
	}
	return p
}

// Phase starts counting a new phase; total 0 means unknown.
func (p *progress) Phase(name, unit string, total int64, bytes bool) {
	p.mu.Lock()
	p.phase, p.unit, p.total, p.bytes, p.started = name, unit, total, bytes, time.Now()
	p.done.Store(0)
	p.mu.Unlock()
	p.clear()
}

// Add counts n more units done.
func (p *progress) Add(n int64) { p.done.Add(n) }

// Clear erases the line (before a log line is written).
func (p *progress) clear() {
	if p.enabled {
		p.mu.Lock()
		fmt.Fprint(p.w, "\r\033[K")
		p.mu.Unlock()
	}
}

// Pause erases the line and stops drawing until the next Phase.
func (p *progress) Pause() {
	p.mu.Lock()
	p.phase = ""
	p.mu.Unlock()
	p.clear()
}

// Stop erases the line for good.
func (p *progress) Stop() {
	if p.enabled {
		close(p.stop)
		p.wg.Wait()
		p.enabled = false
		fmt.Fprint(p.w, "\r\033[K")
	}
}

func (p *progress) loop() {
	defer p.wg.Done()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.mu.Lock()
			if p.phase != "" {
				fmt.Fprint(p.w, "\r\033[K"+p.line(time.Now()))
			}
			p.mu.Unlock()
		}
	}
}

// line formats the status; the caller holds mu.
func (p *progress) line(now time.Time) string {
	done := p.done.Load()
	elapsed := now.Sub(p.started).Seconds()
	rate := 0.0
	if elapsed > 0 {
		rate = float64(done) / elapsed
	}
	amount := func(n float64) string {
		if p.bytes {
			return reports.HumanBytes(int64(n))
		}
		return fmt.Sprintf("%.0f %s", n, p.unit)
	}
	s := fmt.Sprintf("%s: %s (%s/s)", p.phase, amount(float64(done)), amount(rate))
	if p.total > 0 {
		s += fmt.Sprintf(", %.0f%% of %s", 100*float64(min(done, p.total))/float64(p.total), amount(float64(p.total)))
		if rate > 0 && done < p.total {
			s += ", ETA " + (time.Duration(float64(p.total-done)/rate) * time.Second).Round(time.Second).String()
		}
	}
	return s
}

// countingDriver counts the objects a walk lists, for the progress line.
type countingDriver struct {
	storage.Driver
	p *progress
}

func (c countingDriver) Unwrap() storage.Driver { return c.Driver }

// Capabilities are the wrapped driver's, with this listing as the
// AfterWalker: split listings count too.
func (c countingDriver) Capabilities() storage.Capabilities { return storage.PassOn(c.Driver, c) }

func (c countingDriver) Walk(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	return c.WalkAfter(ctx, prefix, "", fn)
}

// WalkAfter counts as Walk does: the walker splits large listings with it.
func (c countingDriver) WalkAfter(ctx context.Context, prefix, startAfter string, fn func(storage.ObjectInfo) error) error {
	return storage.WalkAfter(ctx, c.Driver, prefix, startAfter, func(o storage.ObjectInfo) error {
		c.p.Add(1)
		return fn(o)
	})
}

// countingSource counts the manifests the mark reads.
type countingSource struct {
	mark.Source
	p *progress
}

func (c countingSource) Manifest(ctx context.Context, d digest.Digest) ([]byte, error) {
	defer c.p.Add(1)
	return c.Source.Manifest(ctx, d)
}
