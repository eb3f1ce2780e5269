package lock

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/regsweep/regsweep/storage"
)

func opts(host string, pid int, now func() time.Time, alive func(int) bool) Options {
	return Options{Timeout: time.Minute, Settle: -1, Now: now, ProcessAlive: alive, Hostname: host, PID: pid, Command: "gc"}
}

func TestSecondAcquireRefusesWithLock(t *testing.T) {
	d := storage.NewMemory(nil, nil)
	ctx := context.Background()
	now := time.Now
	alive := func(int) bool { return true }
	h, lctx, err := Acquire(ctx, d, opts("a", 1, now, alive))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = Acquire(ctx, d, opts("b", 2, now, alive))
	var le *LockedError
	if !errors.As(err, &le) || !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "lock") || le.Holder.PID != 1 {
		t.Fatalf("second acquire: %v", err)
	}
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if lctx.Err() == nil {
		t.Error("lock context should end on release")
	}
	if _, err := Read(ctx, d); !storage.IsNotFound(err) {
		t.Errorf("lock still present after release: %v", err)
	}
	if _, _, err := Acquire(ctx, d, opts("b", 2, now, alive)); err != nil {
		t.Fatalf("acquire after release: %v", err)
	}
}

func TestStaleLockIsTakenOverOnlyAfterTimeout(t *testing.T) {
	d := storage.NewMemory(nil, nil)
	ctx := context.Background()
	clock := time.Now()
	now := func() time.Time { return clock }
	alive := func(int) bool { return true }
	if _, _, err := Acquire(ctx, d, opts("a", 1, now, alive)); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(59 * time.Second)
	if _, _, err := Acquire(ctx, d, opts("b", 2, now, alive)); !errors.Is(err, ErrLocked) {
		t.Fatalf("before timeout: %v", err)
	}
	clock = clock.Add(2 * time.Second)
	if _, _, err := Acquire(ctx, d, opts("b", 2, now, alive)); err != nil {
		t.Fatalf("after timeout: %v", err)
	}
}

func TestDeadHolderOnSameHostIsStale(t *testing.T) {
	d := storage.NewMemory(nil, nil)
	ctx := context.Background()
	if _, _, err := Acquire(ctx, d, opts("h", 1, time.Now, func(int) bool { return true })); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Acquire(ctx, d, opts("h", 2, time.Now, func(int) bool { return true })); !errors.Is(err, ErrLocked) {
		t.Fatalf("live holder: %v", err)
	}
	if _, _, err := Acquire(ctx, d, opts("h", 2, time.Now, func(pid int) bool { return pid != 1 })); err != nil {
		t.Fatalf("dead holder on the same host: %v", err)
	}
	// On another host a dead-looking pid proves nothing.
	if _, _, err := Acquire(ctx, d, opts("other", 3, time.Now, func(int) bool { return false })); !errors.Is(err, ErrLocked) {
		t.Fatalf("holder on another host: %v", err)
	}
}

func TestLostLockCancelsContext(t *testing.T) {
	d := storage.NewMemory(nil, nil)
	ctx := context.Background()
	o := opts("a", 1, time.Now, func(int) bool { return true })
	o.Timeout = 30 * time.Millisecond
	_, lctx, err := Acquire(ctx, d, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Put(ctx, Key, []byte(`{"token":"someone-else","pid":9,"hostname":"x"}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lctx.Done():
		if !errors.Is(context.Cause(lctx), ErrLost) {
			t.Errorf("cause: %v", context.Cause(lctx))
		}
	case <-time.After(2 * time.Second):
		t.Fatal("lock context not cancelled after the lock was taken over")
	}
}

func TestUnreadableLockRefuses(t *testing.T) {
	d := storage.NewMemory(nil, nil)
	if err := d.Put(context.Background(), Key, []byte("not json")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Acquire(context.Background(), d, opts("a", 1, time.Now, func(int) bool { return true })); err == nil {
		t.Fatal("a corrupt lock must not be taken over silently")
	}
}
