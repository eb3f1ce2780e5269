// Package reports turns results into what operators and their scripts
// read: text for people, JSON with stable keys for scripts, CSV, HTML and
// Prometheus metrics, and the space accounting per repository and project.
//
// It collects the findings the walk, the mark, the plan, verify and
// Harbor mode emit (package finding) and formats them. It may not decide
// what a finding is, its kind or its severity, nor read storage.
package reports

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/blobindex"
	"github.com/regsweep/regsweep/finding"
	"github.com/regsweep/regsweep/walker"
)

// InventorySchemaVersion versions the inventory JSON document.
const InventorySchemaVersion = 1

// Counts are the inventory's counters, for the whole store and per
// repository. The JSON keys are a contract.
type Counts struct {
	Repositories int   `json:"repositories"`
	Tags         int   `json:"tags"`
	Manifests    int   `json:"manifests"`
	LayerLinks   int   `json:"layer_links"`
	Blobs        int   `json:"blobs"`
	BlobBytes    int64 `json:"blob_bytes"`
	Uploads      int   `json:"uploads"`
	UnknownKeys  int   `json:"unknown_keys"`
}

// RepositoryCounts is one repository's row.
type RepositoryCounts struct {
	Name string `json:"name"`
	Counts
}

// Problem is a finding the inventory could not count as healthy storage,
// as the inventory document has it.
type Problem struct {
	Kind   finding.Kind `json:"kind"`
	Key    string       `json:"key"`
	Repo   string       `json:"repository,omitempty"`
	Reason string       `json:"reason"`
}

// StorageInfo names the storage a report is about (never credentials).
// Root is where in the store the registry lives: the directory on a
// filesystem, <bucket>/<rootdirectory> on S3, <container>/<prefix> on
// Swift.
type StorageInfo struct {
	Driver   string `json:"driver"`
	Location string `json:"location"`
	Root     string `json:"root"`
}

// NewStorageInfo names a storage by its driver and location (the
// driver's Location(): scheme://[host/]root).
func NewStorageInfo(driver, location string) StorageInfo {
	root := location
	if i := strings.Index(root, "://"); i >= 0 {
		root = root[i+3:]
		if driver == "s3" || driver == "swift" {
			if j := strings.IndexByte(root, '/'); j >= 0 {
				root = root[j+1:]
			}
		}
	}
	return StorageInfo{Driver: driver, Location: location, Root: strings.TrimSuffix(root, "/")}
}

// Inventory is the `regsweep inventory` document.
type Inventory struct {
	SchemaVersion int                `json:"schema_version"`
	StartedAt     time.Time          `json:"started_at"`
	FinishedAt    time.Time          `json:"finished_at"`
	Storage       StorageInfo        `json:"storage"`
	Totals        Counts             `json:"totals"`
	Repositories  []RepositoryCounts `json:"repositories"`
	Problems      []Problem          `json:"problems"`
	Requests      map[string]int64   `json:"requests"`
	// KeysListed is every object the walk listed (the LIST floor is
	// ceil(keys_listed/1000) on S3).
	KeysListed int64 `json:"keys_listed"`
}

// BuildInventory counts an inventory. Blobs of a repository are the
// distinct existing blobs its revision and layer links name, each counted
// once.
func BuildInventory(inv *walker.Inventory, storage StorageInfo, requests map[string]int64, started, finished time.Time) *Inventory {
	rep := &Inventory{SchemaVersion: InventorySchemaVersion, StartedAt: started.UTC(), FinishedAt: finished.UTC(),
		Storage: storage, Requests: requests, Repositories: []RepositoryCounts{}, Problems: []Problem{}, KeysListed: inv.Keys}
	counts := repositoryCounts(inv)
	rep.Totals = inventoryTotals(inv, counts)
	for _, name := range inv.RepositoryNames() {
		r := inv.Repositories[name]
		c := counts[name]
		seen := blobindex.NewMap[struct{}]()
		count := func(d digest.Digest) {
			if seen.Has(d) {
				return
			}
			seen.Set(d, struct{}{})
			if b, ok := inv.Blobs.Get(d); ok {
				c.Blobs++
				c.BlobBytes += b.Size
			}
		}
		for d := range r.Revisions.All() {
			count(d)
		}
		for d := range r.Layers.All() {
			count(d)
		}
		rep.Repositories = append(rep.Repositories, RepositoryCounts{Name: name, Counts: c})
	}
	for _, e := range inv.Corrupt {
		rep.Problems = append(rep.Problems, Problem{Kind: finding.CorruptLink, Key: e.Key, Repo: e.Repo, Reason: e.CorruptReason})
	}
	for _, e := range inv.Unknown {
		rep.Problems = append(rep.Problems, Problem{Kind: finding.UnknownKey, Key: e.Key, Reason: "key under docker/registry/v2/ fits no registry layout"})
	}
	sort.Slice(rep.Problems, func(i, j int) bool { return rep.Problems[i].Key < rep.Problems[j].Key })
	return rep
}

// repositoryCounts counts each repository's tags, links and uploads (not
// its blobs), with one pass over the multipart uploads.
func repositoryCounts(inv *walker.Inventory) map[string]Counts {
	counts := make(map[string]Counts, len(inv.Repositories))
	for name, r := range inv.Repositories {
		c := Counts{Repositories: 1, Manifests: r.Revisions.Len(), LayerLinks: r.Layers.Len(), Uploads: len(r.Uploads)}
		for _, t := range r.Tags {
			if t.HasCurrent {
				c.Tags++
			}
		}
		counts[name] = c
	}
	for _, m := range inv.Multipart {
		r := inv.Repositories[m.Repo]
		if r != nil && m.UploadID != "" && r.Uploads[m.UploadID] == nil {
			c := counts[m.Repo]
			c.Uploads++ // an upload known only by its multipart upload
			counts[m.Repo] = c
		}
	}
	return counts
}

// inventoryTotals is the Totals of BuildInventory, from the counts of
// every repository, without the per-repository blob sums that cost a
// digest per link.
func inventoryTotals(inv *walker.Inventory, counts map[string]Counts) Counts {
	t := Counts{Blobs: inv.Blobs.Len(), BlobBytes: inv.BlobBytes, UnknownKeys: len(inv.Unknown)}
	for _, c := range counts {
		t.Repositories++
		t.Tags += c.Tags
		t.Manifests += c.Manifests
		t.LayerLinks += c.LayerLinks
		t.Uploads += c.Uploads
	}
	return t
}

// WriteJSON writes the document and nothing else.
func (r *Inventory) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes a summary and a per-repository table.
func (r *Inventory) WriteText(w io.Writer) error {
	t := r.Totals
	fmt.Fprintf(w, "Storage:       %s (%s)\n", r.Storage.Location, r.Storage.Driver)
	fmt.Fprintf(w, "Repositories:  %d\nTags:          %d\nManifests:     %d\nLayer links:   %d\n", t.Repositories, t.Tags, t.Manifests, t.LayerLinks)
	fmt.Fprintf(w, "Blobs:         %d (%s)\nUploads:       %d\nUnknown keys:  %d\n", t.Blobs, HumanBytes(t.BlobBytes), t.Uploads, t.UnknownKeys)
	fmt.Fprintf(w, "Took:          %s\n", r.FinishedAt.Sub(r.StartedAt).Round(time.Millisecond))
	fmt.Fprintf(w, "Requests:      %s\n\n", formatRequests(r.Requests))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REPOSITORY\tTAGS\tMANIFESTS\tLAYER LINKS\tBLOBS\tBYTES\tUPLOADS\t")
	for _, rc := range r.Repositories {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%d\t\n", rc.Name, rc.Tags, rc.Manifests, rc.LayerLinks, rc.Blobs, HumanBytes(rc.BlobBytes), rc.Uploads)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Problems) > 0 {
		fmt.Fprintf(w, "\nProblems (%d):\n", len(r.Problems))
		for _, p := range r.Problems {
			fmt.Fprintf(w, "! %s %s: %s\n", p.Kind, p.Key, p.Reason)
		}
	}
	return nil
}

func formatRequests(m map[string]int64) string {
	var parts []string
	var total int64
	for _, op := range []string{"list", "get", "head", "put", "delete"} {
		parts = append(parts, fmt.Sprintf("%s %d", op, m[op]))
		total += m[op]
	}
	return fmt.Sprintf("%d (%s)", total, strings.Join(parts, ", "))
}

// HumanBytes formats a byte count with binary units.
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
