package main

import (
	"log/slog"
	"os"

	"github.com/regsweep/regsweep/progress"
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
	// A terminal that reports no width (a pseudo-terminal nobody sized)
	// would get no line at all: progress is logged there instead.
	if f, ok := g.stderr.(*os.File); ok && terminalWidth(f) > 0 {
		m := progress.New(progress.Options{Terminal: f})
		return m, g.loggerTo(m.Writer(f))
	}
	log := g.logger()
	return progress.New(progress.Options{Log: log, Interval: g.progressInterval}), log
}
