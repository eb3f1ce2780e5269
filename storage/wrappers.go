package storage

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"syscall"
	"time"

	"golang.org/x/time/rate"
)

// A wrapper is a driver whose every call, plain or through a capability,
// goes through one behaviour: ReadOnly refuses writes, Limit holds a slot,
// RateLimit waits for a token, Retry retries. The calls are described by
// what they do, so one adapter per capability serves every behaviour.

// call says what a request does, for the behaviour and its errors.
type call struct {
	op    string // as errors name it: "get", "put", "abort-multipart", ...
	key   string
	write bool // it changes storage
}

// listFunc runs a listing, handing each entry to visit with its sort key
// and the function that delivers it to the caller.
type listFunc func(visit func(key string, deliver func() error) error) error

// behaviour is what a wrapper does to the calls it passes on.
type behaviour interface {
	// do runs one request.
	do(ctx context.Context, c call, op func() error) error
	// list runs one listing.
	list(ctx context.Context, list listFunc) error
	// deleteKeys runs a batched delete through del.
	deleteKeys(ctx context.Context, c call, keys []string, del func(context.Context, []string) ([]DeleteResult, error)) ([]DeleteResult, error)
}

// wrapper is a Driver with a behaviour.
type wrapper struct {
	Driver
	b behaviour
}

var (
	_ Capable     = (*wrapper)(nil)
	_ AfterWalker = (*wrapper)(nil)
)

func wrap(d Driver, b behaviour) Driver { return &wrapper{Driver: d, b: b} }

func (w *wrapper) Unwrap() Driver { return w.Driver }

func (w *wrapper) Walk(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	return w.WalkAfter(ctx, prefix, "", fn)
}

// WalkAfter lists as Walk does; it is the AfterWalker the wrapper offers
// when the wrapped driver has one.
func (w *wrapper) WalkAfter(ctx context.Context, prefix, startAfter string, fn func(ObjectInfo) error) error {
	return w.b.list(ctx, func(visit func(string, func() error) error) error {
		return WalkAfter(ctx, w.Driver, prefix, startAfter, func(oi ObjectInfo) error {
			return visit(oi.Key, func() error { return fn(oi) })
		})
	})
}

func (w *wrapper) Stat(ctx context.Context, key string) (oi ObjectInfo, err error) {
	err = w.b.do(ctx, call{op: "stat", key: key}, func() error {
		oi, err = w.Driver.Stat(ctx, key)
		return err
	})
	return oi, err
}

func (w *wrapper) Get(ctx context.Context, key string, max int64) (b []byte, err error) {
	err = w.b.do(ctx, call{op: "get", key: key}, func() error {
		b, err = w.Driver.Get(ctx, key, max)
		return err
	})
	return b, err
}

func (w *wrapper) Put(ctx context.Context, key string, data []byte) error {
	return w.b.do(ctx, call{op: "put", key: key, write: true}, func() error { return w.Driver.Put(ctx, key, data) })
}

func (w *wrapper) Delete(ctx context.Context, keys []string) ([]DeleteResult, error) {
	return w.b.deleteKeys(ctx, call{op: "delete", write: true}, keys, w.Driver.Delete)
}

// Capabilities passes on each capability of the wrapped driver through
// the behaviour. A Volume names the storage and makes no request.
func (w *wrapper) Capabilities() Capabilities {
	in := CapabilitiesOf(w.Driver)
	out := Capabilities{Volumer: in.Volumer}
	if in.AfterWalker != nil {
		out.AfterWalker = w
	}
	if in.DirLister != nil {
		out.DirLister = dirLister{in.DirLister, w.b}
	}
	if in.MultipartUploads != nil {
		out.MultipartUploads = multipart{in.MultipartUploads, w.b}
	}
	if in.LargeObjects != nil {
		out.LargeObjects = largeObjects{in.LargeObjects, w.b}
	}
	if in.DirRemover != nil {
		out.DirRemover = dirRemover{in.DirRemover, w.b}
	}
	if in.Creator != nil {
		out.Creator = creator{in.Creator, w.b}
	}
	if in.Streamer != nil {
		out.Streamer = streamer{in.Streamer, w.b}
	}
	return out
}

type dirLister struct {
	c DirLister
	b behaviour
}

func (x dirLister) ListDir(ctx context.Context, prefix string, fn func(ObjectInfo, bool) error) error {
	return x.b.list(ctx, func(visit func(string, func() error) error) error {
		return x.c.ListDir(ctx, prefix, func(oi ObjectInfo, dir bool) error {
			return visit(oi.Key, func() error { return fn(oi, dir) })
		})
	})
}

type multipart struct {
	c MultipartUploads
	b behaviour
}

func (x multipart) WalkMultipartUploads(ctx context.Context, prefix string, fn func(MultipartUpload) error) error {
	return x.b.list(ctx, func(visit func(string, func() error) error) error {
		return x.c.WalkMultipartUploads(ctx, prefix, func(u MultipartUpload) error {
			return visit(u.Key+"\x00"+u.UploadID, func() error { return fn(u) })
		})
	})
}

func (x multipart) AbortMultipartUpload(ctx context.Context, key, uploadID string) error {
	return x.b.do(ctx, call{op: "abort-multipart", key: key, write: true}, func() error { return x.c.AbortMultipartUpload(ctx, key, uploadID) })
}

type largeObjects struct {
	c LargeObjects
	b behaviour
}

func (x largeObjects) LargeObject(ctx context.Context, key string) (oi ObjectInfo, prefix string, err error) {
	err = x.b.do(ctx, call{op: "head", key: key}, func() error {
		oi, prefix, err = x.c.LargeObject(ctx, key)
		return err
	})
	return oi, prefix, err
}

func (x largeObjects) WalkSegments(ctx context.Context, fn func(ObjectInfo) error) error {
	return x.b.list(ctx, func(visit func(string, func() error) error) error {
		return x.c.WalkSegments(ctx, func(oi ObjectInfo) error {
			return visit(oi.Key, func() error { return fn(oi) })
		})
	})
}

func (x largeObjects) DeleteSegments(ctx context.Context, names []string) ([]DeleteResult, error) {
	return x.b.deleteKeys(ctx, call{op: "delete-segments", write: true}, names, x.c.DeleteSegments)
}

type dirRemover struct {
	c DirRemover
	b behaviour
}

func (x dirRemover) RemoveEmptyDirs(ctx context.Context, keys []string, keep func(string) bool) (removed int, err error) {
	err = x.b.do(ctx, call{op: "rmdir", write: true}, func() error {
		n, err := x.c.RemoveEmptyDirs(ctx, keys, keep)
		removed += n // a retry removes what the failed attempt left
		return err
	})
	return removed, err
}

type creator struct {
	c Creator
	b behaviour
}

func (x creator) Create(ctx context.Context, key string, data []byte) error {
	return x.b.do(ctx, call{op: "create", key: key, write: true}, func() error { return x.c.Create(ctx, key, data) })
}

type streamer struct {
	c Streamer
	b behaviour
}

func (x streamer) Open(ctx context.Context, key string) (rc io.ReadCloser, err error) {
	err = x.b.do(ctx, call{op: "get", key: key}, func() error {
		rc, err = x.c.Open(ctx, key)
		return err
	})
	return rc, err
}

// passBehaviour does nothing to a listing; behaviours embed it, or call
// it, for what they leave alone.
type passBehaviour struct{}

func (passBehaviour) list(_ context.Context, list listFunc) error {
	return list(func(_ string, deliver func() error) error { return deliver() })
}

// ---------------------------------------------------------------- read-only

// ReadOnly returns a driver whose writes refuse with ErrReadOnly, its
// capabilities' too (aborting an upload, deleting segments, creating a
// key, removing a directory). Audit and every dry run open storage
// through it.
func ReadOnly(d Driver) Driver { return wrap(d, readOnly{name: d.Name()}) }

type readOnly struct {
	passBehaviour
	name string
}

func (r readOnly) do(ctx context.Context, c call, op func() error) error {
	if c.write {
		return &PathError{Op: c.op, Driver: r.name, Key: c.key, Err: ErrReadOnly}
	}
	return op()
}

func (r readOnly) deleteKeys(_ context.Context, c call, _ []string, _ func(context.Context, []string) ([]DeleteResult, error)) ([]DeleteResult, error) {
	return nil, &PathError{Op: c.op, Driver: r.name, Err: ErrReadOnly}
}

// -------------------------------------------------------------------- slots

// Limit returns a driver that runs at most n reads, writes and deletes at
// once. Listings are not counted: a Walk lasts as long as its consumer, and
// a consumer that reads while it lists (the walker reads links) would
// otherwise wait for its own listing's slot. The walker bounds its
// listings itself.
func Limit(d Driver, n int) Driver {
	return wrap(d, slots(make(chan struct{}, max(n, 1))))
}

type slots chan struct{}

func (s slots) do(ctx context.Context, _ call, op func() error) error {
	select {
	case s <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s }()
	return op()
}

func (slots) list(ctx context.Context, list listFunc) error {
	return passBehaviour{}.list(ctx, list)
}

func (s slots) deleteKeys(ctx context.Context, c call, keys []string, del func(context.Context, []string) ([]DeleteResult, error)) (res []DeleteResult, err error) {
	err = s.do(ctx, c, func() error {
		res, err = del(ctx, keys)
		return err
	})
	return res, err
}

// ---------------------------------------------------------------- rate limit

// RateLimit returns a driver that starts at most perSecond calls a second
// (a listing counts once per call, its pages are the driver's own), for
// stores that throttle (S3 answers SlowDown past a few thousand requests a
// second per prefix).
func RateLimit(d Driver, perSecond float64) Driver {
	return wrap(d, paced(rate.NewLimiter(rate.Limit(perSecond), max(1, int(perSecond))).Wait))
}

// paced waits for its turn before each call.
type paced func(ctx context.Context) error

func (p paced) do(ctx context.Context, _ call, op func() error) error {
	if err := p(ctx); err != nil {
		return err
	}
	return op()
}

func (p paced) list(ctx context.Context, list listFunc) error {
	if err := p(ctx); err != nil {
		return err
	}
	return passBehaviour{}.list(ctx, list)
}

func (p paced) deleteKeys(ctx context.Context, c call, keys []string, del func(context.Context, []string) ([]DeleteResult, error)) (res []DeleteResult, err error) {
	err = p.do(ctx, c, func() error {
		res, err = del(ctx, keys)
		return err
	})
	return res, err
}

// --------------------------------------------------------------------- retry

// RetryPolicy says how often and how long to retry transient failures.
type RetryPolicy struct {
	Attempts int           // total tries, including the first
	Base     time.Duration // first backoff; doubles each try
	Max      time.Duration // backoff ceiling
	// Transient decides whether an error is worth another try. Nil means
	// IsTransient.
	Transient func(error) bool
	// Sleep waits; tests replace it. Nil means a context-aware timer.
	Sleep func(context.Context, time.Duration) error
}

// DefaultRetry retries throttling, 5xx and resets for about a minute.
func DefaultRetry() RetryPolicy {
	return RetryPolicy{Attempts: 8, Base: 200 * time.Millisecond, Max: 15 * time.Second}
}

// ErrTransient marks errors a driver knows to be temporary (throttling,
// 5xx). Drivers wrap it; IsTransient recognises it and network resets.
var ErrTransient = errors.New("temporary storage failure")

// IsTransient reports whether err is worth retrying.
func IsTransient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	// A connection closed before (EOF) or during (unexpected EOF) a
	// response is a dropped connection, not an answer.
	if errors.Is(err, ErrTransient) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Retry returns a driver that retries transient failures with exponential
// backoff and full jitter. A retried listing never hands fn a key twice.
func Retry(d Driver, p RetryPolicy) Driver {
	if p.Attempts < 1 {
		p.Attempts = 1
	}
	if p.Transient == nil {
		p.Transient = IsTransient
	}
	if p.Base <= 0 {
		p.Base = 200 * time.Millisecond
	}
	if p.Max < p.Base {
		p.Max = max(p.Base, 15*time.Second)
	}
	if p.Sleep == nil {
		p.Sleep = sleepCtx
	}
	return wrap(d, retry{p})
}

type retry struct{ p RetryPolicy }

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r retry) do(ctx context.Context, _ call, op func() error) error {
	var err error
	for attempt := 0; attempt < r.p.Attempts; attempt++ {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		if err = op(); err == nil || !r.p.Transient(err) {
			return err
		}
		if attempt == r.p.Attempts-1 {
			break
		}
		backoff := r.p.Base << attempt
		if backoff > r.p.Max || backoff <= 0 {
			backoff = r.p.Max
		}
		if sleepErr := r.p.Sleep(ctx, rand.N(backoff)+1); sleepErr != nil {
			return sleepErr
		}
	}
	return err
}

// callbackError marks an error returned by the caller's fn, which is never
// retried.
type callbackError struct{ err error }

func (c callbackError) Error() string { return c.err.Error() }

// unresumable marks a listing that failed after handing out keys in no
// particular order: a retry could not tell which keys it already gave.
type unresumable struct{ err error }

func (u unresumable) Error() string { return u.err.Error() }
func (u unresumable) Unwrap() error { return u.err }

// list retries a failed listing and resumes after the last entry it handed
// out, so fn never sees an entry twice. Object stores list in key order; a
// listing that was not in order (a parallel filesystem walk) is not
// retried once it has handed out entries. Remembering order costs one key,
// where remembering every key would cost the whole listing.
func (r retry) list(ctx context.Context, list listFunc) error {
	var last string
	delivered, inOrder := false, true
	p := r.p
	transient := p.Transient
	p.Transient = func(err error) bool {
		var u unresumable
		return !errors.As(err, &u) && transient(err)
	}
	err := retry{p}.do(ctx, call{}, func() error {
		resumeAfter, resuming := last, delivered
		err := list(func(key string, deliver func() error) error {
			if resuming && key <= resumeAfter {
				return nil
			}
			if delivered && key <= last {
				inOrder = false
			}
			delivered, last = true, key
			if err := deliver(); err != nil {
				return callbackError{err}
			}
			return nil
		})
		if err != nil && delivered && !inOrder {
			return unresumable{err}
		}
		return err
	})
	var cb callbackError
	if errors.As(err, &cb) {
		return cb.err
	}
	var u unresumable
	if errors.As(err, &u) {
		return u.err
	}
	return err
}

// deleteKeys retries the call on a transient call error, then re-sends
// only the keys that failed transiently: deletes are idempotent.
func (r retry) deleteKeys(ctx context.Context, c call, keys []string, del func(context.Context, []string) ([]DeleteResult, error)) ([]DeleteResult, error) {
	var out []DeleteResult
	pending := keys
	for attempt := 0; ; attempt++ {
		var res []DeleteResult
		err := r.do(ctx, c, func() (err error) {
			res, err = del(ctx, pending)
			return err
		})
		if err != nil {
			return out, err
		}
		var again []string
		for _, dr := range res {
			if dr.Err != nil && r.p.Transient(dr.Err) && attempt < r.p.Attempts-1 {
				again = append(again, dr.Key)
				continue
			}
			out = append(out, dr)
		}
		if len(again) == 0 {
			return out, nil
		}
		pending = again
		if err := r.p.Sleep(ctx, r.p.Base<<min(attempt, 10)); err != nil {
			return out, err
		}
	}
}
