package main

import (
	"context"
	"errors"

	"github.com/regsweep/regsweep/backend"
	"github.com/regsweep/regsweep/harborgc"
	"github.com/regsweep/regsweep/lock"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/sweep"
	"github.com/regsweep/regsweep/walker"
)

// Exit codes, decided here and nowhere else. docs/exit-codes.md lists them;
// operators' alerting relies on them, so codes are added, never changed.
const (
	exitOK       = 0
	exitError    = 1  // anything not classified below
	exitUsage    = 2  // bad flags or configuration
	exitFindings = 3  // the run finished and found problems in storage
	exitStorage  = 4  // storage unreachable, credentials refused, bucket or container missing
	exitWalk     = 5  // the storage walk could not complete: nothing was decided from it
	exitGuard    = 6  // a safety guard refused the sweep (or a blocking problem in storage)
	exitLocked   = 7  // another regsweep run holds the storage lock
	exitPartial  = 8  // the sweep ran but some deletions failed; they stay for the next run
	exitPlan     = 9  // a plan file that is invalid, for another storage, or too old
	exitHarbor   = 10 // Harbor mode: the database or the registry's Redis failed (unreachable, standby, unknown schema, a query)
	exitCanceled = 130
)

// usageError marks errors in what the operator asked for.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

// findingsError says the run completed but storage has problems.
type findingsError struct{ msg string }

func (f findingsError) Error() string { return f.msg }

// storageOpenError marks a failure to open the storage.
type storageOpenError struct{ err error }

func (s storageOpenError) Error() string { return "opening storage: " + s.err.Error() }
func (s storageOpenError) Unwrap() error { return s.err }

// exitCode classifies err. A run can fail in several ways at once (gc
// --delete joins the sweep's error with its participants' after it): the
// cases are tried in the order of docs/exit-codes.md, most urgent first. A
// Harbor failure comes before what storage or the sweep says: Harbor keeps
// serving from a database or cache that is then out of line with storage
// (rows refusing pushes, a cache answering for deleted links), while failed
// deletions only leave garbage for the next run.
func exitCode(err error) int {
	var (
		usage       usageError
		findings    findingsError
		open        storageOpenError
		unsupported *backend.UnsupportedDriverError
		guard       *sweep.GuardError
		badPlan     planError
		harbor      harborgc.Error
		storagePath *storage.PathError
	)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, context.Canceled):
		return exitCanceled
	case errors.As(err, &usage), errors.As(err, &unsupported):
		return exitUsage
	case errors.As(err, &findings):
		return exitFindings
	case errors.As(err, &harbor):
		return exitHarbor
	case errors.As(err, &open), errors.Is(err, storage.ErrAccessDenied):
		return exitStorage
	case errors.Is(err, walker.ErrWalk), errors.Is(err, sweep.ErrWalkIncomplete):
		return exitWalk
	case errors.As(err, &guard):
		return exitGuard
	case errors.Is(err, lock.ErrLocked):
		return exitLocked
	case errors.Is(err, sweep.ErrIncomplete):
		return exitPartial
	case errors.As(err, &badPlan):
		return exitPlan
	case errors.As(err, &storagePath):
		// A storage operation that failed after its retries, outside a
		// walk or a sweep (the lock, a probe): the storage is unreachable.
		return exitStorage
	}
	return exitError
}
