package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/regsweep/regsweep/harbordb"
	"github.com/regsweep/regsweep/harborgc"
	"github.com/regsweep/regsweep/lock"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/sweep"
	"github.com/regsweep/regsweep/walker"
)

// harborOptions are the Harbor-mode flags of gc and audit.
type harborOptions struct {
	db      string
	redis   string
	history bool
}

func (h *harborOptions) addFlags(f *pflag.FlagSet, deleting bool) {
	f.StringVar(&h.db, "harbor-db", "", "Harbor mode: Harbor's PostgreSQL, postgres://user:pass@host:5432/registry (or harbor-core's POSTGRESQL_* env); prefer REGSWEEP_HARBOR_DB")
	if deleting {
		f.StringVar(&h.redis, "harbor-redis", "", "Harbor mode: the registry's Redis, redis://host:6379/1, whose blobs::* and repository::* keys are purged after a sweep")
		f.BoolVar(&h.history, "harbor-history", true, "Harbor mode: record a deleting run in Harbor's GC history (execution, task and job log)")
	}
}

// harborConfig resolves the database from --harbor-db or harbor-core's
// POSTGRESQL_* environment; ok is false outside Harbor mode.
func (h *harborOptions) config() (harbordb.Config, bool, error) {
	if h.db != "" {
		return harbordb.Config{URL: h.db}, true, nil
	}
	return harbordb.ConfigFromEnv(os.Getenv)
}

// harborError marks a failure of Harbor's database or cache: the run
// deleted nothing that depended on it.
type harborError struct{ err error }

func (e harborError) Error() string { return "harbor: " + e.err.Error() }
func (e harborError) Unwrap() error { return e.err }

// harborRun is an open database and its snapshot.
type harborRun struct {
	db   *harbordb.DB
	snap *harbordb.Snapshot
	live *harborgc.Liveness
}

// openHarbor connects, checks the schema and takes the snapshot. Every
// failure here comes before the storage walk, so nothing is deleted.
func openHarbor(ctx context.Context, h *harborOptions, window time.Duration, deleteUntagged bool, log *slog.Logger) (*harborRun, error) {
	cfg, ok, err := h.config()
	if err != nil {
		return nil, usageError{err}
	}
	if !ok {
		return nil, nil
	}
	db, err := harbordb.Open(ctx, cfg)
	if err != nil {
		return nil, harborError{err}
	}
	log.Info("harbor database", "url", cfg.Redacted(), "schema", db.Schema().String())
	snap, err := db.Snapshot(ctx, window)
	if err != nil {
		db.Close()
		return nil, harborError{err}
	}
	log.Info("harbor snapshot", "projects", len(snap.Projects), "artifacts", len(snap.Artifacts), "blob_rows", len(snap.Blobs), "trash", len(snap.Trash))
	return &harborRun{db: db, snap: snap, live: harborgc.NewLiveness(snap, deleteUntagged)}, nil
}

func (r *harborRun) Close() {
	if r != nil {
		r.db.Close()
	}
}

// now is the time the plan judges storage mtimes against: in Harbor mode
// the snapshot's, so that a link written after the snapshot (maybe by a
// push the snapshot does not have) is younger than the plan.
func (r *harborRun) now() time.Time {
	if r == nil {
		return time.Now()
	}
	return r.snap.Taken
}

// afterWalk reads the artifacts again, so that one pushed while the walk
// ran is a root, and refuses a database that storage shows to be behind.
func (r *harborRun) afterWalk(ctx context.Context, inv *walker.Inventory, grace time.Duration, log *slog.Logger) error {
	if r == nil {
		return nil
	}
	newer, err := r.db.Artifacts(ctx, grace)
	if err != nil {
		return harborError{err}
	}
	r.live.Refresh(newer)
	log.Info("harbor artifacts read again after the walk", "artifacts", len(newer.Artifacts))
	if err := r.live.CheckBehind(inv, grace); err != nil {
		return harborError{err}
	}
	return nil
}

// purgeCache empties the registry's blob descriptor cache after a sweep:
// stale entries would make pulls of deleted-then-re-pushed blobs fail.
func purgeCache(ctx context.Context, url string, log *slog.Logger) error {
	if url == "" {
		return nil
	}
	n, err := harbordb.PurgeRegistryCache(ctx, url)
	if err != nil {
		return harborError{fmt.Errorf("purging the registry's Redis cache: %w", err)}
	}
	log.Info("purged the registry's Redis cache", "keys", n)
	return nil
}

// executionParams are Harbor's GC parameters as its history shows them.
func executionStart(trigger string, dryRun, deleteUntagged bool, workers int, window time.Duration) harbordb.ExecutionStart {
	return harbordb.ExecutionStart{Trigger: trigger, DryRun: dryRun, DeleteUntagged: deleteUntagged, Workers: workers, TimeWindow: window}
}

// executeHarbor is a deleting gc in Harbor mode: the sweep runs inside
// Harbor's deletion protocol, the database follows, the cache is purged and
// the run is recorded in Harbor's GC history.
func executeHarbor(ctx context.Context, d storage.Driver, held *lock.Held, plan *sweep.Plan, inv *walker.Inventory, hb *harborRun,
	o *gcOptions, opts walker.Options, manifests sweep.Manifests, workers int, log *slog.Logger) (*sweep.Result, *sweep.RecheckStats, error) {
	var exec *harbordb.Execution
	if o.harbor.history && !hb.db.Schema().HasExecutionHistory() {
		log.Warn("this Harbor schema keeps GC history elsewhere (admin_job): the run is not recorded in Harbor's history", "schema", hb.db.Schema().String())
	} else if o.harbor.history {
		// The storage lock is held: a run of ours still Running was killed.
		stale, err := hb.db.EndStaleExecutions(ctx)
		if err != nil {
			return nil, nil, harborError{err}
		}
		if stale > 0 {
			log.Warn("marked GC executions left Running by a killed run as Error", "executions", stale)
		}
		exec, err = hb.db.StartExecution(ctx, executionStart("MANUAL", false, o.deleteUntagged, workers, o.grace))
		if err != nil {
			return nil, nil, harborError{err}
		}
	}
	proto := &harborgc.Protocol{DB: hb.db, Snap: hb.snap, Live: hb.live, Window: o.grace, Log: log}
	result, recheck, err := func() (*sweep.Result, *sweep.RecheckStats, error) {
		if err := proto.Prepare(ctx, inv); err != nil {
			return nil, nil, harborError{err}
		}
		result, recheck, err := plan.ExecuteChecked(ctx, d, held, sweep.CheckedOptions{Walk: opts, Manifests: manifests, StatLinks: statLinks(d), Exec: sweep.ExecOptions{
			Force: o.force, Concurrency: workers, BatchSize: o.batchSize, Log: log,
			BeforeBlobs: func(ctx context.Context, p *sweep.Plan) error {
				if err := proto.Claim(ctx, p); err != nil {
					return harborError{err}
				}
				return nil
			},
			OnItem: proto.Record,
			CheckBatch: func(ctx context.Context, phase int, batch []sweep.Item) ([]sweep.Item, error) {
				keep, err := proto.CheckBatch(ctx, phase, batch)
				if err != nil {
					return nil, harborError{err}
				}
				return keep, nil
			},
		}})
		// The database follows whatever storage really lost, also after a
		// partial sweep; it must not wait on a cancelled context.
		fctx := context.WithoutCancel(ctx)
		var ferr, perr error
		if e := proto.Finish(fctx); e != nil {
			ferr = harborError{e}
		}
		perr = purgeCache(fctx, o.harbor.redis, log)
		return result, recheck, errors.Join(err, ferr, perr)
	}()
	if exec != nil {
		status := harbordb.StatusSuccess
		if err != nil {
			status = harbordb.StatusError
		}
		herr := exec.Finish(context.WithoutCancel(ctx), status, harbordb.ExecutionResult{
			FreedSpace: proto.Stats.FreedBytes, PurgedBlobs: int64(proto.Stats.PurgedBlobs), PurgedManifests: int64(proto.Stats.PurgedManifests),
		}, proto.JobLog())
		if herr != nil {
			err = errors.Join(err, harborError{herr})
		}
	}
	return result, recheck, err
}
