package main

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/regsweep/regsweep/harbordb"
	"github.com/regsweep/regsweep/lock"
	"github.com/regsweep/regsweep/mark"
	"github.com/regsweep/regsweep/reports"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/sweep"
	"github.com/regsweep/regsweep/walker"
)

type gcOptions struct {
	delete            bool
	deleteUntagged    bool
	force             bool
	grace             time.Duration
	uploadGrace       time.Duration
	maxDeleteFraction float64
	planOut           string
	cacheDir          string
	format            string
	list              bool
	lockTimeout       time.Duration
	batchSize         int
	requireReadonly   bool
	harbor            harborOptions
}

func newGCCommand(g *globalOptions) *cobra.Command {
	o := &gcOptions{}
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Mark what live images need and sweep the rest (dry run unless --delete)",
		Long: `Walk the storage, mark every blob reachable from a live manifest, and plan the deletion
of everything else: unreferenced blobs, untagged manifests (with --delete-untagged), unused
layer links, dangling links, stale uploads and multipart uploads, orphan Swift segments and
repositories left empty. Nothing younger than --grace is touched.

Without --delete this is a dry run: it prints the plan, writes nothing to storage and exits 0.
With --delete it takes the storage lock, re-lists the repository tree just before deleting
(anything linked meanwhile leaves the plan) and deletes in an order that leaves only garbage if
it is cut off: tag and revision links, layer links, blobs, segments, uploads, repositories.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runGC(cmd, o, g) },
	}
	f := cmd.Flags()
	f.BoolVar(&o.delete, "delete", false, "delete (the default is a dry run)")
	f.BoolVar(&o.deleteUntagged, "delete-untagged", false, "treat manifests no tag reaches (through indexes and referrers) as garbage")
	f.BoolVar(&o.force, "force", false, "delete even when a safety guard trips")
	f.DurationVar(&o.grace, "grace", 2*time.Hour, "keep everything younger than this (by storage mtime)")
	f.DurationVar(&o.uploadGrace, "upload-grace", 168*time.Hour, "keep uploads started less than this ago")
	f.Float64Var(&o.maxDeleteFraction, "max-delete-fraction", 0.5, "refuse to delete more than this fraction of blobs")
	f.StringVar(&o.planOut, "plan-out", "", "write the plan as JSON to this file (mode 0600)")
	f.StringVar(&o.cacheDir, "cache-dir", defaultCacheDir(), "local manifest cache (by digest, verified on read); empty disables it")
	addFormatFlag(f, &o.format)
	addReportFlags(cmd) // --output, --metrics-file, --pushgateway, --pushgateway-job, --top (output.go)
	f.BoolVar(&o.list, "list", false, "list every planned deletion")
	f.DurationVar(&o.lockTimeout, "lock-timeout", 30*time.Minute, "a lock not refreshed for this long is stale")
	f.IntVar(&o.batchSize, "delete-batch-size", 1000, "keys per delete request (S3 allows at most 1000)")
	f.BoolVar(&o.requireReadonly, "require-readonly", false, "with --delete, refuse (exit 6) unless the registry's config.yml (--registry-config) has storage.maintenance.readonly.enabled: true")
	o.harbor.addFlags(f, true)
	return cmd
}

func runGC(cmd *cobra.Command, o *gcOptions, g *globalOptions) error {
	if err := checkFormat(o.format); err != nil {
		return err
	}
	if o.grace < 0 || o.uploadGrace < 0 {
		return usageError{errors.New("--grace and --upload-grace cannot be negative")}
	}
	if err := checkRequireReadonly(o.requireReadonly, o.delete, g.registryConfig, os.Environ(), g.logger()); err != nil {
		return err
	}
	ctx := cmd.Context()
	log := g.logger()
	reqs := &storage.Requests{}
	// A dry run opens the storage read-only: it cannot write or delete.
	d, _, err := g.openStorage(ctx, cmd.Flags(), !o.delete, reqs)
	if err != nil {
		return err
	}
	started := time.Now()
	// Harbor's database first: if it cannot be read, nothing is walked,
	// let alone deleted.
	hb, err := openHarbor(ctx, &o.harbor, o.grace, o.deleteUntagged, log)
	if err != nil {
		return err
	}
	defer hb.Close()
	if hb != nil && o.delete && o.harbor.redis != "" {
		if err := harbordb.PingRegistryCache(ctx, o.harbor.redis); err != nil {
			return harborError{err}
		}
	}
	var held *lock.Held
	if o.delete {
		var release func()
		held, ctx, release, err = acquireLock(ctx, d, o.lockTimeout, "regsweep gc")
		if err != nil {
			return err
		}
		defer release()
		if err := checkClock(held, o.force, log, o.grace, o.uploadGrace); err != nil {
			return err
		}
	}

	opts := walker.DefaultOptions()
	opts.Concurrency = g.concurrency
	opts.ProbeUploadsBefore = time.Now().Add(-o.uploadGrace)
	opts.Parallel = true
	log.Info("walking storage", "location", d.Location())
	walked := time.Now()
	src := mark.StorageSource(d, o.cacheDir, 0)
	defer closeManifestSource(src, log)
	// Manifests are read into the cache as their revision links are
	// listed: a first run's reads overlap the listing.
	prefetch := src.Prefetch(ctx, g.concurrency/2)
	inv, err := walker.CollectObserving(ctx, d, opts, func(inv *walker.Inventory, e walker.Entry) {
		if e.Kind == walker.KindRevisionLink && !e.Corrupt {
			prefetch.Add(inv, e.Digest)
		}
	})
	prefetch.Close()
	if err != nil {
		return err
	}
	if err := hb.afterWalk(ctx, inv, o.grace, log); err != nil {
		return err
	}
	log.Info("marking", "repositories", len(inv.Repositories), "blobs", inv.Blobs.Len())
	markOpts := mark.Options{DeleteUntagged: o.deleteUntagged, Concurrency: g.concurrency}
	if hb != nil {
		if hb.snap.Schema.Harbor1 {
			hb.live.AddStorageTags(inv)
		}
		markOpts.Roots = hb.live.Roots
	}
	res, err := mark.Run(ctx, inv, src, markOpts)
	if err != nil {
		return err
	}
	saveManifestCache(src, log)
	if hb != nil {
		hb.live.Protect(res)
		hb.live.ProtectLinks(res, inv)
	}
	g.writeHeapProfile()
	inUse, err := sweep.DatabaseInUse(ctx, d)
	if err != nil {
		return err
	}
	volume, err := storageVolume(d)
	if err != nil {
		return err
	}
	manifests := res.Manifests(ctx, src)
	plan := sweep.Build(inv, res, sweep.StorageRef{Driver: d.Name(), Location: d.Location(), Volume: volume}, sweep.Options{
		Now: hb.now(), WalkStarted: walked, Grace: o.grace, UploadGrace: o.uploadGrace, DeleteUntagged: o.deleteUntagged,
		MaxDeleteFraction: o.maxDeleteFraction, DatabaseInUse: inUse,
	}, manifests)

	plan.Options.Harbor = hb != nil
	if hb != nil {
		if g := hb.live.Guard(inv); g != nil {
			plan.Guards = append(plan.Guards, *g)
		}
	}
	var result *sweep.Result
	var recheck *sweep.RecheckStats
	var execErr error
	if len(plan.Guards) > 0 && !o.force {
		// A dry run says so too: the real run would refuse.
		execErr = &sweep.GuardError{Guards: plan.Guards}
	} else if o.delete && hb == nil {
		result, recheck, execErr = plan.ExecuteChecked(ctx, d, held, sweep.CheckedOptions{Walk: opts, Manifests: manifests, StatLinks: statLinks(d),
			Exec: sweep.ExecOptions{Force: o.force, Concurrency: g.concurrency, BatchSize: o.batchSize, Log: log}})
	} else if o.delete {
		result, recheck, execErr = executeHarbor(ctx, d, held, plan, inv, hb, o, opts, manifests, g.concurrency, log)
	}
	res.ReleaseReferences() // the plan is built and run; reports need no manifest
	if o.planOut != "" {
		if err := writePlan(o.planOut, plan); err != nil {
			return err
		}
	}
	rep := reports.BuildGC(plan, result, recheck, !o.delete, storageInfo(d), reqs.Snapshot(), src.Reads(), src.CacheHits(), started, time.Now())
	err = emitGC(cmd, g, o.format, o.list, rep, inv, res, plan, execErr) // summary, --output, metrics (metrics.go)
	if err != nil {
		return err
	}
	return execErr
}

func writePlan(path string, plan *sweep.Plan) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	// An existing file keeps its mode through O_TRUNC: a plan names every
	// key to delete, so it is made private whatever it was.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if err := plan.WriteJSON(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// acquireLock takes the storage lock for a deleting command. The returned
// context ends if the lock is lost; release gives the lock back.
func acquireLock(ctx context.Context, d storage.Driver, timeout time.Duration, command string) (*lock.Held, context.Context, func(), error) {
	opts := lock.Options{Timeout: timeout, Command: command}
	if d.Name() == "filesystem" {
		// A local filesystem reads its own writes: no need to let the
		// store settle before reading the lock back.
		opts.Settle = 10 * time.Millisecond
	}
	held, lctx, err := lock.Acquire(ctx, d, opts)
	if err != nil {
		return nil, nil, nil, err
	}
	return held, lctx, func() { held.Release(context.WithoutCancel(ctx)) }, nil
}

// statLinks says whether a link is stat'ed just before it is deleted: on a
// filesystem a stat is cheap, and Swift's listings may lag its writes.
func statLinks(d storage.Driver) bool { return d.Name() == "filesystem" || d.Name() == "swift" }

// storageVolume is the volume a plan is bound to ("" where the location
// says it all).
func storageVolume(d storage.Driver) (string, error) {
	v, ok := storage.VolumeOf(d)
	if !ok {
		return "", nil
	}
	return v.Volume()
}
