package main

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/regsweep/regsweep/gc"
	"github.com/regsweep/regsweep/lock"
	"github.com/regsweep/regsweep/mark"
	"github.com/regsweep/regsweep/reports"
	"github.com/regsweep/regsweep/retention"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/sweep"
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
	policy            string
	explain           bool
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
	f.Float64Var(&o.maxDeleteFraction, "max-delete-fraction", 0.5, "refuse to delete more than this fraction of blobs (with --policy, also of tags); 0 disables the check")
	f.StringVar(&o.planOut, "plan-out", "", "write the plan as JSON to this file (mode 0600)")
	f.StringVar(&o.cacheDir, "cache-dir", defaultCacheDir(), "local manifest cache (by digest, verified on read); empty disables it")
	addFormatFlag(f, &o.format)
	addReportFlags(cmd) // --output, --metrics-file, --pushgateway, --pushgateway-job, --top (output.go)
	f.BoolVar(&o.list, "list", false, "list every planned deletion")
	f.DurationVar(&o.lockTimeout, "lock-timeout", 30*time.Minute, "a lock not refreshed for this long is stale")
	f.IntVar(&o.batchSize, "delete-batch-size", 1000, "keys per delete request (S3 allows at most 1000)")
	f.StringVar(&o.policy, "policy", "", "a retention policy file (docs/retention.md): delete the tags it does not keep, and what they free, in the same plan")
	f.BoolVar(&o.explain, "explain", false, "with --policy, show the decision on every tag of every repository and the clause that made it")
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
	policy, err := readPolicy(o.policy, o.explain)
	if err != nil {
		return err
	}
	if policy != nil {
		// Refused before the storage or the database is opened.
		if _, harbor, err := o.harbor.config(); err != nil {
			return err
		} else if harbor {
			return usageError{errors.New("--policy is for a plain registry: in Harbor mode, Harbor's database decides what is live; use Harbor's own tag retention rules (Project > Policy > Tag Retention), then run gc")}
		}
	}
	ctx := cmd.Context()
	meter, log := g.startProgress()
	defer meter.Close()
	reqs := &storage.Requests{}
	// A dry run opens the storage read-only: it cannot write or delete.
	d, _, err := g.openStorage(ctx, cmd.Flags(), !o.delete, reqs)
	if err != nil {
		return err
	}
	// Harbor's database first: if it cannot be read, nothing is walked,
	// let alone deleted.
	hb, err := openHarbor(ctx, &o.harbor, o.grace, o.deleteUntagged, o.delete, log)
	if err != nil {
		return err
	}
	defer hb.Close()
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
	src := mark.StorageSource(d, o.cacheDir, 0)
	defer closeManifestSource(src, log)
	parts := participants(hb)
	if policy != nil {
		parts = append(parts, policy)
	}
	a, err := gc.Analyze(ctx, d, src, gc.Options{DeleteUntagged: o.deleteUntagged, Grace: o.grace, UploadGrace: o.uploadGrace,
		MaxDeleteFraction: o.maxDeleteFraction, Concurrency: g.concurrency, Log: log, Progress: meter}, parts...)
	if err != nil {
		return err
	}
	g.writeHeapProfile()
	var execErr error
	switch {
	case len(a.Plan.Guards) > 0 && !o.force:
		// A dry run says so too: the real run would refuse.
		execErr = &sweep.GuardError{Guards: a.Plan.Guards}
	case o.delete:
		_, execErr = gc.Execute(ctx, a, held, gc.ExecOptions{Force: o.force, BatchSize: o.batchSize})
	}
	a.Mark.ReleaseReferences() // the plan is built and run; reports need no manifest
	if o.planOut != "" {
		if err := writePlan(o.planOut, a.Plan); err != nil {
			return err
		}
	}
	meter.Close() // the live line is gone before the report is written
	rep := gcReport(a, !o.delete, d, reqs, src)
	if o.explain {
		rep.Retention = policy.Decisions
	}
	if err := emitGC(cmd, g, o.format, o.list, rep, a.Inventory, a.Mark, a.Plan, execErr); err != nil { // summary, --output, metrics (metrics.go)
		return err
	}
	return execErr
}

// gcReport is the report of a gc or sweep run.
func gcReport(a *gc.Analysis, dryRun bool, d storage.Driver, reqs *storage.Requests, src *mark.BlobSource) *reports.GC {
	var result *sweep.Result
	var recheck *sweep.RecheckStats
	if a.Result != nil {
		result, recheck = a.Result.Sweep, &a.Result.Recheck
	}
	rep := reports.BuildGC(a.Plan, result, recheck, dryRun, storageInfo(d), reqs.Snapshot(), src.Reads(), src.CacheHits(), a.Started, time.Now())
	rep.SetManifestSources(src.Counts())
	return rep
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

// readPolicy reads --policy into its participant (nil without one).
func readPolicy(file string, explain bool) (*retention.Participant, error) {
	if file == "" {
		if explain {
			return nil, usageError{errors.New("--explain explains a retention policy: give --policy FILE")}
		}
		return nil, nil
	}
	p, err := loadPolicy(file)
	if err != nil {
		return nil, err
	}
	return retention.NewParticipant(p), nil
}
