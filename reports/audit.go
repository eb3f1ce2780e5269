package reports

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/mark"
	"github.com/regsweep/regsweep/sweep"
	"github.com/regsweep/regsweep/walker"
)

// AuditSchemaVersion versions the audit JSON document.
const AuditSchemaVersion = 1

// Finding kinds: a contract (JSON kind, findings_by_kind keys, metric
// labels). Kinds are added, never renamed.
const (
	KindOrphanBlob            = "orphan_blob"
	KindUntaggedManifest      = "untagged_manifest"
	KindUnusedLayerLink       = "unused_layer_link"
	KindStaleUpload           = "stale_upload"
	KindStaleMultipartUpload  = "stale_multipart_upload"
	KindOrphanSegment         = "orphan_segment"
	KindEmptyRepository       = "empty_repository"
	KindDanglingRevisionLink  = "dangling_revision_link"
	KindDanglingLayerLink     = "dangling_layer_link"
	KindMissingBlobReference  = "missing_blob_reference"
	KindMissingChildManifest  = "missing_child_manifest"
	KindUnparseableManifest   = "unparseable_manifest"
	KindCorruptLink           = "corrupt_link"
	KindDigestMismatch        = "digest_mismatch"
	KindUnknownKey            = "unknown_key"
	KindMissingTaggedManifest = "missing_tagged_manifest"

	// Harbor (with --harbor-db).
	KindHarborMissingInStorage = "harbor_missing_in_storage"
	KindHarborUnknownInDB      = "harbor_unknown_in_db"
	KindHarborQuotaDrift       = "harbor_quota_drift"
	KindHarborStuckBlob        = "harbor_stuck_blob"
	KindHarborStaleTrash       = "harbor_stale_trash"
)

// Severities.
const (
	SeverityReclaimable = "reclaimable"
	SeverityBroken      = "broken"
)

var severity = map[string]string{
	KindOrphanBlob: SeverityReclaimable, KindUntaggedManifest: SeverityReclaimable, KindUnusedLayerLink: SeverityReclaimable,
	KindStaleUpload: SeverityReclaimable, KindStaleMultipartUpload: SeverityReclaimable, KindOrphanSegment: SeverityReclaimable,
	KindEmptyRepository:      SeverityReclaimable,
	KindDanglingRevisionLink: SeverityBroken, KindDanglingLayerLink: SeverityBroken, KindMissingBlobReference: SeverityBroken,
	KindMissingChildManifest: SeverityBroken, KindUnparseableManifest: SeverityBroken, KindCorruptLink: SeverityBroken,
	KindDigestMismatch: SeverityBroken, KindUnknownKey: SeverityBroken, KindMissingTaggedManifest: SeverityBroken,
	KindHarborMissingInStorage: SeverityBroken, KindHarborQuotaDrift: SeverityBroken, KindHarborStuckBlob: SeverityBroken,
	KindHarborUnknownInDB: SeverityReclaimable, KindHarborStaleTrash: SeverityReclaimable,
}

// Kinds returns every finding kind, sorted.
func Kinds() []string {
	out := make([]string, 0, len(severity))
	for k := range severity {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// SeverityOf is the severity of a finding kind ("" for an unknown kind).
func SeverityOf(kind string) string { return severity[kind] }

// Finding is one thing an audit found. Project, Tags and Details are set
// where they mean something (Harbor findings name their project; broken
// manifests name the tags they break).
type Finding struct {
	Kind        string            `json:"kind"`
	Severity    string            `json:"severity"`
	Repo        string            `json:"repository,omitempty"`
	Project     string            `json:"project,omitempty"`
	Digest      digest.Digest     `json:"digest,omitempty"`
	Key         string            `json:"key,omitempty"`
	Size        int64             `json:"size"`
	Tags        []string          `json:"tags,omitempty"`
	Details     map[string]string `json:"details,omitempty"`
	Explanation string            `json:"explanation"`
}

// Reclaimable sums what a gc with the audit's options would free.
type Reclaimable struct {
	Blobs            int   `json:"blobs"`
	Bytes            int64 `json:"bytes"`
	Manifests        int   `json:"manifests"`
	LayerLinks       int   `json:"layer_links"`
	Uploads          int   `json:"uploads"`
	MultipartUploads int   `json:"multipart_uploads"`
	Segments         int   `json:"segments"`
	Repositories     int   `json:"repositories"`
}

// Audit is the `regsweep audit` document.
type Audit struct {
	SchemaVersion int         `json:"schema_version"`
	StartedAt     time.Time   `json:"started_at"`
	FinishedAt    time.Time   `json:"finished_at"`
	Storage       StorageInfo `json:"storage"`
	Summary
	Findings []Finding        `json:"findings"`
	Requests map[string]int64 `json:"requests"`
}

// BuildAudit turns a walk, its mark and the plan a gc would make into
// findings and the space accounting.
func BuildAudit(inv *walker.Inventory, res *mark.Result, plan *sweep.Plan, storage StorageInfo, requests map[string]int64, started, finished time.Time) *Audit {
	a := &Audit{SchemaVersion: AuditSchemaVersion, StartedAt: started.UTC(), FinishedAt: finished.UTC(), Storage: storage,
		Requests: requests, Findings: []Finding{}}
	var findings []Finding
	a.Summary, findings = Summarize(inv, res, plan)
	a.FindingsByKind = map[string]int{}
	for k := range severity {
		a.FindingsByKind[k] = 0
	}
	for _, f := range findings {
		a.add(f)
	}
	a.tally()
	return a
}

// findingsOf lists the findings of a mark and its plan (the storage-only
// ones: no verify, no Harbor).
func findingsOf(inv *walker.Inventory, res *mark.Result, plan *sweep.Plan) []Finding {
	var out []Finding
	add := func(f Finding) { out = append(out, f) }
	uploads := map[string]*Finding{}
	orphanSegments := map[string]*Finding{}
	for _, it := range plan.Items {
		switch it.Kind {
		case sweep.KindBlob:
			add(Finding{Kind: KindOrphanBlob, Digest: it.Digest, Key: it.Key, Size: it.Size, Explanation: "no kept manifest references this blob"})
		case sweep.KindRevisionLink:
			if !strings.HasPrefix(it.Reason, "dangling") { // dangling ones come from the mark below
				add(Finding{Kind: KindUntaggedManifest, Repo: it.Repo, Digest: it.Digest, Key: it.Key, Explanation: "no tag reaches this manifest (through indexes and referrers)"})
			}
		case sweep.KindLayerLink:
			if strings.HasPrefix(it.Reason, "dangling") {
				add(Finding{Kind: KindDanglingLayerLink, Repo: it.Repo, Digest: it.Digest, Key: it.Key, Explanation: "layer link to a blob storage lacks: pulls of it fail"})
			} else {
				add(Finding{Kind: KindUnusedLayerLink, Repo: it.Repo, Digest: it.Digest, Key: it.Key, Explanation: "no kept manifest of this repository uses the blob"})
			}
		case sweep.KindUploadFile:
			id := it.Repo + "/" + it.UploadID
			if f := uploads[id]; f != nil {
				f.Size += it.Size
				continue
			}
			uploads[id] = &Finding{Kind: KindStaleUpload, Repo: it.Repo, Key: layout.RepoPrefix(it.Repo) + "_uploads/" + it.UploadID + "/",
				Size: it.Size, Explanation: it.Reason}
		case sweep.KindMultipartUpload:
			add(Finding{Kind: KindStaleMultipartUpload, Repo: it.Repo, Key: it.Key, Explanation: it.Reason})
		case sweep.KindSegment:
			if it.Digest == "" {
				if f := orphanSegments[it.Segments]; f != nil {
					f.Size += it.Size
					continue
				}
				orphanSegments[it.Segments] = &Finding{Kind: KindOrphanSegment, Key: it.Segments + "/", Size: it.Size, Explanation: "Swift segments no blob points to"}
			}
		case sweep.KindRepository:
			add(Finding{Kind: KindEmptyRepository, Repo: it.Repo, Key: it.Key, Explanation: "repository with no live manifest: gc removes it whole"})
		}
	}
	// A layer link to a missing blob that a kept manifest references stays
	// in the plan's eyes (fail closed), but pulls through it fail all the
	// same: report it too.
	plannedLinks := map[string]bool{}
	for _, it := range plan.Items {
		if it.Kind == sweep.KindLayerLink {
			plannedLinks[it.Key] = true
		}
	}
	for _, name := range inv.RepositoryNames() {
		for d := range inv.Repositories[name].Layers.All() {
			if inv.Blobs.Has(d) {
				continue
			}
			k, err := layout.Path(layout.LayerLink{Repo: name, Digest: d})
			if err != nil || plannedLinks[k] {
				continue
			}
			add(Finding{Kind: KindDanglingLayerLink, Repo: name, Digest: d, Key: k,
				Explanation: "layer link to a blob storage lacks: pulls of it fail (a kept manifest references it, so gc keeps the link)"})
		}
	}
	for _, f := range uploads {
		add(*f)
	}
	for _, f := range orphanSegments {
		add(*f)
	}
	for _, p := range res.Problems {
		f := Finding{Repo: p.Repo, Digest: p.Digest, Key: p.Key}
		if p.Err != nil {
			f.Explanation = p.Err.Error()
		}
		switch p.Kind {
		case mark.KindUnparseableManifest:
			f.Kind = KindUnparseableManifest
		case mark.KindMissingChildManifest:
			f.Kind = KindMissingChildManifest
		case mark.KindMissingBlobReference:
			f.Kind = KindMissingBlobReference
		case mark.KindDanglingRevisionLink:
			f.Kind = KindDanglingRevisionLink
		case mark.KindCorruptLink:
			f.Kind = KindCorruptLink
		case mark.KindMissingTaggedManifest:
			f.Kind = KindMissingTaggedManifest
		default:
			continue
		}
		add(f)
	}
	for _, e := range inv.Unknown {
		if e.InFlightFor != "" {
			add(Finding{Kind: KindUnknownKey, Key: e.Key, Size: e.Size, Explanation: fmt.Sprintf(
				"a storage driver's temporary file for %s: a write in flight, or one a crash cut short (gc ignores it)", e.InFlightFor)})
			continue
		}
		add(Finding{Kind: KindUnknownKey, Key: e.Key, Size: e.Size, Explanation: "key under docker/registry/v2/ that fits no registry layout"})
	}
	return out
}

// Add records a finding (with its kind's severity). Findings are
// ordered broken first, then by kind and key, and counted per repository
// and project, when the report is written.
func (a *Audit) Add(f Finding) { a.add(f) }

func (a *Audit) add(f Finding) {
	f.Severity = severity[f.Kind]
	if f.Project == "" && f.Repo != "" {
		f.Project = ProjectOf(f.Repo)
	}
	a.Findings = append(a.Findings, f)
	a.FindingsByKind[f.Kind]++
}

// tally sorts the findings, unless they are (a million of them take
// seconds), and recounts them per repository and project.
func (a *Audit) tally() {
	if !slices.IsSortedFunc(a.Findings, compareFindings) {
		slices.SortStableFunc(a.Findings, compareFindings)
	}
	a.Accounting.countFindings(a.Findings)
}

// compareFindings orders findings broken first, then by kind, key and
// digest.
func compareFindings(x, y Finding) int {
	if x.Severity != y.Severity {
		if x.Severity == SeverityBroken {
			return -1
		}
		if y.Severity == SeverityBroken {
			return 1
		}
	}
	return cmp.Or(strings.Compare(x.Kind, y.Kind), strings.Compare(x.Key, y.Key), strings.Compare(string(x.Digest), string(y.Digest)))
}

// Count returns how many findings have the severity.
func (a *Audit) Count(sev string) int {
	n := 0
	for _, f := range a.Findings {
		if f.Severity == sev {
			n++
		}
	}
	return n
}

// WriteJSON writes the document and nothing else.
func (a *Audit) WriteJSON(w io.Writer) error {
	a.tally()
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(a)
}

// WriteText writes the text report with the default table sizes.
func (a *Audit) WriteText(w io.Writer) error { return a.WriteTextOpts(w, TextOptions{Top: 10}) }

// TextOptions size the text report.
type TextOptions struct {
	// Top is how many repositories and projects the space tables show
	// (all when <= 0).
	Top int
	// Width is the terminal's width; names are shortened to fit it (0:
	// never shortened).
	Width int
}

// WriteTextOpts writes a summary, where the space goes (the top
// repositories and projects by total bytes) and the findings, a sigil
// each: "!" broken, "-" reclaimable.
func (a *Audit) WriteTextOpts(w io.Writer, o TextOptions) error {
	a.tally()
	t, r := a.Totals, a.Reclaimable
	fmt.Fprintf(w, "Storage:      %s (%s)\n", a.Storage.Location, a.Storage.Driver)
	fmt.Fprintf(w, "Holds:        %d repositories, %d tags, %d manifests, %d blobs (%s)\n", t.Repositories, t.Tags, t.Manifests, t.Blobs, HumanBytes(t.BlobBytes))
	fmt.Fprintf(w, "Reclaimable:  %s: %d blobs, %d manifests, %d layer links, %d uploads, %d multipart uploads, %d segments, %d repositories\n",
		HumanBytes(r.Bytes), r.Blobs, r.Manifests, r.LayerLinks, r.Uploads, r.MultipartUploads, r.Segments, r.Repositories)
	fmt.Fprintf(w, "Findings:     %d broken, %d reclaimable\n", a.Count(SeverityBroken), a.Count(SeverityReclaimable))
	fmt.Fprintf(w, "Took:         %s\n", a.FinishedAt.Sub(a.StartedAt).Round(time.Millisecond))
	fmt.Fprintf(w, "Requests:     %s\n\n", formatRequests(a.Requests))
	if err := writeSpaceTables(w, &a.Accounting, o); err != nil {
		return err
	}
	for _, f := range a.Findings {
		sigil := "-"
		if f.Severity == SeverityBroken {
			sigil = "!"
		}
		what := f.Key
		if what == "" {
			what = f.Digest.String()
		}
		fmt.Fprintf(w, "%s %-24s %s  (%s)\n", sigil, f.Kind, what, f.Explanation)
	}
	return nil
}

// writeSpaceTables writes the top projects and repositories by total
// bytes.
func writeSpaceTables(w io.Writer, acc *Accounting, o TextOptions) error {
	const numbers = 70 // the width of the numeric columns
	nameWidth := 0
	if o.Width > 0 {
		nameWidth = max(o.Width-numbers, 12)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(name string, s Space, extra string) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t\n", fitName(name, nameWidth), HumanBytes(s.TotalBytes), HumanBytes(s.UniqueBytes),
			HumanBytes(s.SharedBytes), HumanBytes(s.ReclaimableBytes), s.Findings, extra)
	}
	if len(acc.Projects) > 0 {
		top := acc.TopProjects(o.Top, ByTotal)
		fmt.Fprintf(w, "Projects by space (top %d of %d):\n", len(top), len(acc.Projects))
		fmt.Fprintln(tw, "PROJECT\tTOTAL\tUNIQUE\tSHARED\tRECLAIMABLE\tFINDINGS\tREPOSITORIES\t")
		for _, p := range top {
			row(projectLabel(p.Name), p.Space, fmt.Sprint(p.Repositories))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	if len(acc.Repositories) > 0 {
		top := acc.TopRepositories(o.Top, ByTotal)
		fmt.Fprintf(w, "Repositories by space (top %d of %d):\n", len(top), len(acc.Repositories))
		fmt.Fprintln(tw, "REPOSITORY\tTOTAL\tUNIQUE\tSHARED\tRECLAIMABLE\tFINDINGS\tTAGS\t")
		for _, r := range top {
			row(r.Name, r.Space, fmt.Sprint(r.Tags))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	return nil
}

// projectLabel names the project of repositories without '/'.
func projectLabel(name string) string {
	if name == "" {
		return "(none)"
	}
	return name
}

// fitName shortens name to width runes, keeping its end (the distinctive
// part of a repository path).
func fitName(name string, width int) string {
	r := []rune(name)
	if width <= 0 || len(r) <= width {
		return name
	}
	return "…" + string(r[len(r)-width+1:])
}
