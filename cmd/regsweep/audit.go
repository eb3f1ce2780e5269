package main

import (
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"github.com/regsweep/regsweep/mark"
	"github.com/regsweep/regsweep/reports"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/sweep"
	"github.com/regsweep/regsweep/verify"
	"github.com/regsweep/regsweep/walker"
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

Exits 3 when there are findings at or above --fail-on (broken, reclaimable; none
never fails on findings).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runAudit(cmd, o, g) },
	}
	f := cmd.Flags()
	addFormatFlag(f, &o.format)
	f.StringVar(&o.failOn, "fail-on", "broken", "exit 3 on findings of this severity or worse: broken, reclaimable or none")
	f.BoolVar(&o.deleteUntagged, "delete-untagged", true, "count manifests no tag reaches as reclaimable")
	f.DurationVar(&o.grace, "grace", 2*time.Hour, "objects younger than this are not reclaimable")
	f.DurationVar(&o.uploadGrace, "upload-grace", 168*time.Hour, "uploads younger than this are not stale")
	f.StringVar(&o.cacheDir, "cache-dir", defaultCacheDir(), "local manifest cache (by digest, verified on read); empty disables it")
	f.BoolVar(&o.verify, "verify", false, "hash every blob and report those whose content does not match their digest")
	f.Float64Var(&o.verifyRate, "verify-rate", 0, "with --verify, read at most this many bytes a second in all (0: no bound)")
	return cmd
}

func runAudit(cmd *cobra.Command, o *auditOptions, g *globalOptions) error {
	if err := checkFormat(o.format); err != nil {
		return err
	}
	if o.failOn != "broken" && o.failOn != "reclaimable" && o.failOn != "none" {
		return usageError{fmt.Errorf("--fail-on must be broken, reclaimable or none, not %q", o.failOn)}
	}
	ctx := cmd.Context()
	reqs := &storage.Requests{}
	d, _, err := g.openStorage(ctx, cmd.Flags(), true, reqs)
	if err != nil {
		return err
	}
	log := g.logger()
	started := time.Now()
	opts := walker.DefaultOptions()
	opts.Concurrency = g.concurrency
	opts.Parallel = true
	opts.ProbeUploadsBefore = time.Now().Add(-o.uploadGrace)
	log.Info("walking storage", "location", d.Location())
	inv, err := walker.Collect(ctx, d, opts)
	if err != nil {
		return err
	}
	src := mark.StorageSource(d, o.cacheDir, 0)
	res, err := mark.Run(ctx, inv, src, mark.Options{DeleteUntagged: o.deleteUntagged, Concurrency: g.concurrency})
	if err != nil {
		return err
	}
	plan := sweep.Build(inv, res, sweep.StorageRef{Driver: d.Name(), Location: d.Location()}, sweep.Options{
		Now: time.Now(), Grace: o.grace, UploadGrace: o.uploadGrace, DeleteUntagged: o.deleteUntagged,
	}, manifestReader(ctx, src))
	var mismatches []verify.Result
	if o.verify {
		var digests []digest.Digest
		for dg := range inv.Blobs.All() {
			digests = append(digests, dg)
		}
		log.Info("verifying blobs", "blobs", len(digests), "bytes", inv.BlobBytes)
		err := verify.Blobs(ctx, d, digests, verify.Options{Concurrency: g.concurrency, BytesPerSecond: o.verifyRate}, func(r verify.Result) error {
			if r.Actual != r.Digest {
				mismatches = append(mismatches, r)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	info := storageInfo(d)
	rep := reports.BuildAudit(inv, res, plan, info, reqs.Snapshot(), started, time.Now())
	for _, m := range mismatches {
		rep.Add(reports.Finding{Kind: reports.KindDigestMismatch, Digest: m.Digest, Key: m.Key, Size: m.Bytes,
			Explanation: fmt.Sprintf("content hashes to %s", m.Actual)})
	}
	err = writeReport(g.stdout, o.format, rep.WriteJSON, rep.WriteText)
	if err != nil {
		return err
	}
	broken, reclaimable := rep.Count(reports.SeverityBroken), rep.Count(reports.SeverityReclaimable)
	switch {
	case o.failOn != "none" && broken > 0:
		return findingsError{fmt.Sprintf("%d broken finding(s) (and %d reclaimable)", broken, reclaimable)}
	case o.failOn == "reclaimable" && reclaimable > 0:
		return findingsError{fmt.Sprintf("%d reclaimable finding(s)", reclaimable)}
	}
	return nil
}
