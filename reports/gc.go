package reports

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/regsweep/regsweep/mark"
	"github.com/regsweep/regsweep/retention"
	"github.com/regsweep/regsweep/sweep"
)

// GCSchemaVersion versions the gc JSON document.
const GCSchemaVersion = 1

// GC is the `regsweep gc` document: the plan's summary and, after a real
// run, what was deleted.
type GC struct {
	SchemaVersion int                 `json:"schema_version"`
	StartedAt     time.Time           `json:"started_at"`
	FinishedAt    time.Time           `json:"finished_at"`
	Storage       StorageInfo         `json:"storage"`
	DryRun        bool                `json:"dry_run"`
	Plan          sweep.Stats         `json:"plan"`
	Guards        []sweep.Guard       `json:"guards"`
	Problems      []sweep.Problem     `json:"problems"`
	Recheck       *sweep.RecheckStats `json:"recheck,omitempty"`
	Result        *sweep.Result       `json:"result,omitempty"`
	Requests      map[string]int64    `json:"requests"`
	ManifestReads int64               `json:"manifest_reads"`
	CacheHits     int64               `json:"manifest_cache_hits"`
	// ManifestSources splits the two above by who read each manifest and
	// when; set by the command (SetManifestSources).
	ManifestSources *ManifestSources `json:"manifest_sources,omitempty"`
	// TagsByRepository counts the tags a retention policy deletes, per
	// repository (plan.tags is the total).
	TagsByRepository map[string]int `json:"tags_by_repository,omitempty"`
	// Retention is the policy's decision on every tag, with --explain.
	Retention []retention.RepositoryDecision `json:"retention,omitempty"`
	// The summary audit shares (totals, reclaimable, findings_by_kind,
	// repositories, projects, durations_seconds); set by the command.
	*Summary

	items []sweep.Item
}

// BuildGC summarises a gc run.
func BuildGC(p *sweep.Plan, result *sweep.Result, recheck *sweep.RecheckStats, dryRun bool, storage StorageInfo, requests map[string]int64, manifestReads, cacheHits int64, started, finished time.Time) *GC {
	r := &GC{SchemaVersion: GCSchemaVersion, StartedAt: started.UTC(), FinishedAt: finished.UTC(), Storage: storage, DryRun: dryRun,
		Plan: p.Stats, Guards: p.Guards, Problems: p.Problems, Recheck: recheck, Result: result, Requests: requests,
		ManifestReads: manifestReads, CacheHits: cacheHits, items: p.Items}
	for _, it := range p.Items {
		if it.Kind == sweep.KindTag {
			if r.TagsByRepository == nil {
				r.TagsByRepository = map[string]int{}
			}
			r.TagsByRepository[it.Repo]++
		}
	}
	return r
}

// ManifestSources say where the manifests of a run came from (JSON keys
// in docs/report-schema.md).
type ManifestSources struct {
	// Storage: read from storage when the mark or a recheck asked (not in
	// the cache).
	Storage int64 `json:"storage"`
	// Prefetched: read from storage into the cache by the prefetch, while
	// the walk went on; PrefetchedUsed of them were then read from there.
	Prefetched     int64 `json:"prefetched"`
	PrefetchedUsed int64 `json:"prefetched_used"`
	// Cache: read from the cache that earlier runs filled.
	Cache int64 `json:"cache"`
}

// SetManifestSources records where the run's manifests came from.
func (r *GC) SetManifestSources(c mark.SourceCounts) {
	r.ManifestSources = &ManifestSources{Storage: c.Read, Prefetched: c.Prefetched, PrefetchedUsed: c.PrefetchHits, Cache: c.Cached}
}

// WriteJSON writes the document and nothing else.
func (r *GC) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes a summary with the default top list; with list,
// every planned deletion too.
func (r *GC) WriteText(w io.Writer, list bool) error {
	return r.WriteTextOpts(w, GCTextOptions{List: list, Top: 10})
}

// GCTextOptions shape gc's text report.
type GCTextOptions struct {
	// List lists every planned deletion.
	List bool
	// Top is how many repositories the list of what the plan frees shows,
	// the largest first (all when <= 0).
	Top int
}

// WriteTextOpts writes a summary: what the plan deletes, where that space
// comes from (the repositories it frees the most in, when the report has
// the summary block), guards, problems, and where the manifests came from.
func (r *GC) WriteTextOpts(w io.Writer, o GCTextOptions) error {
	list := o.List
	s := r.Plan
	verb := "Deleting"
	if r.DryRun {
		verb = "Dry run: would delete"
	}
	fmt.Fprintf(w, "Storage:           %s (%s)\n", r.Storage.Location, r.Storage.Driver)
	fmt.Fprintf(w, "%s:\n", verb)
	if len(r.TagsByRepository) > 0 || r.Retention != nil {
		repositories := "repositories"
		if len(r.TagsByRepository) == 1 {
			repositories = "repository"
		}
		fmt.Fprintf(w, "  tags              %d, in %d %s (retention policy)\n", s.Tags, len(r.TagsByRepository), repositories)
	}
	pct := 0.0
	if s.TotalBlobs > 0 {
		pct = 100 * float64(s.Blobs) / float64(s.TotalBlobs)
	}
	fmt.Fprintf(w, "  blobs             %d of %d (%.1f%%), %s of %s\n", s.Blobs, s.TotalBlobs, pct, HumanBytes(s.BlobBytes), HumanBytes(s.TotalBlobBytes))
	fmt.Fprintf(w, "  space freed       %s (blobs, orphan segments and uploads)\n", HumanBytes(s.Bytes))
	fmt.Fprintf(w, "  manifests         %d\n  tag index links   %d\n  layer links       %d\n", s.Manifests, s.TagIndexLinks, s.LayerLinks)
	fmt.Fprintf(w, "  uploads           %d\n  multipart uploads %d\n  segments          %d\n  repositories      %d\n", s.Uploads, s.MultipartUploads, s.Segments, s.Repositories)
	if err := r.writeReclaimableByRepository(w, o.Top); err != nil {
		return err
	}
	if len(r.TagsByRepository) > 0 {
		names := sortedByCount(r.TagsByRepository, o.Top)
		fmt.Fprintf(w, "Tags deleted by repository (top %d of %d):\n", len(names), len(r.TagsByRepository))
		for _, name := range names {
			fmt.Fprintf(w, "  %6d  %s\n", r.TagsByRepository[name], name)
		}
	}
	if r.Retention != nil {
		fmt.Fprintln(w, "Retention policy, tag by tag:")
		if err := retention.WriteExplanation(w, r.Retention); err != nil {
			return err
		}
	}
	if list {
		for _, it := range r.items {
			fmt.Fprintf(w, "- %s %s (%s)\n", it.Kind, it.Key, it.Reason)
		}
	}
	for _, g := range r.Guards {
		fmt.Fprintf(w, "! guard %s: %s\n", g.Name, g.Message)
	}
	for _, p := range r.Problems {
		mark := "*"
		if p.Blocking {
			mark = "!"
		}
		fmt.Fprintf(w, "%s %s %s %s %s\n", mark, p.Kind, p.Repo, p.Key, p.Error)
	}
	if r.Recheck != nil {
		fmt.Fprintf(w, "Recheck:           %d left the plan (changed %d, gone %d, protected %d)\n", r.Recheck.Dropped, r.Recheck.Changed, r.Recheck.Gone, r.Recheck.Protected)
	}
	if r.Result != nil {
		deleted, notFound, failed := 0, 0, 0
		for _, n := range r.Result.Deleted {
			deleted += n
		}
		for _, n := range r.Result.NotFound {
			notFound += n
		}
		for _, n := range r.Result.Failed {
			failed += n
		}
		fmt.Fprintf(w, "Deleted:           %d objects, %s freed (%d already gone, %d failed)\n", deleted, HumanBytes(r.Result.FreedBytes), notFound, failed)
		if r.Result.RemovedDirectories > 0 {
			fmt.Fprintf(w, "Directories:       %d left empty and removed\n", r.Result.RemovedDirectories)
		}
	}
	if m := r.ManifestSources; m != nil {
		fmt.Fprintf(w, "Manifests:         %d read: %d from storage, %d prefetched from storage during the walk, %d from the local cache of earlier runs\n",
			m.Storage+m.PrefetchedUsed+m.Cache, m.Storage, m.PrefetchedUsed, m.Cache)
		if unused := m.Prefetched - m.PrefetchedUsed; unused > 0 {
			fmt.Fprintf(w, "                   (%d more prefetched and not needed)\n", unused)
		}
	} else {
		fmt.Fprintf(w, "Manifests:         %d read from storage, %d from the local cache (the prefetch's reads included)\n", r.ManifestReads, r.CacheHits)
	}
	fmt.Fprintf(w, "Took:              %s\n", r.FinishedAt.Sub(r.StartedAt).Round(time.Millisecond))
	fmt.Fprintf(w, "Requests:          %s\n", formatRequests(r.Requests))
	return nil
}

// writeReclaimableByRepository lists the top repositories by what the
// plan frees in them: where a dry run's space comes from.
func (r *GC) writeReclaimableByRepository(w io.Writer, top int) error {
	if r.Summary == nil {
		return nil
	}
	var rows []RepositorySpace
	for _, row := range r.Summary.TopRepositories(0, ByReclaimable) {
		if row.ReclaimableBytes > 0 {
			rows = append(rows, row)
		}
	}
	if len(rows) == 0 {
		return nil
	}
	n := len(rows)
	if top > 0 && n > top {
		rows = rows[:top]
	}
	fmt.Fprintf(w, "Frees the most in (top %d of %d repositories; a blob several repositories link counts in each, one none links in none):\n", len(rows), n)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  REPOSITORY\tRECLAIMABLE\tUPLOADS\tTOTAL\t")
	for _, row := range rows {
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\t\n", row.Name, HumanBytes(row.ReclaimableBytes), row.Uploads, HumanBytes(row.TotalBytes))
	}
	return tw.Flush()
}

// sortedByCount is m's keys, the largest count first (then by name), at
// most top of them (all when top <= 0).
func sortedByCount(m map[string]int, top int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return cmp.Or(cmp.Compare(m[b], m[a]), cmp.Compare(a, b)) })
	if top > 0 && len(keys) > top {
		keys = keys[:top]
	}
	return keys
}
