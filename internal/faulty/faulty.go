// Package faulty wraps a storage.Driver and injects faults into chosen
// calls, for unit tests of what regsweep does when the filesystem or
// memory driver misbehaves the way an object store does over the network:
// transient and persistent errors, resets, timeouts, listings that fail
// part way or end early without an error, truncated reads, failed deletes,
// latency.
//
// Rules pick the calls (operation, key pattern, skip the first n, fault m
// times, a seeded probability); every injection is recorded.
//
// Test support only: it may not be imported by product code.
package faulty

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"regexp"
	"sync"
	"syscall"
	"time"

	"github.com/regsweep/regsweep/storage"
)

// Op is a driver call.
type Op string

const (
	Walk   Op = "walk"
	Stat   Op = "stat"
	Get    Op = "get"
	Put    Op = "put"
	Delete Op = "delete"
)

// Kind is a fault.
type Kind int

const (
	// Transient fails the call with an error wrapping storage.ErrTransient
	// (a 5xx or throttling answer).
	Transient Kind = iota
	// Reset fails the call with ECONNRESET.
	Reset
	// Timeout fails the call with a net.Error whose Timeout() is true.
	Timeout
	// Truncated fails a Get with io.ErrUnexpectedEOF (a body cut short) and
	// a Walk with it after After keys.
	Truncated
	// Refused fails the call with storage.ErrAccessDenied: never retried.
	Refused
	// FailAfter lets a Walk hand out After keys, then fails it with a
	// transient error.
	FailAfter
	// ShortListing ends a Walk after After keys with no error: the fault no
	// client can notice.
	ShortListing
	// ShortRead returns the first half of a Get's bytes with no error.
	ShortRead
	// Latency delays the call by Delay, then runs it.
	Latency
	// PartialDelete reports the keys of a Delete call that match Key as
	// failed transiently (the call itself succeeds), without deleting them.
	PartialDelete
)

var kindNames = map[Kind]string{Transient: "transient error", Reset: "connection reset", Timeout: "timeout",
	Truncated: "truncated body", Refused: "access denied", FailAfter: "listing failed part way",
	ShortListing: "listing ended early without error", ShortRead: "short read without error", Latency: "latency",
	PartialDelete: "keys failed in a delete batch"}

func (k Kind) String() string { return kindNames[k] }

// Rule picks calls to fault. Zero fields match everything.
type Rule struct {
	Name string
	Ops  []Op
	// Key matches the key (the prefix of a Walk; any key of a Delete).
	Key *regexp.Regexp
	// Skip lets the first Skip matching calls through.
	Skip int
	// Times is the most calls faulted; 0 means all (persistent).
	Times int
	// Probability in (0, 1) faults a matching call with that chance.
	Probability float64
	Kind        Kind
	// After is the number of keys a FailAfter, Truncated or ShortListing
	// walk hands out first.
	After int
	// Drop, with ShortListing, makes the walk silently leave out the keys
	// it matches instead of ending after After keys: a page lost in the
	// middle of a listing, or a listing shard that ends early.
	Drop  *regexp.Regexp
	Delay time.Duration
}

// Injection records one injected fault.
type Injection struct {
	Rule string
	Kind Kind
	Op   Op
	Key  string
}

// Driver is the faulty wrapper.
type Driver struct {
	storage.Driver
	mu       sync.Mutex
	rules    []*ruleState
	rng      *rand.Rand
	injected []Injection
}

type ruleState struct {
	Rule
	matched, fired int
}

// Wrap returns d with faults; probabilities draw from a generator seeded
// with seed.
func Wrap(d storage.Driver, seed uint64, rules ...Rule) *Driver {
	f := &Driver{Driver: d, rng: rand.New(rand.NewPCG(seed, seed^0x2545f4914f6cdd1d))}
	f.SetRules(rules...)
	return f
}

func (f *Driver) Unwrap() storage.Driver { return f.Driver }

// SetRules replaces the rules and resets their counters.
func (f *Driver) SetRules(rules ...Rule) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = nil
	for _, r := range rules {
		f.rules = append(f.rules, &ruleState{Rule: r})
	}
}

// Injections returns the faults injected so far.
func (f *Driver) Injections() []Injection {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Injection(nil), f.injected...)
}

func (f *Driver) pick(op Op, keys ...string) *Rule {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, rs := range f.rules {
		if !rs.matches(op, keys) {
			continue
		}
		rs.matched++
		if rs.matched <= rs.Skip || rs.Times > 0 && rs.fired >= rs.Times {
			continue
		}
		if rs.Probability > 0 && rs.Probability < 1 && f.rng.Float64() >= rs.Probability {
			continue
		}
		rs.fired++
		key := ""
		if len(keys) > 0 {
			key = keys[0]
		}
		f.injected = append(f.injected, Injection{Rule: rs.Name, Kind: rs.Kind, Op: op, Key: key})
		r := rs.Rule
		return &r
	}
	return nil
}

func (rs *ruleState) matches(op Op, keys []string) bool {
	if len(rs.Ops) > 0 {
		found := false
		for _, o := range rs.Ops {
			found = found || o == op
		}
		if !found {
			return false
		}
	}
	if rs.Key == nil {
		return true
	}
	for _, k := range keys {
		if rs.Key.MatchString(k) {
			return true
		}
	}
	return false
}

// timeoutError is what a client timeout looks like (net.Error).
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout (injected)" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// failure is the error a call-level fault returns, named like a driver's.
func (f *Driver) failure(r *Rule, op Op, key string) error {
	var err error
	switch r.Kind {
	case Reset:
		err = fmt.Errorf("read tcp: %w (injected)", syscall.ECONNRESET)
	case Timeout:
		err = timeoutError{}
	case Truncated:
		err = fmt.Errorf("reading the body: %w (injected)", io.ErrUnexpectedEOF)
	case Refused:
		err = fmt.Errorf("%w (injected)", storage.ErrAccessDenied)
	default:
		err = fmt.Errorf("%w: 503 SlowDown (injected)", storage.ErrTransient)
	}
	return &storage.PathError{Op: string(op), Driver: f.Name(), Key: key, Err: err}
}

// callFault applies a fault that replaces the whole call; it reports
// whether the call must fail with err.
func (f *Driver) callFault(ctx context.Context, r *Rule, op Op, key string) (bool, error) {
	if r == nil {
		return false, nil
	}
	switch r.Kind {
	case Latency:
		t := time.NewTimer(r.Delay)
		defer t.Stop()
		select {
		case <-t.C:
			return false, nil
		case <-ctx.Done():
			return true, ctx.Err()
		}
	case Transient, Reset, Timeout, Refused:
		return true, f.failure(r, op, key)
	case Truncated:
		if op != Walk {
			return true, f.failure(r, op, key)
		}
	}
	return false, nil
}

func (f *Driver) Walk(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	return f.WalkAfter(ctx, prefix, "", fn)
}

// WalkAfter injects faults as Walk does: a split listing is a listing.
func (f *Driver) WalkAfter(ctx context.Context, prefix, startAfter string, fn func(storage.ObjectInfo) error) error {
	r := f.pick(Walk, prefix)
	if fail, err := f.callFault(ctx, r, Walk, prefix); fail {
		return err
	}
	if r == nil || (r.Kind != FailAfter && r.Kind != ShortListing && r.Kind != Truncated) {
		return storage.WalkAfter(ctx, f.Driver, prefix, startAfter, fn)
	}
	n := 0
	err := storage.WalkAfter(ctx, f.Driver, prefix, startAfter, func(oi storage.ObjectInfo) error {
		if r.Kind == ShortListing && r.Drop != nil {
			if r.Drop.MatchString(oi.Key) {
				return nil
			}
			return fn(oi)
		}
		if n == r.After {
			return errStop
		}
		n++
		return fn(oi)
	})
	switch {
	case err != errStop:
		return err // the listing ended (or failed) before the fault
	case r.Kind == ShortListing:
		return nil
	case r.Kind == Truncated:
		return f.failure(r, Walk, prefix)
	}
	return f.failure(&Rule{Kind: Transient}, Walk, prefix)
}

var errStop = fmt.Errorf("stop")

func (f *Driver) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	if fail, err := f.callFault(ctx, f.pick(Stat, key), Stat, key); fail {
		return storage.ObjectInfo{}, err
	}
	return f.Driver.Stat(ctx, key)
}

func (f *Driver) Get(ctx context.Context, key string, max int64) ([]byte, error) {
	r := f.pick(Get, key)
	if fail, err := f.callFault(ctx, r, Get, key); fail {
		return nil, err
	}
	b, err := f.Driver.Get(ctx, key, max)
	if err == nil && r != nil && r.Kind == ShortRead {
		b = b[:len(b)/2]
	}
	return b, err
}

func (f *Driver) Put(ctx context.Context, key string, data []byte) error {
	if fail, err := f.callFault(ctx, f.pick(Put, key), Put, key); fail {
		return err
	}
	return f.Driver.Put(ctx, key, data)
}

// Capabilities are the wrapped driver's, with this driver's own listing and
// create: faults apply to split listings and to the lock's create. The
// other capabilities pass untouched.
func (f *Driver) Capabilities() storage.Capabilities {
	c := storage.PassOn(f.Driver, f)
	if c.Creator != nil {
		c.Creator = f
	}
	return c
}

// Create is Put for an absent key (the lock takes a free lock with it):
// it fails as a Put would.
func (f *Driver) Create(ctx context.Context, key string, data []byte) error {
	if fail, err := f.callFault(ctx, f.pick(Put, key), Put, key); fail {
		return err
	}
	c, ok := storage.CreatorOf(f.Driver)
	if !ok {
		return &storage.PathError{Op: "create", Driver: f.Name(), Key: key, Err: errors.New("the wrapped driver cannot create if absent")}
	}
	return c.Create(ctx, key, data)
}

func (f *Driver) Delete(ctx context.Context, keys []string) ([]storage.DeleteResult, error) {
	r := f.pick(Delete, keys...)
	if fail, err := f.callFault(ctx, r, Delete, ""); fail {
		return nil, err
	}
	if r == nil || r.Kind != PartialDelete {
		return f.Driver.Delete(ctx, keys)
	}
	var keep []string
	var failed []storage.DeleteResult
	for _, k := range keys {
		if r.Key == nil || r.Key.MatchString(k) {
			failed = append(failed, storage.DeleteResult{Key: k, Err: f.failure(&Rule{Kind: Transient}, Delete, k)})
		} else {
			keep = append(keep, k)
		}
	}
	res, err := f.Driver.Delete(ctx, keep)
	return append(res, failed...), err
}
