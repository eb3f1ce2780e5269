package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"github.com/regsweep/regsweep/finding"
	"github.com/regsweep/regsweep/gc"
	"github.com/regsweep/regsweep/mark"
	"github.com/regsweep/regsweep/reports"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/verify"
)

type auditOptions struct {
	format         string
	failOn         string
	deleteUntagged bool
	grace          time.Duration
	uploadGrace    time.Duration
	cacheDir       string
	verify         bool
	verifyRate     float64
	harbor         harborOptions
}

func newAuditCommand(g *globalOptions) *cobra.Command {
	o := &auditOptions{}
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Report what is broken and what can be freed, without changing anything",
		Long: `Walk and mark the storage read-only (no lock, nothing written to storage) and report
findings, each with its kind, repository, digest, key, size and an explanation:
broken ones (dangling links, manifests that reference missing blobs or children,
unparseable manifests, corrupt link files, keys that fit no layout) and reclaimable
ones (what ` + "`gc`" + ` with the same options would delete: orphan blobs, untagged manifests,
unused layer links, stale uploads and multipart uploads, orphan segments, empty
repositories).

It also accounts for the space, per repository and per project (the first
component of the repository name): total bytes, bytes unique to it (what deleting
it would free), shared bytes and reclaimable bytes. --format json, csv and html
carry it all (docs/report-schema.md); --metrics-file and --pushgateway export
Prometheus metrics.

Exits 3 when there are findings at or above --fail-on (broken, reclaimable; none
never fails on findings).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runAudit(cmd, o, g) },
	}
	f := cmd.Flags()
	f.StringVar(&o.format, "format", "text", "output format: text, json, csv (one row per repository) or html (one self-contained file)")
	addReportFlags(cmd)
	f.StringVar(&o.failOn, "fail-on", "broken", "exit 3 on findings of this severity or worse: broken, reclaimable or none")
	f.BoolVar(&o.deleteUntagged, "delete-untagged", true, "count manifests no tag reaches as reclaimable")
	f.DurationVar(&o.grace, "grace", 2*time.Hour, "objects younger than this are not reclaimable")
	f.DurationVar(&o.uploadGrace, "upload-grace", 168*time.Hour, "uploads younger than this are not stale")
	f.StringVar(&o.cacheDir, "cache-dir", defaultCacheDir(), "local manifest cache (by digest, verified on read); empty disables it")
	f.BoolVar(&o.verify, "verify", false, "hash every blob and report those whose content does not match their digest")
	f.Float64Var(&o.verifyRate, "verify-rate", 0, "with --verify, read at most this many bytes a second in all (0: no bound)")
	o.harbor.addFlags(f, false)
	return cmd
}

func runAudit(cmd *cobra.Command, o *auditOptions, g *globalOptions) (err error) {
	if err := checkFormatOf(o.format, "text", "json", "csv", "html"); err != nil {
		return err
	}
	if o.failOn != "broken" && o.failOn != "reclaimable" && o.failOn != "none" {
		return usageError{fmt.Errorf("--fail-on must be broken, reclaimable or none, not %q", o.failOn)}
	}
	ro := reportFlags(cmd)
	ctx := cmd.Context()
	reqs := &storage.Requests{}
	started := time.Now()
	var rep *reports.Audit
	// Metrics are written whatever happens: a run that fails says so
	// (findings are not a failure: the audit did its work).
	defer func() {
		run := reports.Run{Command: "audit", Started: started, Finished: time.Now(), Requests: reqs.Snapshot()}
		var findings findingsError
		run.Success = err == nil || errors.As(err, &findings)
		if rep != nil {
			run.Finished, run.Summary = rep.FinishedAt, &rep.Summary
		}
		err = errors.Join(err, emitMetrics(ctx, ro, run))
	}()
	meter, log := g.startProgress()
	defer meter.Close()
	d, _, err := g.openStorage(ctx, cmd.Flags(), true, reqs)
	if err != nil {
		return err
	}
	// Harbor's database is read in one read-only snapshot.
	hb, err := openHarbor(ctx, &o.harbor, o.grace, o.deleteUntagged, false, log)
	if err != nil {
		return err
	}
	defer hb.Close()
	src := mark.StorageSource(d, o.cacheDir, 0)
	defer closeManifestSource(src, log)
	a, err := gc.Analyze(ctx, d, src, gc.Options{DeleteUntagged: o.deleteUntagged, Grace: o.grace, UploadGrace: o.uploadGrace,
		Concurrency: g.concurrency, Log: log, Progress: meter}, participants(hb)...)
	if err != nil {
		return err
	}
	inv := a.Inventory
	var mismatches []finding.Finding
	if o.verify {
		digests := make([]digest.Digest, 0, inv.Blobs.Len())
		for dg := range inv.Blobs.All() {
			digests = append(digests, dg)
		}
		log.Info("verifying blobs", "blobs", len(digests), "bytes", inv.BlobBytes)
		stage := meter.Start("verify", "bytes", inv.BlobBytes)
		if mismatches, err = verify.Mismatches(ctx, d, digests, verify.Options{Concurrency: g.concurrency, BytesPerSecond: o.verifyRate}, stage.Add); err != nil {
			return err
		}
		stage.Done()
	}
	verified := time.Now()
	rep = reports.BuildAudit(inv, a.Mark, a.Plan, storageInfo(d), reqs.Snapshot(), started, time.Now())
	rep.Add(mismatches...)
	if hb != nil {
		rep.Add(hb.Findings(inv)...)
	}
	rep.SetDuration("walk", a.Walked.Sub(started).Seconds())
	rep.SetDuration("mark", a.Marked.Sub(a.Walked).Seconds())
	if o.verify {
		rep.SetDuration("verify", verified.Sub(a.Marked).Seconds())
	}
	rep.SetDuration("total", rep.FinishedAt.Sub(rep.StartedAt).Seconds())
	meter.Close() // the line is gone before the report is written
	err = writeOutput(g.stdout, ro.output, func(w io.Writer) error {
		switch o.format {
		case "json":
			return rep.WriteJSON(w)
		case "csv":
			return rep.WriteCSV(w)
		case "html":
			return rep.WriteHTMLOpts(w, reports.HTMLOptions{FindingsPerKind: ro.top})
		}
		width := 0
		if ro.output == "" {
			width = terminalWidth(g.stdout)
		}
		return rep.WriteTextOpts(w, reports.TextOptions{Top: ro.top, Width: width})
	})
	if err != nil {
		return err
	}
	broken, reclaimable := rep.Count(finding.Broken), rep.Count(finding.Reclaimable)
	switch {
	case o.failOn != "none" && broken > 0:
		return findingsError{fmt.Sprintf("%d broken finding(s) (and %d reclaimable)", broken, reclaimable)}
	case o.failOn == "reclaimable" && reclaimable > 0:
		return findingsError{fmt.Sprintf("%d reclaimable finding(s)", reclaimable)}
	}
	return nil
}
