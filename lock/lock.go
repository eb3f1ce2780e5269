// Package lock makes one regsweep run the only one deleting from a storage.
//
// The lock is a JSON object outside docker/registry/v2/ (so no registry
// tool sees it as registry data). A free lock is taken with a
// create-if-absent (storage.Creator), so of two runs that start at once
// only one writes it; a stale one is overwritten. Either way the taker then
// waits for the store to settle and reads the lock back: whoever's token
// is there holds it (this also covers a store that ignores the create's
// condition). A lock is stale when it has not been refreshed for the
// timeout, or at once when its holder's process is gone on this host.
//
// It owns the lock object and its protocol. It may not touch anything
// under docker/registry/v2/.
package lock

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/regsweep/regsweep/storage"
)

// Key is where the lock lives, relative to the driver root.
const Key = "regsweep/lock.json"

// Info is the lock object's content.
type Info struct {
	Token       string    `json:"token"`
	Hostname    string    `json:"hostname"`
	PID         int       `json:"pid"`
	Command     string    `json:"command"`
	StartedAt   time.Time `json:"started_at"`
	RefreshedAt time.Time `json:"refreshed_at"`
	// Timeout is the holder's staleness timeout: a taker with a shorter
	// one still waits this long.
	Timeout time.Duration `json:"timeout"`
}

// ErrLocked means another run holds the lock.
var ErrLocked = errors.New("storage is locked by another regsweep run")

// LockedError says who holds the lock.
type LockedError struct{ Holder Info }

func (e *LockedError) Error() string {
	return fmt.Sprintf("%v: lock %s held by pid %d on %s since %s (refreshed %s); wait for it, or run `regsweep unlock` if that run is gone",
		ErrLocked, Key, e.Holder.PID, e.Holder.Hostname, e.Holder.StartedAt.Format(time.RFC3339), e.Holder.RefreshedAt.Format(time.RFC3339))
}

func (e *LockedError) Unwrap() error { return ErrLocked }

// Options tune the lock; zero values take the defaults.
type Options struct {
	// Timeout after which an unrefreshed lock is stale (default 30m).
	Timeout time.Duration
	// Settle is how long to wait before reading a written lock back
	// (default 2s), for stores whose reads lag their writes.
	Settle time.Duration
	// Now and ProcessAlive are seams for tests.
	Now          func() time.Time
	ProcessAlive func(pid int) bool
	Hostname     string
	PID          int
	Command      string
}

func (o *Options) defaults() {
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Minute
	}
	if o.Settle < 0 {
		o.Settle = 0
	} else if o.Settle == 0 {
		o.Settle = 2 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ProcessAlive == nil {
		o.ProcessAlive = processAlive
	}
	if o.Hostname == "" {
		o.Hostname, _ = os.Hostname()
	}
	if o.PID == 0 {
		o.PID = os.Getpid()
	}
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Held is a lock this process holds. Only Acquire makes one, so code that
// needs a *Held can only run under the lock.
type Held struct {
	d      storage.Driver
	info   Info
	opts   Options
	cancel context.CancelCauseFunc
	done   chan struct{}
	// ahead is how far this host's clock ran ahead of the storage's when
	// the lock was written (negative: behind).
	ahead time.Duration
}

// Read returns the current lock, or storage.ErrNotFound.
func Read(ctx context.Context, d storage.Driver) (Info, error) {
	b, err := d.Get(ctx, Key, 64<<10)
	if err != nil {
		return Info{}, err
	}
	var info Info
	if err := json.Unmarshal(b, &info); err != nil {
		return Info{}, fmt.Errorf("lock %s is not valid JSON: %w", Key, err)
	}
	return info, nil
}

// Stale reports whether a lock may be taken over.
func (o Options) stale(info Info) bool {
	if o.Now().Sub(info.RefreshedAt) > max(o.Timeout, info.Timeout) {
		return true
	}
	return info.Hostname == o.Hostname && info.PID != o.PID && !o.ProcessAlive(info.PID)
}

// Acquire takes the lock, or fails with a *LockedError. The returned
// context is cancelled if the lock is lost (a refresh fails or another run
// took it over); work under the lock must use it.
func Acquire(ctx context.Context, d storage.Driver, opts Options) (*Held, context.Context, error) {
	opts.defaults()
	existing, err := Read(ctx, d)
	free := storage.IsNotFound(err)
	switch {
	case free:
	case err != nil:
		// An unreadable lock might be someone's: refuse rather than guess.
		return nil, nil, fmt.Errorf("reading lock %s: %w", Key, err)
	case !opts.stale(existing):
		return nil, nil, &LockedError{Holder: existing}
	}
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return nil, nil, err
	}
	now := opts.Now().UTC()
	h := &Held{d: d, opts: opts, done: make(chan struct{}),
		info: Info{Token: hex.EncodeToString(tok), Hostname: opts.Hostname, PID: opts.PID, Command: opts.Command, StartedAt: now, RefreshedAt: now, Timeout: opts.Timeout}}
	before := opts.Now()
	if err := h.take(ctx, free); err != nil {
		return nil, nil, err
	}
	after := opts.Now()
	if err := sleep(ctx, opts.Settle); err != nil {
		return nil, nil, err
	}
	back, err := Read(ctx, d)
	if err != nil {
		return nil, nil, fmt.Errorf("reading back lock %s: %w", Key, err)
	}
	if back.Token != h.info.Token {
		return nil, nil, &LockedError{Holder: back}
	}
	// The store stamped the lock between before and after by its own
	// clock: outside that span, the clocks disagree.
	st, err := d.Stat(ctx, Key)
	if err != nil {
		// Held, but of no use: leave no lock for the next run to wait out.
		h.removeIfOurs(context.WithoutCancel(ctx))
		return nil, nil, fmt.Errorf("reading the time of lock %s: %w", Key, err)
	}
	if stamped := st.ModTime; stamped.Before(before) {
		h.ahead = before.Sub(stamped)
	} else if stamped.After(after) {
		h.ahead = -stamped.Sub(after)
	}
	lctx, cancel := context.WithCancelCause(ctx)
	h.cancel = cancel
	go h.refresh(lctx)
	return h, lctx, nil
}

// take writes the lock: a free one only if it is still free.
func (h *Held) take(ctx context.Context, free bool) error {
	c, ok := storage.CreatorOf(h.d)
	if !free || !ok {
		if err := h.write(ctx); err != nil {
			return fmt.Errorf("writing lock %s: %w", Key, err)
		}
		return nil
	}
	b, err := h.encode()
	if err != nil {
		return err
	}
	err = c.Create(ctx, Key, b)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, storage.ErrAccessDenied), ctx.Err() != nil:
		return fmt.Errorf("writing lock %s: %w", Key, err)
	case !errors.Is(err, storage.ErrExists):
		// A store that does not take the condition (an S3 clone that
		// answers NotImplemented) gets the plain write, as before there
		// was a create: the read-back still decides.
		if werr := h.write(ctx); werr != nil {
			return fmt.Errorf("writing lock %s: %w (a create-if-absent failed first: %v)", Key, werr, err)
		}
		return nil
	}
	// Someone created it since it was read, or a retry of this create
	// found its own first attempt: the token tells.
	cur, rerr := Read(ctx, h.d)
	if rerr != nil {
		return fmt.Errorf("reading lock %s after another run created it: %w", Key, rerr)
	}
	if cur.Token != h.info.Token {
		return &LockedError{Holder: cur}
	}
	return nil
}

func (h *Held) write(ctx context.Context) error {
	b, err := h.encode()
	if err != nil {
		return err
	}
	return h.d.Put(ctx, Key, b)
}

func (h *Held) encode() ([]byte, error) { return json.MarshalIndent(h.info, "", "  ") }

// ErrLost is the cause of a lock context cancelled because the lock could
// not be kept.
var ErrLost = errors.New("lock lost")

func (h *Held) refresh(ctx context.Context) {
	defer close(h.done)
	t := time.NewTicker(h.opts.Timeout / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur, err := Read(ctx, h.d)
		if err == nil && cur.Token != h.info.Token {
			h.cancel(fmt.Errorf("%w: taken over by pid %d on %s", ErrLost, cur.PID, cur.Hostname))
			return
		}
		h.info.RefreshedAt = h.opts.Now().UTC()
		if err := h.write(ctx); err != nil && ctx.Err() == nil {
			h.cancel(fmt.Errorf("%w: refreshing failed: %v", ErrLost, err))
			return
		}
	}
}

// ClockAhead is how far this host's clock ran ahead of the storage's when
// the lock was written, negative when behind. Every window compares the
// storage's mtimes with this host's clock, so a clock ahead shortens them
// all by as much. S3 stamps whole seconds: a second of it is resolution.
func (h *Held) ClockAhead() time.Duration { return h.ahead }

// Info is what the held lock says.
func (h *Held) Info() Info { return h.info }

// Release stops refreshing and removes the lock if it is still ours.
func (h *Held) Release(ctx context.Context) error {
	h.cancel(errors.New("released"))
	<-h.done
	return h.removeIfOurs(ctx)
}

// removeIfOurs deletes the lock if it still holds this run's token.
func (h *Held) removeIfOurs(ctx context.Context) error {
	cur, err := Read(ctx, h.d)
	if storage.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if cur.Token != h.info.Token {
		return nil
	}
	return Remove(ctx, h.d)
}

// Remove deletes whatever lock is there (`regsweep unlock`).
func Remove(ctx context.Context, d storage.Driver) error {
	res, err := d.Delete(ctx, []string{Key})
	if err != nil {
		return err
	}
	for _, r := range res {
		if r.Err != nil && !storage.IsNotFound(r.Err) {
			return r.Err
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
