package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/regsweep/regsweep/mark"
	"github.com/regsweep/regsweep/reports"
	"github.com/regsweep/regsweep/sweep"
	"github.com/regsweep/regsweep/walker"
)

// emitMetrics writes --metrics-file and pushes to --pushgateway, when set.
// A failed run still reports (last_run_success 0) and keeps the last
// success timestamp of the previous good run.
func emitMetrics(ctx context.Context, o reportOptions, run reports.Run) error {
	if o.metricsFile == "" && o.pushgateway == "" {
		return nil
	}
	var errs []error
	if o.metricsFile != "" {
		if !run.Success {
			run.PreviousLastSuccess = reports.PreviousLastSuccess(o.metricsFile, run.Command)
		}
		reg, err := run.Registry(true)
		if err == nil {
			err = reports.WriteMetricsFile(o.metricsFile, reg)
		}
		errs = append(errs, err)
	}
	if o.pushgateway != "" {
		reg, err := run.Registry(false)
		if err == nil {
			pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			err = reports.Push(pctx, o.pushgateway, o.pushJob, run.Command, reg, run.Success, &http.Client{})
			cancel()
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// emitGC completes gc's report with the summary audit shares, writes it
// (to stdout or --output) and emits the run's metrics. execErr is the
// run's outcome so far.
func emitGC(cmd *cobra.Command, g *globalOptions, format string, list bool, rep *reports.GC,
	inv *walker.Inventory, res *mark.Result, plan *sweep.Plan, execErr error) error {
	o := reportFlags(cmd)
	s, _ := reports.Summarize(inv, res, plan)
	s.SetDuration("total", rep.FinishedAt.Sub(rep.StartedAt).Seconds())
	rep.Summary = &s
	err := writeOutput(g.stdout, o.output, func(w io.Writer) error {
		return writeReport(w, format, rep.WriteJSON, func(w io.Writer) error {
			return rep.WriteTextOpts(w, reports.GCTextOptions{List: list, Top: o.top})
		})
	})
	run := reports.Run{Command: "gc", Started: rep.StartedAt, Finished: rep.FinishedAt, Success: execErr == nil && err == nil,
		Summary: &s, Requests: rep.Requests, DryRun: rep.DryRun}
	if rep.Result != nil {
		run.Result = &reports.GCResultView{Deleted: rep.Result.Deleted, Failed: rep.Result.Failed, FreedBytes: rep.Result.FreedBytes}
	}
	return errors.Join(err, emitMetrics(cmd.Context(), o, run))
}
