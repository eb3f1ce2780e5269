package main

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/regsweep/regsweep/harborgc"
	"github.com/regsweep/regsweep/sweep"
	"github.com/regsweep/regsweep/walker"
)

// A run that fails in several ways exits with the most urgent code, in the
// order docs/exit-codes.md gives. The errors are joined as gc.Execute joins
// the sweep's error with its participants' (errors.Join).
func TestExitCodePrecedence(t *testing.T) {
	partial := fmt.Errorf("%w: 1 deletion(s) failed (first: blob k: boom); the run stopped after that phase, the next run retries", sweep.ErrIncomplete)
	dbSide := harborgc.Error{Err: errors.New("finishing the sweep: connection reset")}
	walk := fmt.Errorf("listing: %w", walker.ErrWalk)
	guard := &sweep.GuardError{Guards: []sweep.Guard{{Name: "delete_fraction"}}}
	cases := []struct {
		name string
		err  error
		want int
	}{
		{"a partial sweep", partial, exitPartial},
		{"a database failure", dbSide, exitHarbor},
		{"a partial sweep whose database side failed too", errors.Join(partial, dbSide), exitHarbor},
		{"the same, joined the other way", errors.Join(dbSide, partial), exitHarbor},
		{"a recheck walk that failed, then the database side", errors.Join(walk, dbSide), exitHarbor},
		{"a guard at the recheck, then the database side", errors.Join(guard, dbSide), exitHarbor},
		{"interrupted, then the database side", errors.Join(context.Canceled, dbSide), exitCanceled},
		{"a recheck walk that failed", walk, exitWalk},
	}
	for _, c := range cases {
		if got := exitCode(c.err); got != c.want {
			t.Errorf("%s: exit %d, want %d", c.name, got, c.want)
		}
	}
}
