package reports

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

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
	// The summary audit shares (totals, reclaimable, findings_by_kind,
	// repositories, projects, durations_seconds); set by the command.
	*Summary

	items []sweep.Item
}

// BuildGC summarises a gc run.
func BuildGC(p *sweep.Plan, result *sweep.Result, recheck *sweep.RecheckStats, dryRun bool, storage StorageInfo, requests map[string]int64, manifestReads, cacheHits int64, started, finished time.Time) *GC {
	return &GC{SchemaVersion: GCSchemaVersion, StartedAt: started.UTC(), FinishedAt: finished.UTC(), Storage: storage, DryRun: dryRun,
		Plan: p.Stats, Guards: p.Guards, Problems: p.Problems, Recheck: recheck, Result: result, Requests: requests,
		ManifestReads: manifestReads, CacheHits: cacheHits, items: p.Items}
}

// WriteJSON writes the document and nothing else.
func (r *GC) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes a summary; with list, every planned deletion too.
func (r *GC) WriteText(w io.Writer, list bool) error {
	s := r.Plan
	verb := "Deleting"
	if r.DryRun {
		verb = "Dry run: would delete"
	}
	fmt.Fprintf(w, "Storage:           %s (%s)\n", r.Storage.Location, r.Storage.Driver)
	fmt.Fprintf(w, "%s:\n", verb)
	pct := 0.0
	if s.TotalBlobs > 0 {
		pct = 100 * float64(s.Blobs) / float64(s.TotalBlobs)
	}
	fmt.Fprintf(w, "  blobs             %d of %d (%.1f%%), %s of %s\n", s.Blobs, s.TotalBlobs, pct, HumanBytes(s.BlobBytes), HumanBytes(s.TotalBlobBytes))
	fmt.Fprintf(w, "  space freed       %s (blobs, orphan segments and uploads)\n", HumanBytes(s.Bytes))
	fmt.Fprintf(w, "  manifests         %d\n  tag index links   %d\n  layer links       %d\n", s.Manifests, s.TagIndexLinks, s.LayerLinks)
	fmt.Fprintf(w, "  uploads           %d\n  multipart uploads %d\n  segments          %d\n  repositories      %d\n", s.Uploads, s.MultipartUploads, s.Segments, s.Repositories)
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
	fmt.Fprintf(w, "Manifests:         %d read from storage, %d from the local cache\n", r.ManifestReads, r.CacheHits)
	fmt.Fprintf(w, "Took:              %s\n", r.FinishedAt.Sub(r.StartedAt).Round(time.Millisecond))
	fmt.Fprintf(w, "Requests:          %s\n", formatRequests(r.Requests))
	return nil
}
