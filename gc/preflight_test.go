package gc_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/regsweep/regsweep/gc"
	"github.com/regsweep/regsweep/lock"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/sweep"
)

// A deleting run refuses when this host's clock runs ahead of the
// storage's by more than a tenth of its shortest window (at least 5 s),
// with the guard clock_skew, unless --force; a clock behind only
// lengthens the windows.
func TestCheckClockRefusesAClockAhead(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range []struct {
		name          string
		storageBehind time.Duration // how far the storage's clock is behind this host's
		windows       []time.Duration
		force         bool
		refuse        bool
	}{
		{"in step", 0, []time.Duration{2 * time.Hour, 168 * time.Hour}, false, false},
		{"ahead within a tenth of the grace", 10 * time.Minute, []time.Duration{2 * time.Hour, 168 * time.Hour}, false, false},
		{"ahead beyond a tenth of the grace", 20 * time.Minute, []time.Duration{2 * time.Hour, 168 * time.Hour}, false, true},
		{"the shortest window counts", 20 * time.Minute, []time.Duration{168 * time.Hour, 2 * time.Hour}, false, true},
		{"grace 0: a few seconds only", time.Minute, []time.Duration{0, 0}, false, true},
		{"--force overrides", 20 * time.Minute, []time.Duration{2 * time.Hour}, true, false},
		{"behind only lengthens the windows", -time.Hour, []time.Duration{2 * time.Hour}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := storage.NewMemory(func() time.Time { return time.Now().Add(-tc.storageBehind) }, nil)
			held, _, err := lock.Acquire(context.Background(), d, lock.Options{Settle: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer held.Release(context.Background())
			err = gc.CheckClock(held, tc.force, quiet, tc.windows...)
			if !tc.refuse {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var guard *sweep.GuardError
			if !errors.As(err, &guard) || guard.Guards[0].Name != gc.GuardClockSkew {
				t.Fatalf("want guard %s, got %v", gc.GuardClockSkew, err)
			}
			if !strings.Contains(err.Error(), "ahead of the storage") || !strings.Contains(err.Error(), "--force") {
				t.Errorf("message does not say what and how: %v", err)
			}
		})
	}
}
