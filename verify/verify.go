// Package verify hashes stored blobs and compares them with their
// digests, and reports each blob whose content hashes to another digest as
// a finding (finding.DigestMismatch). It owns the hashing; it only reads,
// and may not decide what a mismatch means for a gc.
package verify

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/regsweep/regsweep/finding"
	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/storage"
)

// Options bound the work.
type Options struct {
	Concurrency int
	// BytesPerSecond bounds the bandwidth of all readers together (0: no
	// bound), so a verify can run beside a busy registry.
	BytesPerSecond float64
}

// Result is the outcome for one blob: Actual differs from Digest for a
// corrupt blob.
type Result struct {
	Digest digest.Digest
	Key    string
	Actual digest.Digest
	Bytes  int64
}

// Finding is the result's finding, when the blob's content does not match
// its digest.
func (r Result) Finding() (finding.Finding, bool) {
	if r.Actual == r.Digest {
		return finding.Finding{}, false
	}
	return finding.Finding{Kind: finding.DigestMismatch, Digest: r.Digest, Key: r.Key, Size: r.Bytes,
		Explanation: fmt.Sprintf("content hashes to %s", r.Actual)}, true
}

// Mismatches hashes every digest's blob, as Blobs does, and returns the
// finding of each whose content does not match its digest. hashed, when
// not nil, is told the bytes of each blob hashed.
func Mismatches(ctx context.Context, d storage.Driver, digests []digest.Digest, o Options, hashed func(bytes int64)) ([]finding.Finding, error) {
	var out []finding.Finding
	err := Blobs(ctx, d, digests, o, func(r Result) error {
		if hashed != nil {
			hashed(r.Bytes)
		}
		if f, ok := r.Finding(); ok {
			out = append(out, f)
		}
		return nil
	})
	return out, err
}

// ErrNoStreaming means the store cannot stream objects.
var ErrNoStreaming = errors.New("storage cannot stream objects")

const chunk = 256 << 10

// Blobs hashes every digest's blob and calls fn with each result, from one
// goroutine at a time. A blob that cannot be read is an error of the whole
// verify, never a pass.
func Blobs(ctx context.Context, d storage.Driver, digests []digest.Digest, o Options, fn func(Result) error) error {
	st, ok := storage.StreamerOf(d)
	if !ok {
		return fmt.Errorf("%s: %w", d.Name(), ErrNoStreaming)
	}
	var lim *rate.Limiter
	if o.BytesPerSecond > 0 {
		lim = rate.NewLimiter(rate.Limit(o.BytesPerSecond), max(chunk, int(o.BytesPerSecond)))
	}
	results := make(chan Result)
	g, gctx := errgroup.WithContext(ctx)
	work := make(chan digest.Digest)
	g.Go(func() error {
		defer close(work)
		for _, dg := range digests {
			select {
			case work <- dg:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	workers, wctx := errgroup.WithContext(gctx)
	for range max(o.Concurrency, 1) {
		workers.Go(func() error {
			buf := make([]byte, chunk)
			for dg := range work {
				r, err := hashBlob(wctx, st, dg, lim, buf)
				if err != nil {
					return err
				}
				select {
				case results <- r:
				case <-wctx.Done():
					return wctx.Err()
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		err := workers.Wait()
		close(results)
		return err
	})
	var fnErr error
	for r := range results {
		if fnErr == nil {
			fnErr = fn(r)
		}
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return fnErr
}

func hashBlob(ctx context.Context, st storage.Streamer, dg digest.Digest, lim *rate.Limiter, buf []byte) (Result, error) {
	key, err := layout.Path(layout.BlobData{Digest: dg})
	if err != nil {
		return Result{}, err
	}
	rc, err := st.Open(ctx, key)
	if err != nil {
		return Result{}, fmt.Errorf("verifying %s: %w", key, err)
	}
	defer rc.Close()
	h := dg.Algorithm().Digester()
	var n int64
	for {
		k, rerr := rc.Read(buf)
		if k > 0 {
			if lim != nil {
				if err := lim.WaitN(ctx, k); err != nil {
					return Result{}, err
				}
			}
			h.Hash().Write(buf[:k])
			n += int64(k)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return Result{}, fmt.Errorf("verifying %s: %w", key, rerr)
		}
	}
	return Result{Digest: dg, Key: key, Actual: h.Digest(), Bytes: n}, nil
}
