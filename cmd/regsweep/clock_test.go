package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/regsweep/regsweep/lock"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/sweep"
)

// A deleting run whose clock is too far ahead of the storage's exits 6
// like the other guards (gc's TestCheckClockRefusesAClockAhead has the
// tolerances).
func TestClockSkewExitsLikeAGuard(t *testing.T) {
	d := storage.NewMemory(func() time.Time { return time.Now().Add(-20 * time.Minute) }, nil)
	held, _, err := lock.Acquire(context.Background(), d, lock.Options{Settle: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release(context.Background())
	err = checkClock(held, false, slog.New(slog.NewTextHandler(io.Discard, nil)), 2*time.Hour, 168*time.Hour)
	var guard *sweep.GuardError
	if !errors.As(err, &guard) || exitCode(err) != exitGuard {
		t.Fatalf("want a guard and exit %d, got %v (exit %d)", exitGuard, err, exitCode(err))
	}
}
