package gc

import (
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/regsweep/regsweep/lock"
	"github.com/regsweep/regsweep/sweep"
)

// Refusals judged before the walk: each is a guard, so it exits like the
// plan's guards, but it stops the run before anything is read.

// Names of the refusals in messages.
const (
	GuardClockSkew           = "clock_skew"
	GuardRegistryNotReadOnly = "registry_not_readonly"
)

// minClockTolerance: S3 stamps whole seconds and a write takes a while, so
// a few seconds of disagreement is measurement, not skew.
const minClockTolerance = 5 * time.Second

// clockSkewError refuses a deleting run whose host clock runs ahead of the
// storage's: every window (grace, upload grace, "linked since the mark")
// compares storage mtimes with this host's clock, and would be that much
// shorter. It unwraps to a guard; force overrides it.
type clockSkewError struct {
	ahead, tolerance time.Duration
	guard            *sweep.GuardError
}

func (e clockSkewError) Error() string {
	return fmt.Sprintf("refusing to delete (%s): this host's clock is %s ahead of the storage's (measured on the lock's write), "+
		"more than the %s tolerated, so every grace window would be that much shorter; synchronise the clock (NTP), or pass --force",
		GuardClockSkew, e.ahead.Round(time.Second), e.tolerance)
}

func (e clockSkewError) Unwrap() error { return e.guard }

// CheckClock refuses a deleting run whose clock is ahead of the storage's
// (as measured when the lock was written) by more than a tenth of its
// shortest window, and at least a few seconds. With force it only warns.
// A clock behind only lengthens the windows: a warning.
func CheckClock(held *lock.Held, force bool, log *slog.Logger, windows ...time.Duration) error {
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
		return clockSkewError{ahead: ahead, tolerance: tolerance, guard: &sweep.GuardError{Guards: []sweep.Guard{{Name: GuardClockSkew, Message: msg}}}}
	case -ahead > tolerance:
		log.Warn("this host's clock is behind the storage's: grace windows are that much longer", "behind", (-ahead).Round(time.Second))
	}
	return nil
}

// notReadOnlyError refuses a deleting run. It unwraps to a guard; unlike
// the others force does not override it: the operator asked for this
// check explicitly.
type notReadOnlyError struct {
	config, reason string
	guard          *sweep.GuardError
}

func (e notReadOnlyError) Error() string {
	return fmt.Sprintf("refusing to delete (%s): --require-readonly is set and the registry configured by %s is not in read-only mode: %s; "+
		"set storage.maintenance.readonly.enabled: true and restart the registry for the run, or drop --require-readonly",
		GuardRegistryNotReadOnly, e.config, e.reason)
}

func (e notReadOnlyError) Unwrap() error { return e.guard }

// RequireReadOnly judges a run that requires the registry (configured by
// the file config) to be read-only: the registry has no lock regsweep
// could take, so its read-only mode is the one way to close the window
// between the last recheck and the deletions (docs/safety.md). A deleting
// run against a registry that is not read-only (reason says why) is
// refused; a dry run only warns, since it deletes nothing.
func RequireReadOnly(config string, readOnly bool, reason string, deleting bool, log *slog.Logger) error {
	switch {
	case readOnly:
		log.Info("the registry is configured read-only", "registry_config", config)
		return nil
	case deleting:
		return notReadOnlyError{config: config, reason: reason,
			guard: &sweep.GuardError{Guards: []sweep.Guard{{Name: GuardRegistryNotReadOnly, Message: reason}}}}
	}
	log.Warn("a deleting run would refuse: the registry is not configured read-only", "registry_config", config, "reason", reason)
	return nil
}
