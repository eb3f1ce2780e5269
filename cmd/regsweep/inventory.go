package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/regsweep/regsweep/reports"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/walker"
)

type inventoryOptions struct {
	format     string
	trustETags bool
	parallel   bool
}

func newInventoryCommand(g *globalOptions) *cobra.Command {
	o := &inventoryOptions{}
	cmd := &cobra.Command{
		Use:   "inventory",
		Short: "Count what the registry's storage holds",
		Long: `Walk the registry's storage (read-only) and print totals, a per-repository table and
the requests made. With --format json stdout holds only the JSON document.

Exits 3 when storage holds corrupt link files or keys that fit no registry layout
(each is listed with its key).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runInventory(cmd, o, g) },
	}
	addFormatFlag(cmd.Flags(), &o.format)
	cmd.Flags().BoolVar(&o.trustETags, "trust-etags", true, "skip reading link files whose listing ETag proves their content")
	cmd.Flags().BoolVar(&o.parallel, "parallel-listing", false, "list blobs and repositories in parallel shards: faster on large stores, for about one extra listing request per shard")
	return cmd
}

func runInventory(cmd *cobra.Command, o *inventoryOptions, g *globalOptions) error {
	if err := checkFormat(o.format); err != nil {
		return err
	}
	ctx := cmd.Context()
	reqs := &storage.Requests{}
	d, _, err := g.openStorage(ctx, cmd.Flags(), true, reqs)
	if err != nil {
		return err
	}
	log := g.logger()
	started := time.Now()
	log.Info("walking storage", "location", d.Location())
	opts := walker.DefaultOptions()
	opts.Concurrency, opts.TrustETags, opts.Parallel = g.concurrency, o.trustETags, o.parallel
	inv, err := walker.Collect(ctx, d, opts)
	if err != nil {
		return err
	}
	rep := reports.BuildInventory(inv, storageInfo(d), reqs.Snapshot(), started, time.Now())
	err = writeReport(g.stdout, o.format, rep.WriteJSON, rep.WriteText)
	if err != nil {
		return err
	}
	if n := len(rep.Problems); n > 0 {
		for _, p := range rep.Problems {
			log.Warn("storage problem", "kind", p.Kind, "key", p.Key, "reason", p.Reason)
		}
		return findingsError{fmt.Sprintf("%d problem(s) in storage: corrupt link files or keys that fit no layout (listed above)", n)}
	}
	return nil
}
