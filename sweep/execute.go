package sweep

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/regsweep/regsweep/lock"
	"github.com/regsweep/regsweep/storage"
)

// GuardError means the plan tripped safety guards and was not executed.
type GuardError struct{ Guards []Guard }

func (e *GuardError) Error() string {
	var parts []string
	for _, g := range e.Guards {
		parts = append(parts, g.Name+": "+g.Message)
	}
	return "refusing to delete (override with --force only if you are sure): " + strings.Join(parts, "; ")
}

// ErrIncomplete means some deletions failed; what failed is kept and a
// later run retries it.
var ErrIncomplete = errors.New("sweep incomplete")

// Result counts what a sweep did, by item kind.
type Result struct {
	Deleted    map[string]int `json:"deleted"`
	NotFound   map[string]int `json:"not_found"`
	Failed     map[string]int `json:"failed"`
	FreedBytes int64          `json:"freed_bytes"`
	Errors     []string       `json:"errors"`
}

// ExecOptions tune execution.
type ExecOptions struct {
	Force bool
	// BatchSize is how many keys go to one Delete call (the driver splits
	// further if its store needs).
	BatchSize   int
	Concurrency int
	Log         *slog.Logger
	// BeforePhase, if set, runs before each phase (tests use it to stop a
	// run between phases).
	BeforePhase func(phase int) error
}

const maxReportedErrors = 100

// Execute deletes the plan's items, phase by phase, under a held lock.
// Failures are counted and reported, never fatal to the rest: a failed
// deletion only leaves garbage for the next run.
func (p *Plan) Execute(ctx context.Context, d storage.Driver, held *lock.Held, o ExecOptions) (*Result, error) {
	if held == nil {
		return nil, errors.New("sweep needs a held lock")
	}
	if len(p.Guards) > 0 && !o.Force {
		return nil, &GuardError{Guards: p.Guards}
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 1000
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	r := &Result{Deleted: map[string]int{}, NotFound: map[string]int{}, Failed: map[string]int{}, Errors: []string{}}
	var mu sync.Mutex
	record := func(it Item, err error) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil:
			r.Deleted[it.Kind]++
			if freesBytes(it) {
				r.FreedBytes += it.Size
			}
		case storage.IsNotFound(err):
			r.NotFound[it.Kind]++
		default:
			r.Failed[it.Kind]++
			if len(r.Errors) < maxReportedErrors {
				r.Errors = append(r.Errors, fmt.Sprintf("%s %s: %v", it.Kind, it.Key, err))
			}
		}
	}
	byPhase := map[int][]Item{}
	maxPhase := 0
	for _, it := range p.Items {
		byPhase[phase[it.Kind]] = append(byPhase[phase[it.Kind]], it)
		maxPhase = max(maxPhase, phase[it.Kind])
	}
	for ph := 1; ph <= maxPhase; ph++ {
		items := byPhase[ph]
		if len(items) == 0 {
			continue
		}
		if err := ctx.Err(); err != nil {
			return r, err
		}
		if o.BeforePhase != nil {
			if err := o.BeforePhase(ph); err != nil {
				return r, err
			}
		}
		o.Log.Info("sweeping", "phase", ph, "items", len(items))
		if err := p.runPhase(ctx, d, items, o, record); err != nil {
			return r, err
		}
	}
	failed := 0
	for _, n := range r.Failed {
		failed += n
	}
	if failed > 0 {
		return r, fmt.Errorf("%w: %d deletion(s) failed (first: %s); they stay for the next run", ErrIncomplete, failed, r.Errors[0])
	}
	return r, nil
}

func (p *Plan) runPhase(ctx context.Context, d storage.Driver, items []Item, o ExecOptions, record func(Item, error)) error {
	var plain, segments, multipart, repos []Item
	for _, it := range items {
		switch it.Kind {
		case KindSegment:
			segments = append(segments, it)
		case KindMultipartUpload:
			multipart = append(multipart, it)
		case KindRepository:
			repos = append(repos, it)
		default:
			plain = append(plain, it)
		}
	}
	if err := deleteBatches(ctx, plain, o, d.Delete, record); err != nil {
		return err
	}
	if len(segments) > 0 {
		lo, ok := storage.LargeObjectsOf(d)
		if !ok {
			return fmt.Errorf("plan has Swift segments but storage %s has none", d.Name())
		}
		if err := deleteBatches(ctx, segments, o, lo.DeleteSegments, record); err != nil {
			return err
		}
	}
	if len(multipart) > 0 {
		mp, ok := storage.MultipartOf(d)
		if !ok {
			return fmt.Errorf("plan has multipart uploads but storage %s has none", d.Name())
		}
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(o.Concurrency)
		for _, it := range multipart {
			g.Go(func() error {
				record(it, mp.AbortMultipartUpload(gctx, it.Key, it.UploadID))
				return nil
			})
		}
		g.Wait()
	}
	if dr, ok := storage.DirRemoverOf(d); ok {
		for _, it := range repos {
			record(it, dr.RemoveEmptyDirs(ctx, it.Key))
		}
	} else {
		// On object stores a repository is only its keys, already gone.
		for _, it := range repos {
			record(it, nil)
		}
	}
	return ctx.Err()
}

func deleteBatches(ctx context.Context, items []Item, o ExecOptions, del func(context.Context, []string) ([]storage.DeleteResult, error), record func(Item, error)) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.Concurrency)
	for start := 0; start < len(items); start += o.BatchSize {
		batch := items[start:min(start+o.BatchSize, len(items))]
		g.Go(func() error {
			keys := make([]string, len(batch))
			for i, it := range batch {
				keys[i] = it.Key
			}
			res, err := del(gctx, keys)
			if err != nil {
				if gctx.Err() != nil {
					return gctx.Err()
				}
				for _, it := range batch {
					record(it, err)
				}
				return nil
			}
			failed := map[string]error{}
			for _, dr := range res {
				failed[dr.Key] = dr.Err
			}
			for _, it := range batch {
				record(it, failed[it.Key])
			}
			return nil
		})
	}
	return g.Wait()
}
