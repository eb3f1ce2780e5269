package sweep

import (
	"context"
	"log/slog"

	"github.com/regsweep/regsweep/lock"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/walker"
)

// CheckedOptions are what ExecuteChecked needs besides the plan.
type CheckedOptions struct {
	// Walk lists storage for the rechecks; RepositoriesOnly is set per
	// recheck.
	Walk walker.Options
	// Manifests answers the rechecks' questions about manifests.
	Manifests Manifests
	// BlobsToo re-lists the blobs too in the first recheck: a reviewed
	// plan may be hours old. The recheck before the blobs always lists
	// only the repository tree.
	BlobsToo bool
	// AfterLinks, if set, runs once the links are gone, before the recheck
	// that precedes the blobs (tests land a push there).
	AfterLinks func(ctx context.Context) error
	Exec       ExecOptions
}

// ExecuteChecked runs a plan the way every deleting command does, and the
// only way tests should: it proves dangling items still dangle, re-lists
// storage and rechecks the plan just before deleting, proves the
// repositories still to be removed whole are empty, and rechecks again
// after the links are gone, before the first blob (then Exec.BeforeBlobs
// runs). The stats add up both rechecks.
func (p *Plan) ExecuteChecked(ctx context.Context, d storage.Driver, held *lock.Held, o CheckedOptions) (*Result, *RecheckStats, error) {
	log := o.Exec.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := p.VerifyDangling(ctx, d); err != nil {
		return nil, nil, err
	}
	total := &RecheckStats{}
	recheck := func(ctx context.Context, p *Plan, blobs bool) error {
		wo := o.Walk
		wo.RepositoriesOnly = !blobs
		fresh, err := walker.Collect(ctx, d, wo)
		if err != nil {
			return err
		}
		if g := WalkGuards(fresh); len(g) > 0 && !o.Exec.Force {
			return &GuardError{Guards: g}
		}
		st := p.Recheck(fresh, blobs, o.Manifests)
		total.Dropped += st.Dropped
		total.Gone += st.Gone
		total.Changed += st.Changed
		total.Protected += st.Protected
		total.BlobsChecked = total.BlobsChecked || st.BlobsChecked
		log.Info("rechecked the plan against storage", "dropped", st.Dropped, "blobs_checked", blobs)
		return nil
	}
	if err := recheck(ctx, p, o.BlobsToo); err != nil {
		return nil, total, err
	}
	// After the recheck, which drops a repository that a push has filled
	// since the plan: what is left to remove whole must be empty, or the
	// walks missed keys.
	if err := p.VerifyEmptyRepositories(ctx, d); err != nil {
		return nil, total, err
	}
	exec := o.Exec
	then := exec.BeforeBlobs
	exec.BeforeBlobs = func(ctx context.Context, p *Plan) error {
		if o.AfterLinks != nil {
			if err := o.AfterLinks(ctx); err != nil {
				return err
			}
		}
		if err := recheck(ctx, p, false); err != nil || then == nil {
			return err
		}
		return then(ctx, p)
	}
	result, err := p.Execute(ctx, d, held, exec)
	return result, total, err
}
