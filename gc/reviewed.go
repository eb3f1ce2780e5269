package gc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/sweep"
)

// ErrWrongStorage is a reviewed plan for another storage, or another
// volume at the same path.
var ErrWrongStorage = errors.New("the plan is for another storage")

// Reviewed is an analysis of a plan read from a file (gc --plan-out),
// bound to store: its location and, for a filesystem, its volume must be
// the plan's. Execute then lists everything again, marks it afresh and
// judges the guards on it before anything is deleted: nothing a plan file
// says about guards is trusted.
func Reviewed(ctx context.Context, store storage.Driver, src Source, plan *sweep.Plan, opts Options, participants ...Participant) (*Analysis, error) {
	opts.fill()
	opts.DeleteUntagged = plan.Options.DeleteUntagged
	for _, w := range []struct {
		s   string
		dst *time.Duration
	}{{plan.Options.Grace, &opts.Grace}, {plan.Options.UploadGrace, &opts.UploadGrace}} {
		if d, err := time.ParseDuration(w.s); err == nil {
			*w.dst = d
		}
	}
	if plan.Storage.Location != store.Location() {
		return nil, fmt.Errorf("%w: it is for %s, not for %s", ErrWrongStorage, plan.Storage.Location, store.Location())
	}
	volume := ""
	if v, ok := storage.VolumeOf(store); ok {
		var err error
		if volume, err = v.Volume(); err != nil {
			return nil, err
		}
	}
	if volume != plan.Storage.Volume {
		return nil, fmt.Errorf("%w: it is for the volume %q at %s, but %q is mounted there now", ErrWrongStorage, plan.Storage.Volume, store.Location(), volume)
	}
	participants = append([]Participant{GitLab{}}, participants...)
	a := &Analysis{Store: store, Source: src, Options: opts, Started: time.Now(), Now: opts.Clock(), WalkBegan: plan.WalkStartedAt,
		Plan: plan, participants: participants, reviewed: true}
	a.Plan.Guards = nil // judged on the fresh walk
	return a, nil
}

// Preview is a dry run of a reviewed plan: storage is listed again and the
// plan rechecked and judged against it, as Execute would before deleting.
// The guards that trip are in Plan.Guards, and returned as a GuardError.
func Preview(ctx context.Context, a *Analysis) (sweep.RecheckStats, error) {
	a.Result = &Result{}
	fresh, _, err := a.walk(ctx, true, 1, nil)
	if err != nil {
		return a.Result.Recheck, err
	}
	_, err = a.judge(ctx, fresh)
	var guards *GuardError
	if err != nil && !errors.As(err, &guards) {
		return a.Result.Recheck, err
	}
	st, _, rerr := a.Plan.Recheck(ctx, fresh, true, a.Mark, a.Source, a.Options.Concurrency, nil)
	if rerr != nil {
		return a.Result.Recheck, rerr
	}
	a.Result.Recheck.Add(st)
	return a.Result.Recheck, err
}
