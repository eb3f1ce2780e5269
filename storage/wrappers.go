package storage

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"

	"golang.org/x/time/rate"
	"net"
	"syscall"
	"time"
)

// ReadOnly returns a driver whose Put and Delete refuse with ErrReadOnly.
// Audit and every dry run open storage through it.
func ReadOnly(d Driver) Driver { return &readOnlyDriver{d} }

type readOnlyDriver struct{ Driver }

func (r *readOnlyDriver) Unwrap() Driver { return r.Driver }

func (r *readOnlyDriver) WalkAfter(ctx context.Context, prefix, startAfter string, fn func(ObjectInfo) error) error {
	return WalkAfter(ctx, r.Driver, prefix, startAfter, fn)
}

func (r *readOnlyDriver) Put(_ context.Context, key string, _ []byte) error {
	return &PathError{Op: "put", Driver: r.Name(), Key: key, Err: ErrReadOnly}
}

func (r *readOnlyDriver) Delete(_ context.Context, keys []string) ([]DeleteResult, error) {
	return nil, &PathError{Op: "delete", Driver: r.Name(), Err: ErrReadOnly}
}

type readOnlyMultipart struct{ MultipartUploads }

func (readOnlyMultipart) AbortMultipartUpload(_ context.Context, key, _ string) error {
	return &PathError{Op: "abort-multipart", Key: key, Err: ErrReadOnly}
}

type readOnlyLargeObjects struct{ LargeObjects }

func (readOnlyLargeObjects) DeleteSegments(context.Context, []string) ([]DeleteResult, error) {
	return nil, &PathError{Op: "delete-segments", Err: ErrReadOnly}
}

type readOnlyCreator struct{}

func (readOnlyCreator) Create(_ context.Context, key string, _ []byte) error {
	return &PathError{Op: "create", Key: key, Err: ErrReadOnly}
}

type readOnlyDirRemover struct{}

func (readOnlyDirRemover) RemoveEmptyDirs(context.Context, []string, func(string) bool) (int, error) {
	return 0, &PathError{Op: "rmdir", Err: ErrReadOnly}
}

// Limit returns a driver that runs at most n reads, writes and deletes at
// once. Listings are not counted: a Walk lasts as long as its consumer, and
// a consumer that reads while it lists (the walker reads links) would
// otherwise wait for its own listing's slot. The walker bounds its
// listings itself.
func Limit(d Driver, n int) Driver {
	if n < 1 {
		n = 1
	}
	return &limitDriver{Driver: d, slots: make(chan struct{}, n)}
}

type limitDriver struct {
	Driver
	slots chan struct{}
}

func (l *limitDriver) Unwrap() Driver { return l.Driver }

// WalkAfter passes on (a Walk takes no slot either).
func (l *limitDriver) WalkAfter(ctx context.Context, prefix, startAfter string, fn func(ObjectInfo) error) error {
	return WalkAfter(ctx, l.Driver, prefix, startAfter, fn)
}

func (l *limitDriver) acquire(ctx context.Context) error {
	select {
	case l.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *limitDriver) release() { <-l.slots }

func (l *limitDriver) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	if err := l.acquire(ctx); err != nil {
		return ObjectInfo{}, err
	}
	defer l.release()
	return l.Driver.Stat(ctx, key)
}

func (l *limitDriver) Get(ctx context.Context, key string, max int64) ([]byte, error) {
	if err := l.acquire(ctx); err != nil {
		return nil, err
	}
	defer l.release()
	return l.Driver.Get(ctx, key, max)
}

func (l *limitDriver) Put(ctx context.Context, key string, data []byte) error {
	if err := l.acquire(ctx); err != nil {
		return err
	}
	defer l.release()
	return l.Driver.Put(ctx, key, data)
}

func (l *limitDriver) Delete(ctx context.Context, keys []string) ([]DeleteResult, error) {
	if err := l.acquire(ctx); err != nil {
		return nil, err
	}
	defer l.release()
	return l.Driver.Delete(ctx, keys)
}

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
// backoff and full jitter. A retried Walk never hands fn a key twice.
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
	return &retryDriver{Driver: d, p: p}
}

type retryDriver struct {
	Driver
	p RetryPolicy
}

func (r *retryDriver) Unwrap() Driver { return r.Driver }

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

func (r *retryDriver) do(ctx context.Context, op func() error) error {
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

// Walk retries a failed listing and resumes after the last key it handed
// out, so fn never sees a key twice. Object stores list in key order; a
// listing that was not in order (a parallel filesystem walk) is not
// retried once it has handed out keys. Remembering order costs one key,
// where remembering every key would cost the whole listing.
func (r *retryDriver) Walk(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	return r.WalkAfter(ctx, prefix, "", fn)
}

func (r *retryDriver) WalkAfter(ctx context.Context, prefix, startAfter string, fn func(ObjectInfo) error) error {
	return r.listing(ctx, func(visit func(string, func() error) error) error {
		return WalkAfter(ctx, r.Driver, prefix, startAfter, func(oi ObjectInfo) error {
			return visit(oi.Key, func() error { return fn(oi) })
		})
	})
}

// listing retries list as Walk does: list calls visit once per entry,
// with the entry's sort key and the call that hands it out.
func (r *retryDriver) listing(ctx context.Context, list func(visit func(key string, deliver func() error) error) error) error {
	var last string
	delivered, inOrder := false, true
	p := r.p
	transient := p.Transient
	p.Transient = func(err error) bool {
		var u unresumable
		return !errors.As(err, &u) && transient(err)
	}
	err := (&retryDriver{Driver: r.Driver, p: p}).do(ctx, func() error {
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

func (r *retryDriver) Stat(ctx context.Context, key string) (oi ObjectInfo, err error) {
	err = r.do(ctx, func() error {
		oi, err = r.Driver.Stat(ctx, key)
		return err
	})
	return oi, err
}

func (r *retryDriver) Get(ctx context.Context, key string, max int64) (b []byte, err error) {
	err = r.do(ctx, func() error {
		b, err = r.Driver.Get(ctx, key, max)
		return err
	})
	return b, err
}

func (r *retryDriver) Put(ctx context.Context, key string, data []byte) error {
	return r.do(ctx, func() error { return r.Driver.Put(ctx, key, data) })
}

// Delete retries the call on a transient call error, then re-sends only
// the keys that failed transiently: deletes are idempotent.
func (r *retryDriver) Delete(ctx context.Context, keys []string) ([]DeleteResult, error) {
	var out []DeleteResult
	pending := keys
	for attempt := 0; ; attempt++ {
		var res []DeleteResult
		err := r.do(ctx, func() (err error) {
			res, err = r.Driver.Delete(ctx, pending)
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

// RateLimit returns a driver that starts at most perSecond calls a second
// (a Walk counts once per call, its pages are the driver's own), for stores
// that throttle (S3 answers SlowDown past a few thousand requests a second
// per prefix).
func RateLimit(d Driver, perSecond float64) Driver {
	return &rateDriver{Driver: d, lim: rate.NewLimiter(rate.Limit(perSecond), max(1, int(perSecond)))}
}

type rateDriver struct {
	Driver
	lim *rate.Limiter
}

func (r *rateDriver) Unwrap() Driver { return r.Driver }

func (r *rateDriver) Walk(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	return r.WalkAfter(ctx, prefix, "", fn)
}

func (r *rateDriver) WalkAfter(ctx context.Context, prefix, startAfter string, fn func(ObjectInfo) error) error {
	if err := r.lim.Wait(ctx); err != nil {
		return err
	}
	return WalkAfter(ctx, r.Driver, prefix, startAfter, fn)
}

func (r *rateDriver) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	if err := r.lim.Wait(ctx); err != nil {
		return ObjectInfo{}, err
	}
	return r.Driver.Stat(ctx, key)
}

func (r *rateDriver) Get(ctx context.Context, key string, max int64) ([]byte, error) {
	if err := r.lim.Wait(ctx); err != nil {
		return nil, err
	}
	return r.Driver.Get(ctx, key, max)
}

func (r *rateDriver) Put(ctx context.Context, key string, data []byte) error {
	if err := r.lim.Wait(ctx); err != nil {
		return err
	}
	return r.Driver.Put(ctx, key, data)
}

func (r *rateDriver) Delete(ctx context.Context, keys []string) ([]DeleteResult, error) {
	if err := r.lim.Wait(ctx); err != nil {
		return nil, err
	}
	return r.Driver.Delete(ctx, keys)
}

// pace is what the chain's rate-limit and slot-limit wrappers do to a
// call. Capabilities are found below those wrappers, so without it
// --rate-limit would not bound them: on Swift, one HEAD per blob
// (LargeObject) is most of a walk's requests.
type pace struct {
	lim   *rate.Limiter // nil: no rate limit
	limit *limitDriver  // nil: no slot limit
}

func (p pace) none() bool { return p.lim == nil && p.limit == nil }

// call runs op after a rate token, as rateDriver does, and, unless op is a
// listing (Limit does not count those), within a slot.
func (p pace) call(ctx context.Context, listing bool, op func() error) error {
	if p.lim != nil {
		if err := p.lim.Wait(ctx); err != nil {
			return err
		}
	}
	if p.limit != nil && !listing {
		if err := p.limit.acquire(ctx); err != nil {
			return err
		}
		defer p.limit.release()
	}
	return op()
}

// guard is what the chain's wrappers do to a call, for the capabilities,
// which are found below them: the retry policy (r, nil for none) and the
// pace.
type guard struct {
	r *retryDriver
	p pace
}

// guardOf finds the first retry, rate limit and slot limit in d's chain;
// ok is false when there is none.
func guardOf(d Driver) (g guard, ok bool) {
	for d != nil {
		switch w := d.(type) {
		case *retryDriver:
			if g.r == nil {
				g.r = w
			}
		case *rateDriver:
			if g.p.lim == nil {
				g.p.lim = w.lim
			}
		case *limitDriver:
			if g.p.limit == nil {
				g.p.limit = w
			}
		}
		u, isWrapper := d.(Unwrapper)
		if !isWrapper {
			break
		}
		d = u.Unwrap()
	}
	return g, g.r != nil || !g.p.none()
}

// do runs one request: paced once, retried within, as the wrappers are
// stacked (the rate limit outside the retry).
func (g guard) do(ctx context.Context, op func() error) error {
	return g.p.call(ctx, false, func() error {
		if g.r == nil {
			return op()
		}
		return g.r.do(ctx, op)
	})
}

// listing runs a listing: one token and no slot, retried by resuming
// after the last entry handed out (retryDriver.listing).
func (g guard) listing(ctx context.Context, list func(visit func(key string, deliver func() error) error) error) error {
	return g.p.call(ctx, true, func() error {
		if g.r == nil {
			return list(func(_ string, deliver func() error) error { return deliver() })
		}
		return g.r.listing(ctx, list)
	})
}

type guardedDirLister struct {
	DirLister
	g guard
}

func (x guardedDirLister) ListDir(ctx context.Context, prefix string, fn func(ObjectInfo, bool) error) error {
	return x.g.listing(ctx, func(visit func(string, func() error) error) error {
		return x.DirLister.ListDir(ctx, prefix, func(oi ObjectInfo, dir bool) error {
			return visit(oi.Key, func() error { return fn(oi, dir) })
		})
	})
}

type guardedMultipart struct {
	MultipartUploads
	g guard
}

func (x guardedMultipart) WalkMultipartUploads(ctx context.Context, prefix string, fn func(MultipartUpload) error) error {
	return x.g.listing(ctx, func(visit func(string, func() error) error) error {
		return x.MultipartUploads.WalkMultipartUploads(ctx, prefix, func(u MultipartUpload) error {
			return visit(u.Key+"\x00"+u.UploadID, func() error { return fn(u) })
		})
	})
}

func (x guardedMultipart) AbortMultipartUpload(ctx context.Context, key, uploadID string) error {
	return x.g.do(ctx, func() error { return x.MultipartUploads.AbortMultipartUpload(ctx, key, uploadID) })
}

type guardedCreator struct {
	Creator
	g guard
}

func (x guardedCreator) Create(ctx context.Context, key string, data []byte) error {
	return x.g.do(ctx, func() error { return x.Creator.Create(ctx, key, data) })
}

type guardedLargeObjects struct {
	LargeObjects
	g guard
}

func (x guardedLargeObjects) LargeObject(ctx context.Context, key string) (oi ObjectInfo, prefix string, err error) {
	err = x.g.do(ctx, func() error {
		oi, prefix, err = x.LargeObjects.LargeObject(ctx, key)
		return err
	})
	return oi, prefix, err
}

func (x guardedLargeObjects) WalkSegments(ctx context.Context, fn func(ObjectInfo) error) error {
	return x.g.listing(ctx, func(visit func(string, func() error) error) error {
		return x.LargeObjects.WalkSegments(ctx, func(oi ObjectInfo) error {
			return visit(oi.Key, func() error { return fn(oi) })
		})
	})
}

func (x guardedLargeObjects) DeleteSegments(ctx context.Context, names []string) (res []DeleteResult, err error) {
	err = x.g.do(ctx, func() error {
		res, err = x.LargeObjects.DeleteSegments(ctx, names)
		return err
	})
	return res, err
}

type guardedStreamer struct {
	Streamer
	g guard
}

func (x guardedStreamer) Open(ctx context.Context, key string) (rc io.ReadCloser, err error) {
	err = x.g.do(ctx, func() error {
		rc, err = x.Streamer.Open(ctx, key)
		return err
	})
	return rc, err
}
