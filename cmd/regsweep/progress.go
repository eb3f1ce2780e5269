package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/opencontainers/go-digest"
	"golang.org/x/term"

	"github.com/regsweep/regsweep/mark"
	"github.com/regsweep/regsweep/progress"
	"github.com/regsweep/regsweep/storage"
)

// startProgress returns the run's progress meter and the logger to use
// while it runs: on a terminal stderr the meter draws a live line and log
// lines go above it; otherwise the meter logs a line per stage start and
// end and at most one per --progress-interval; with --quiet it shows
// nothing. Close the meter before the command returns.
func (g *globalOptions) startProgress() (*progress.Meter, *slog.Logger) {
	if g.quiet {
		return progress.New(progress.Options{}), g.logger()
	}
	if f, ok := g.stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		m := progress.New(progress.Options{Terminal: f})
		return m, g.loggerTo(m.Writer(f))
	}
	log := g.logger()
	return progress.New(progress.Options{Log: log, Interval: g.progressInterval}), log
}

// countingDriver counts the objects a walk lists.
type countingDriver struct {
	storage.Driver
	st progress.Stage
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
		c.st.Add(1)
		return fn(o)
	})
}

// countingSource counts the manifests the mark reads, and where each came
// from.
type countingSource struct {
	src *mark.BlobSource
	st  progress.Stage
}

func (c countingSource) Manifest(ctx context.Context, d digest.Digest) ([]byte, error) {
	b, origin, err := c.src.ManifestFrom(ctx, d)
	c.st.Add(1)
	switch origin {
	case mark.FromCache:
		c.st.Count("from_cache", 1)
	case mark.FromPrefetch:
		c.st.Count("prefetched", 1)
	default:
		c.st.Count("from_storage", 1)
	}
	return b, err
}
