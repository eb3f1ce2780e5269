package main

import (
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/regsweep/regsweep/lock"
	"github.com/regsweep/regsweep/sweep"
)

// guardClockSkew names the refusal in reports and messages.
const guardClockSkew = "clock_skew"

// minClockTolerance: S3 stamps whole seconds and a write takes a while, so
// a few seconds of disagreement is measurement, not skew.
const minClockTolerance = 5 * time.Second

// clockSkewError refuses a deleting run whose host clock runs ahead of the
// storage's: every window (grace, upload grace, "linked since the mark")
// compares storage mtimes with this host's clock, and would be that much
// shorter. It exits 6 like the other guards, and --force overrides it.
type clockSkewError struct {
	ahead, tolerance time.Duration
	guard            *sweep.GuardError
}

func (e clockSkewError) Error() string {
	return fmt.Sprintf("refusing to delete (%s): this host's clock is %s ahead of the storage's (measured on the lock's write), "+
		"more than the %s tolerated, so every grace window would be that much shorter; synchronise the clock (NTP), or pass --force",
		guardClockSkew, e.ahead.Round(time.Second), e.tolerance)
}

func (e clockSkewError) Unwrap() error { return e.guard }

// checkClock refuses a deleting run whose clock is ahead of the storage's
// by more than a tenth of its shortest window (and at least a few
// seconds). A clock behind only lengthens the windows: a warning.
func checkClock(held *lock.Held, force bool, log *slog.Logger, windows ...time.Duration) error {
	tolerance := minClockTolerance
	if len(windows) > 0 {
		tolerance = max(tolerance, slices.Min(windows)/10)
	}
	ahead := held.ClockAhead()
	switch {
	case ahead > tolerance && force:
		log.Warn("this host's clock is ahead of the storage's: every grace window is that much shorter (--force)", "ahead", ahead.Round(time.Second))
	case ahead > tolerance:
		msg := fmt.Sprintf("this host's clock is %s ahead of the storage's", ahead.Round(time.Second))
		return clockSkewError{ahead: ahead, tolerance: tolerance, guard: &sweep.GuardError{Guards: []sweep.Guard{{Name: guardClockSkew, Message: msg}}}}
	case -ahead > tolerance:
		log.Warn("this host's clock is behind the storage's: grace windows are that much longer", "behind", (-ahead).Round(time.Second))
	}
	return nil
}
