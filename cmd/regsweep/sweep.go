package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/regsweep/regsweep/gc"
	"github.com/regsweep/regsweep/mark"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/sweep"
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
	meter, log := g.startProgress()
	defer meter.Close()
	reqs := &storage.Requests{}
	d, _, err := g.openStorage(ctx, cmd.Flags(), !o.delete, reqs)
	if err != nil {
		return err
	}
	src := mark.StorageSource(d, o.cacheDir, 0)
	defer closeManifestSource(src, log)
	a, err := gc.Reviewed(ctx, d, src, plan, gc.Options{MaxDeleteFraction: o.maxDeleteFraction, Concurrency: g.concurrency, Log: log, Progress: meter})
	if errors.Is(err, gc.ErrWrongStorage) {
		return planError{fmt.Sprintf("plan %s: %v", o.planFile, err)}
	} else if err != nil {
		return err
	}
	if err := checkPlanAge(o.planFile, plan.CreatedAt, time.Now(), o.maxPlanAge); err != nil {
		return err
	}
	var execErr error
	if o.delete {
		held, lctx, release, err := acquireLock(ctx, d, o.lockTimeout, "regsweep sweep")
		if err != nil {
			return err
		}
		defer release()
		if err := checkClock(held, o.force, log, a.Options.Grace, a.Options.UploadGrace); err != nil {
			return err
		}
		log.Info("re-listing storage before sweeping", "location", d.Location())
		_, execErr = gc.Execute(lctx, a, held, gc.ExecOptions{Force: o.force})
	} else {
		// A dry run shows what would go now, and what would refuse.
		_, execErr = gc.Preview(ctx, a)
	}
	meter.Close()
	rep := gcReport(a, !o.delete, d, reqs, src)
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
