package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/regsweep/regsweep/lock"
	"github.com/regsweep/regsweep/mark"
	"github.com/regsweep/regsweep/reports"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/sweep"
	"github.com/regsweep/regsweep/walker"
)

type sweepOptions struct {
	planFile    string
	delete      bool
	force       bool
	maxPlanAge  time.Duration
	cacheDir    string
	format      string
	list        bool
	lockTimeout time.Duration
	// requireReadonly refuses to delete unless the registry is read-only.
	requireReadonly   bool
	maxDeleteFraction float64
}

func newSweepCommand(g *globalOptions) *cobra.Command {
	o := &sweepOptions{}
	cmd := &cobra.Command{
		Use:   "sweep --plan plan.json [--delete]",
		Short: "Execute a reviewed plan written by `gc --plan-out`",
		Long: `Execute a plan that ` + "`regsweep gc --plan-out`" + ` wrote and someone reviewed. The plan must be for
this storage (for a filesystem, the same volume) and younger than --max-plan-age, and its header
(storage, options, times, the Harbor flag) must be as gc wrote it. Just before deleting, the whole
storage is listed again: every planned key whose mtime changed or that is gone, and everything a
link created since then points to, leaves the plan, and the safety guards are judged again on that
listing (the guards written in the plan file are not trusted). Without --delete it shows what would
be deleted now.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runSweep(cmd, o, g) },
	}
	f := cmd.Flags()
	f.StringVar(&o.planFile, "plan", "", "plan file written by gc --plan-out (required)")
	f.BoolVar(&o.delete, "delete", false, "delete (the default is a dry run)")
	f.BoolVar(&o.force, "force", false, "delete even when a safety guard trips")
	f.Float64Var(&o.maxDeleteFraction, "max-delete-fraction", 0.5, "refuse to delete more than this fraction of blobs (judged on the storage as it is now)")
	f.DurationVar(&o.maxPlanAge, "max-plan-age", 24*time.Hour, "refuse plans older than this")
	f.BoolVar(&o.requireReadonly, "require-readonly", false, "with --delete, refuse (exit 6) unless the registry's config.yml (--registry-config) has storage.maintenance.readonly.enabled: true")
	f.StringVar(&o.cacheDir, "cache-dir", defaultCacheDir(), "local manifest cache")
	addFormatFlag(f, &o.format)
	f.BoolVar(&o.list, "list", false, "list every deletion")
	f.DurationVar(&o.lockTimeout, "lock-timeout", 30*time.Minute, "a lock not refreshed for this long is stale")
	return cmd
}

// planError marks a plan that cannot be executed here.
type planError struct{ msg string }

func (p planError) Error() string { return p.msg }

// planWindows are the windows a plan was made with (its rechecks use
// them again).
func planWindows(plan *sweep.Plan) []time.Duration {
	var ws []time.Duration
	for _, s := range []string{plan.Options.Grace, plan.Options.UploadGrace} {
		if w, err := time.ParseDuration(s); err == nil {
			ws = append(ws, w)
		}
	}
	return ws
}

func runSweep(cmd *cobra.Command, o *sweepOptions, g *globalOptions) error {
	if o.planFile == "" {
		return usageError{fmt.Errorf("--plan is required")}
	}
	if err := checkFormat(o.format); err != nil {
		return err
	}
	if err := checkRequireReadonly(o.requireReadonly, o.delete, g.registryConfig, os.Environ(), g.logger()); err != nil {
		return err
	}
	f, err := os.Open(o.planFile)
	if err != nil {
		return usageError{err}
	}
	plan, err := sweep.ReadPlan(f)
	f.Close()
	if err != nil {
		return planError{fmt.Sprintf("%s: %v", o.planFile, err)}
	}
	if plan.Options.Harbor {
		// Harbor's rows must change with storage, under its protocol.
		return planError{fmt.Sprintf("plan %s was made in Harbor mode: review it, then run `regsweep gc --delete --harbor-db ...` so that Harbor's database takes part", o.planFile)}
	}
	ctx := cmd.Context()
	log := g.logger()
	reqs := &storage.Requests{}
	d, _, err := g.openStorage(ctx, cmd.Flags(), !o.delete, reqs)
	if err != nil {
		return err
	}
	if plan.Storage.Location != d.Location() {
		return planError{fmt.Sprintf("plan %s is for %s, not for %s", o.planFile, plan.Storage.Location, d.Location())}
	}
	if vol, err := storageVolume(d); err != nil {
		return err
	} else if vol != plan.Storage.Volume {
		return planError{fmt.Sprintf("plan %s is for the volume %q at %s, but %q is mounted there now", o.planFile, plan.Storage.Volume, d.Location(), vol)}
	}
	if err := checkPlanAge(o.planFile, plan.CreatedAt, time.Now(), o.maxPlanAge); err != nil {
		return err
	}
	started := time.Now()
	var held *lock.Held
	if o.delete {
		var release func()
		held, ctx, release, err = acquireLock(ctx, d, o.lockTimeout, "regsweep sweep")
		if err != nil {
			return err
		}
		defer release()
		if err := checkClock(held, o.force, log, planWindows(plan)...); err != nil {
			return err
		}
	}
	opts := walker.DefaultOptions()
	opts.Concurrency = g.concurrency
	opts.Parallel = true
	src := mark.StorageSource(d, o.cacheDir, 0)
	defer closeManifestSource(src, log)
	var result *sweep.Result
	var st *sweep.RecheckStats
	var execErr error
	// The plan's own guards are not trusted: they are judged again on the
	// storage as it is now, with a mark of it.
	judge := func(ctx context.Context, fresh *walker.Inventory, p *sweep.Plan) error {
		res, err := mark.Run(ctx, fresh, src, mark.Options{DeleteUntagged: p.Options.DeleteUntagged, Concurrency: g.concurrency})
		if err != nil {
			return err
		}
		inUse, err := sweep.DatabaseInUse(ctx, d)
		if err != nil {
			return err
		}
		p.Guards = p.FreshGuards(fresh, res, sweep.Options{MaxDeleteFraction: o.maxDeleteFraction, DatabaseInUse: inUse})
		if len(p.Guards) > 0 && !o.force {
			return &sweep.GuardError{Guards: p.Guards}
		}
		return nil
	}
	if o.delete {
		log.Info("re-listing storage before sweeping", "location", d.Location())
		plan.Guards = nil // judged on the fresh walk, before anything is deleted
		result, st, execErr = plan.ExecuteChecked(ctx, d, held, sweep.CheckedOptions{Walk: opts, Manifests: mark.SourceReferences(ctx, src), BlobsToo: true, StatLinks: statLinks(d),
			Guard: judge, Exec: sweep.ExecOptions{Force: o.force, Concurrency: g.concurrency, Log: log}})
	} else {
		// A dry run shows what would go now, and what would refuse.
		fresh, err := walker.Collect(ctx, d, opts)
		if err != nil {
			return err
		}
		s := plan.Recheck(fresh, true, mark.SourceReferences(ctx, src))
		st = &s
		execErr = judge(ctx, fresh, plan)
	}
	rep := reports.BuildGC(plan, result, st, !o.delete, storageInfo(d), reqs.Snapshot(), src.Reads(), src.CacheHits(), started, time.Now())
	err = writeReport(g.stdout, o.format, rep.WriteJSON, func(w io.Writer) error { return rep.WriteText(w, o.list) })
	if err != nil {
		return err
	}
	return execErr
}

// checkPlanAge refuses a plan older than maxAge, or made more than the
// clocks' tolerance in the future (another host's clock is ahead).
func checkPlanAge(file string, created, now time.Time, maxAge time.Duration) error {
	if age := now.Sub(created); age > maxAge || age < -5*time.Minute {
		return planError{fmt.Sprintf("plan %s was made %s ago, outside --max-plan-age %s", file, age.Round(time.Second), maxAge)}
	}
	return nil
}
