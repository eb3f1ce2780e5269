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

// racingStore lets a rival run take the free lock between this run's read
// and its write: the moment a write-then-read-back lock loses, when the
// rival reads back before this run writes over it.
type racingStore struct {
	*storage.Memory
	rival func()
}

func (r *racingStore) Get(ctx context.Context, key string, max int64) ([]byte, error) {
	b, err := r.Memory.Get(ctx, key, max)
	if key == Key && r.rival != nil {
		rival := r.rival
		r.rival = nil
		rival()
	}
	return b, err
}

func TestFreeLockTakenByARivalMeanwhileRefuses(t *testing.T) {
	ctx := context.Background()
	alive := func(int) bool { return true }
	d := &racingStore{Memory: storage.NewMemory(nil, nil)}
	var rival *Held
	d.rival = func() {
		var err error
		if rival, _, err = Acquire(ctx, d.Memory, opts("b", 2, time.Now, alive)); err != nil {
			t.Fatalf("rival acquire: %v", err)
		}
	}
	_, _, err := Acquire(ctx, d, opts("a", 1, time.Now, alive))
	var le *LockedError
	if !errors.As(err, &le) || le.Holder.PID != 2 {
		t.Fatalf("acquire racing a rival: want the rival's LockedError, got %v", err)
	}
	if cur, err := Read(ctx, d); err != nil || cur.Token != rival.Info().Token {
		t.Fatalf("the rival's lock was overwritten: %+v %v", cur, err)
	}
	rival.Release(ctx)
}

// landedTwice is a store whose first create lands but reports a lost
// answer, so the retry finds the key: what a retried request sees.
type landedTwice struct{ *storage.Memory }

func (l landedTwice) Create(ctx context.Context, key string, data []byte) error {
	if err := l.Memory.Create(ctx, key, data); err != nil {
		return err
	}
	return l.Memory.Create(ctx, key, data)
}

func TestCreateThatFindsItsOwnLockHoldsIt(t *testing.T) {
	ctx := context.Background()
	d := landedTwice{storage.NewMemory(nil, nil)}
	h, _, err := Acquire(ctx, d, opts("a", 1, time.Now, func(int) bool { return true }))
	if err != nil {
		t.Fatalf("acquire whose create found its own lock: %v", err)
	}
	h.Release(ctx)
}

func TestClockAheadIsMeasuredOnTheLocksWrite(t *testing.T) {
	ctx := context.Background()
	for _, storageOffset := range []time.Duration{-10 * time.Minute, 0, 3 * time.Minute} {
		d := storage.NewMemory(func() time.Time { return time.Now().Add(storageOffset) }, nil)
		h, _, err := Acquire(ctx, d, opts("a", 1, time.Now, func(int) bool { return true }))
		if err != nil {
			t.Fatal(err)
		}
		// This host is ahead by -storageOffset, to within the call's time.
		if got, want := h.ClockAhead(), -storageOffset; got < want-time.Second || got > want+time.Second {
			t.Errorf("storage clock offset %s: ClockAhead %s, want about %s", storageOffset, got, want)
		}
		h.Release(ctx)
	}
}

// refusesCondition is a store that rejects If-None-Match (NotImplemented):
// the lock falls back to the plain write and read-back.
type refusesCondition struct{ *storage.Memory }

func (refusesCondition) Create(_ context.Context, key string, _ []byte) error {
	return &storage.PathError{Op: "create", Driver: "memory", Key: key, Err: errors.New("501 NotImplemented: If-None-Match")}
}

func TestStoreThatRefusesTheConditionStillLocks(t *testing.T) {
	ctx := context.Background()
	alive := func(int) bool { return true }
	d := refusesCondition{storage.NewMemory(nil, nil)}
	h, _, err := Acquire(ctx, d, opts("a", 1, time.Now, alive))
	if err != nil {
		t.Fatalf("acquire on a store without conditional writes: %v", err)
	}
	if _, _, err := Acquire(ctx, d, opts("b", 2, time.Now, alive)); !errors.Is(err, ErrLocked) {
		t.Fatalf("second acquire: want ErrLocked, got %v", err)
	}
	h.Release(ctx)
}

// statFails is a store whose lock can be written and read back, but not
// stat'ed.
type statFails struct{ *storage.Memory }

func (statFails) Stat(_ context.Context, key string) (storage.ObjectInfo, error) {
	return storage.ObjectInfo{}, &storage.PathError{Op: "stat", Driver: "memory", Key: key, Err: errors.New("503 SlowDown")}
}

func TestAcquireThatFailsLeavesNoLock(t *testing.T) {
	ctx := context.Background()
	d := statFails{storage.NewMemory(nil, nil)}
	if _, _, err := Acquire(ctx, d, opts("a", 1, time.Now, func(int) bool { return true })); err == nil {
		t.Fatal("acquire without the lock's time succeeded")
	}
	if _, err := Read(ctx, d); !storage.IsNotFound(err) {
		t.Fatalf("a failed acquire left its lock: %v", err)
	}
}
