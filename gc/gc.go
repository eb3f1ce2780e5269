// Package gc owns regsweep's pipeline: walk the storage, mark what live
// images need, plan the rest, and execute a plan under the storage lock
// with the rechecks that keep a concurrent push safe. gc, audit and
// `sweep --plan` are flags and output around Analyze, Execute, Reviewed
// and Preview; the randomised model and the crash tests drive the same
// functions, with the same readers, caches and drivers.
//
// Harbor's database, GitLab's lockfile and a retention policy take part
// through one small interface, Participant: roots, protections, guards,
// plan items, and the claim, record and finish steps around deletion.
//
// It owns the order of the steps and the options between them. It may not
// format output (reports does), parse flags (cmd does), or know a
// storage's protocol (storage does); what is live is mark's, what a plan
// holds and how it is deleted is sweep's.
package gc

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/mark"
	"github.com/regsweep/regsweep/progress"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/sweep"
	"github.com/regsweep/regsweep/walker"
)

// Options decide what a run collects and how it reads.
type Options struct {
	DeleteUntagged    bool
	Grace             time.Duration // nothing younger is deleted
	UploadGrace       time.Duration // uploads started less than this ago stay
	MaxDeleteFraction float64       // a guard trips past this share of blobs
	// Concurrency bounds listings and reads in flight.
	Concurrency int
	// Walk tunes the walk; Concurrency, Parallel and the upload probe are
	// set from the options above.
	Walk walker.Options
	Log  *slog.Logger
	// Progress shows each stage as it runs; nil shows nothing.
	Progress progress.Reporter
	// Clock is what ages are judged by; nil is time.Now (tests set the
	// time a generated registry was written at).
	Clock func() time.Time
}

func (o *Options) fill() {
	if o.Concurrency < 1 {
		o.Concurrency = 16
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Progress == nil {
		o.Progress = progress.Nop{}
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Walk.MaxLinkSize == 0 {
		o.Walk = walker.DefaultOptions()
	}
	o.Walk.Concurrency = o.Concurrency
	o.Walk.Parallel = true
}

// Source reads manifest blobs for the mark (mark.StorageSource: verified,
// cached on local disk). One that can prefetch is filled while the walk
// lists.
type Source = mark.Source

// prefetcher is a Source that reads manifests ahead while the walk lists.
type prefetcher interface {
	Prefetch(ctx context.Context, workers int) *mark.Prefetch
	SaveCache() error
}

// Stage is a point in a run at which participants take part.
type Stage int

const (
	// Walked: the walk is complete, nothing is marked. A participant reads
	// what changed during the walk, refuses an inconsistent state, or sets
	// Analysis.Now.
	Walked Stage = iota
	// Marked: the mark is complete, nothing is planned. A participant
	// protects what the mark cannot see (Mark.KeptBlobs, KeptLayers).
	Marked
	// Planned: the plan is built and rechecked against the walk. A
	// participant adds guards, items and findings. For a reviewed plan
	// (sweep --plan) it comes again on the fresh walk before anything is
	// deleted.
	Planned
	// Executing: the lock is held and nothing is deleted yet.
	Executing
	// Executed: the sweep ended, completely or not (Analysis.Result and
	// Analysis.Err say how).
	Executed
)

// A Participant takes part in a run besides the storage: Harbor's
// database, GitLab's lockfile, a retention policy. Embed Passive for what
// it has no part in.
type Participant interface {
	// At runs at each stage: it may read and change the analysis, or
	// refuse with an error (nothing is deleted before Executing).
	At(ctx context.Context, stage Stage, a *Analysis) error
	// Roots says what is live in a repository instead of its storage tags
	// and revisions (ok false leaves the repository to them): see
	// mark.Options.Roots.
	Roots(repo string) (roots []digest.Digest, all, ok bool)
	// Check runs just before each batch of deletions and returns the
	// items still to delete (a claim, a check of rows or links). Batches
	// are checked concurrently.
	Check(ctx context.Context, phase int, batch []sweep.Item) ([]sweep.Item, error)
	// Record is told each deletion's result (nil, not-found or the error).
	Record(it sweep.Item, err error)
}

// Passive is a participant that takes no part; embed it.
type Passive struct{}

func (Passive) At(context.Context, Stage, *Analysis) error { return nil }
func (Passive) Roots(string) ([]digest.Digest, bool, bool) { return nil, false, false }
func (Passive) Check(_ context.Context, _ int, batch []sweep.Item) ([]sweep.Item, error) {
	return batch, nil
}
func (Passive) Record(sweep.Item, error) {}

// Analysis is a walk, its mark and its plan: what a dry run shows and
// Execute deletes.
type Analysis struct {
	Store   storage.Driver
	Source  Source
	Options Options
	// Now is what the plan judges ages against (a participant may set an
	// earlier time: Harbor's snapshot).
	Now       time.Time
	Started   time.Time // the run began
	WalkBegan time.Time
	Walked    time.Time // the walk ended
	Marked    time.Time // the mark ended
	Inventory *walker.Inventory
	Mark      *mark.Result
	Plan      *sweep.Plan
	// Result and Err are the sweep's, once Execute ran.
	Result *Result
	Err    error

	participants []Participant
	reviewed     bool // Plan came from a file: judged again on a fresh walk
	force        bool // Execute was told to go on past tripped guards
}

// Analyze walks store, marks what live images need and plans the rest,
// with the participants taking part. It deletes nothing; guards the plan
// trips are in Plan.Guards.
func Analyze(ctx context.Context, store storage.Driver, src Source, opts Options, participants ...Participant) (*Analysis, error) {
	opts.fill()
	participants = append([]Participant{GitLab{}}, participants...)
	a := &Analysis{Store: store, Source: src, Options: opts, Started: time.Now(), participants: participants}
	log := opts.Log
	opts.Walk.ProbeUploadsBefore = opts.Clock().Add(-opts.UploadGrace)
	log.Info("walking storage", "location", store.Location())
	a.WalkBegan = opts.Clock()
	stage := opts.Progress.Start("walk", "keys", 0)
	// Manifests are read into the cache as their revision links are
	// listed: a first run's reads overlap the listing.
	var prefetch *mark.Prefetch
	if p, ok := src.(prefetcher); ok {
		prefetch = p.Prefetch(ctx, max(opts.Concurrency/2, 1))
	}
	inv, err := walker.CollectObserving(ctx, store, opts.Walk, func(inv *walker.Inventory, e walker.Entry) {
		stage.Add(1)
		if e.Kind == walker.KindRevisionLink && !e.Corrupt {
			prefetch.Add(inv, e.Digest)
		}
	})
	prefetch.Close()
	if err != nil {
		return nil, err
	}
	stage.Done()
	a.Inventory, a.Walked, a.Now = inv, time.Now(), opts.Clock()
	if err := a.at(ctx, Walked); err != nil {
		return nil, err
	}

	log.Info("marking", "repositories", len(inv.Repositories), "blobs", inv.Blobs.Len())
	stage = opts.Progress.Start("mark", "manifests", manifestRoots(inv))
	res, err := mark.Run(ctx, inv, countingSource{src, stage}, mark.Options{DeleteUntagged: opts.DeleteUntagged, Concurrency: opts.Concurrency, Roots: a.roots()})
	if err != nil {
		return nil, err
	}
	stage.Done()
	if p, ok := src.(prefetcher); ok {
		// A run killed in its sweep keeps what it read.
		if err := p.SaveCache(); err != nil {
			log.Warn("the manifest cache was not saved", "err", err)
		}
	}
	a.Mark, a.Marked = res, time.Now()
	if err := a.at(ctx, Marked); err != nil {
		return nil, err
	}

	volume := ""
	if v, ok := storage.VolumeOf(store); ok {
		if volume, err = v.Volume(); err != nil {
			return nil, err
		}
	}
	a.Plan = sweep.Build(inv, res, sweep.StorageRef{Driver: store.Name(), Location: store.Location(), Volume: volume}, a.sweepOptions())
	// Links that stay (young ones too) keep what they need: a recheck of
	// the plan against its own walk.
	if _, _, err := a.Plan.Recheck(ctx, inv, true, res, src, opts.Concurrency, nil); err != nil {
		return nil, err
	}
	a.Plan.Guards = a.Plan.Judge(inv, res, a.sweepOptions())
	if err := a.at(ctx, Planned); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *Analysis) sweepOptions() sweep.Options {
	o := a.Options
	return sweep.Options{Now: a.Now, WalkStarted: a.WalkBegan, Grace: o.Grace, UploadGrace: o.UploadGrace,
		DeleteUntagged: o.DeleteUntagged, MaxDeleteFraction: o.MaxDeleteFraction}
}

// at runs every participant at stage.
func (a *Analysis) at(ctx context.Context, stage Stage) error {
	for _, p := range a.participants {
		if err := p.At(ctx, stage, a); err != nil {
			return err
		}
	}
	return nil
}

// roots is the participants' say over each repository's roots: the first
// that has one decides.
func (a *Analysis) roots() func(string) ([]digest.Digest, bool, bool) {
	if len(a.participants) == 0 {
		return nil
	}
	return func(repo string) ([]digest.Digest, bool, bool) {
		for _, p := range a.participants {
			if roots, all, ok := p.Roots(repo); ok {
				return roots, all, true
			}
		}
		return nil, false, false
	}
}

// GuardError is sweep's: a plan that tripped guards is not executed.
type GuardError = sweep.GuardError

// ErrNotAnalyzed is Execute of an analysis without a plan.
var ErrNotAnalyzed = errors.New("gc: nothing to execute: no plan")

// manifestRoots is how many distinct manifests the mark starts from (its
// progress total; index children and referrers can add a few).
func manifestRoots(inv *walker.Inventory) int64 {
	n := 0
	for _, r := range inv.Repositories {
		n += r.Revisions.Len()
	}
	return int64(n)
}

// countingSource counts the manifests the mark reads, and, from a source
// that says, where each came from.
type countingSource struct {
	Source
	stage progress.Stage
}

// originSource is a Source that says where a manifest came from
// (mark.BlobSource).
type originSource interface {
	ManifestFrom(ctx context.Context, d digest.Digest) ([]byte, mark.Origin, error)
}

func (c countingSource) Manifest(ctx context.Context, d digest.Digest) ([]byte, error) {
	o, ok := c.Source.(originSource)
	if !ok {
		b, err := c.Source.Manifest(ctx, d)
		c.stage.Add(1)
		return b, err
	}
	b, origin, err := o.ManifestFrom(ctx, d)
	c.stage.Add(1)
	switch origin {
	case mark.FromCache:
		c.stage.Count("from_cache", 1)
	case mark.FromPrefetch:
		c.stage.Count("prefetched", 1)
	default:
		c.stage.Count("from_storage", 1)
	}
	return b, err
}
