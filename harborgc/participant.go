package harborgc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/gc"
	"github.com/regsweep/regsweep/harbordb"
	"github.com/regsweep/regsweep/sweep"
)

// Options are Harbor mode's settings.
type Options struct {
	DB             harbordb.Config
	Window         time.Duration // --grace: Harbor's GC_TIME_WINDOW_HOURS
	DeleteUntagged bool
	// Redis is the registry's cache, purged after a deleting run ("" for
	// none); it must answer before a deleting run begins.
	Redis string
	// History records a deleting run in Harbor's GC history.
	History  bool
	Deleting bool
	Log      *slog.Logger
}

// Error marks a failure of Harbor's database or cache: the run deleted
// nothing that depended on it (exit 10).
type Error struct{ Err error }

func (e Error) Error() string { return "harbor: " + e.Err.Error() }
func (e Error) Unwrap() error { return e.Err }

func harborErr(err error) error {
	if err == nil {
		return nil
	}
	var he Error
	if errors.As(err, &he) {
		return err
	}
	return Error{err}
}

// Participant is Harbor mode in a gc run: liveness from the database's
// snapshot, the blob protocol around the sweep, the database, quotas,
// history and cache brought in line after it.
type Participant struct {
	o     Options
	db    *harbordb.DB
	snap  *harbordb.Snapshot
	live  *Liveness
	proto *Protocol
	exec  *harbordb.Execution
}

var _ gc.Participant = (*Participant)(nil)

// Open connects, checks the schema and takes the snapshot (and, for a
// deleting run, checks the cache answers). Every failure here comes
// before the storage walk, so nothing is deleted.
func Open(ctx context.Context, o Options) (*Participant, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	db, err := harbordb.Open(ctx, o.DB)
	if err != nil {
		return nil, Error{err}
	}
	o.Log.Info("harbor database", "url", o.DB.Redacted(), "schema", db.Schema().String())
	snap, err := db.Snapshot(ctx, o.Window)
	if err != nil {
		db.Close()
		return nil, Error{err}
	}
	o.Log.Info("harbor snapshot", "projects", len(snap.Projects), "artifacts", len(snap.Artifacts), "blob_rows", len(snap.Blobs), "trash", len(snap.Trash))
	if o.Deleting && o.Redis != "" {
		if err := harbordb.PingRegistryCache(ctx, o.Redis); err != nil {
			db.Close()
			return nil, Error{err}
		}
	}
	live := NewLiveness(snap, o.DeleteUntagged)
	return &Participant{o: o, db: db, snap: snap, live: live,
		proto: &Protocol{DB: db, Snap: snap, Live: live, Window: o.Window, Log: o.Log}}, nil
}

// Close closes the database.
func (p *Participant) Close() {
	if p != nil {
		p.db.Close()
	}
}

// Snapshot is the database as the run read it.
func (p *Participant) Snapshot() *harbordb.Snapshot { return p.snap }

// Stats are what the protocol did in the database.
func (p *Participant) Stats() Stats { return p.proto.Stats }

// Roots is the database's say over every repository.
func (p *Participant) Roots(repo string) ([]digest.Digest, bool, bool) {
	roots, all := p.live.Roots(repo)
	return roots, all, true
}

// At takes part in each stage.
func (p *Participant) At(ctx context.Context, stage gc.Stage, a *gc.Analysis) error {
	switch stage {
	case gc.Walked:
		// Ages are judged against the snapshot's time: a link written
		// after it (by a push it does not have) is younger than the plan.
		a.Now = p.snap.Taken
		newer, err := p.db.Artifacts(ctx, p.o.Window)
		if err != nil {
			return Error{err}
		}
		// An artifact pushed while the walk ran is a root.
		p.live.Refresh(newer)
		p.o.Log.Info("harbor artifacts read again after the walk", "artifacts", len(newer.Artifacts))
		if err := p.live.CheckBehind(a.Inventory, p.o.Window); err != nil {
			return Error{err}
		}
		if p.snap.Schema.Harbor1 {
			p.live.AddStorageTags(a.Inventory)
		}
	case gc.Marked:
		p.live.Protect(a.Mark)
		p.live.ProtectLinks(a.Mark, a.Inventory)
	case gc.Planned:
		a.Plan.Options.Harbor = true
		if g := p.live.Guard(a.Inventory); g != nil {
			a.Plan.Guards = append(a.Plan.Guards, *g)
		}
	case gc.Executing:
		return p.begin(ctx, a)
	case gc.Executed:
		return p.finish(ctx, a)
	}
	return nil
}

// begin records the run in Harbor's history and prepares the database:
// stuck blobs, untagged artifacts to the trash, stale project_blob rows.
func (p *Participant) begin(ctx context.Context, a *gc.Analysis) error {
	log := p.o.Log
	switch {
	case p.o.History && !p.db.Schema().HasExecutionHistory():
		log.Warn("this Harbor schema keeps GC history elsewhere (admin_job): the run is not recorded in Harbor's history", "schema", p.db.Schema().String())
	case p.o.History:
		// The storage lock is held: a run of ours still Running was killed.
		stale, err := p.db.EndStaleExecutions(ctx)
		if err != nil {
			return Error{err}
		}
		if stale > 0 {
			log.Warn("marked GC executions left Running by a killed run as Error", "executions", stale)
		}
		p.exec, err = p.db.StartExecution(ctx, harbordb.ExecutionStart{Trigger: "MANUAL", DeleteUntagged: p.o.DeleteUntagged,
			Workers: a.Options.Concurrency, TimeWindow: p.o.Window})
		if err != nil {
			return Error{err}
		}
	}
	return harborErr(p.proto.Prepare(ctx, a.Inventory))
}

// finish brings the database in line with what storage really lost, also
// after a partial sweep, purges the cache and ends the history record.
func (p *Participant) finish(ctx context.Context, a *gc.Analysis) error {
	err := harborErr(p.proto.Finish(ctx))
	if p.o.Redis != "" {
		n, perr := harbordb.PurgeRegistryCache(ctx, p.o.Redis)
		if perr != nil {
			err = errors.Join(err, Error{fmt.Errorf("purging the registry's Redis cache: %w", perr)})
		} else {
			p.o.Log.Info("purged the registry's Redis cache", "keys", n)
		}
	}
	if p.exec != nil {
		status := harbordb.StatusSuccess
		if err != nil || a.Err != nil {
			status = harbordb.StatusError
		}
		st := p.proto.Stats
		herr := p.exec.Finish(ctx, status, harbordb.ExecutionResult{FreedSpace: st.FreedBytes, PurgedBlobs: int64(st.PurgedBlobs),
			PurgedManifests: int64(st.PurgedManifests)}, p.proto.JobLog())
		err = errors.Join(err, harborErr(herr))
	}
	return err
}

// Check asks the database about each batch just before it is deleted:
// links whose artifact it has now, or whose blob row a push touched, stay;
// blobs are claimed (and those a push touched or registered stay).
func (p *Participant) Check(ctx context.Context, phase int, batch []sweep.Item) ([]sweep.Item, error) {
	batch, err := p.proto.CheckBatch(ctx, phase, batch)
	if err != nil {
		return nil, Error{err}
	}
	if phase == sweep.PhaseOf(sweep.KindBlob) && len(batch) > 0 {
		if batch, err = p.proto.Claim(ctx, batch); err != nil {
			return nil, Error{err}
		}
	}
	return batch, nil
}

// Record notes each deletion's result for Finish.
func (p *Participant) Record(it sweep.Item, err error) { p.proto.Record(it, err) }
