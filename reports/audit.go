package reports

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/finding"
	"github.com/regsweep/regsweep/mark"
	"github.com/regsweep/regsweep/sweep"
	"github.com/regsweep/regsweep/walker"
)

// AuditSchemaVersion versions the audit JSON document.
const AuditSchemaVersion = 1

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
	// Findings are written as findingJSON (WriteJSON).
	Findings []finding.Finding `json:"-"`
	Requests map[string]int64  `json:"requests"`
}

// findingJSON is a finding as the audit document has it
// (docs/report-schema.md): with its kind's severity, and the tags it
// breaks in its explanation too.
type findingJSON struct {
	Kind        finding.Kind      `json:"kind"`
	Severity    finding.Severity  `json:"severity"`
	Repo        string            `json:"repository,omitempty"`
	Project     string            `json:"project,omitempty"`
	Digest      digest.Digest     `json:"digest,omitempty"`
	Key         string            `json:"key,omitempty"`
	Size        int64             `json:"size"`
	Tags        []string          `json:"tags,omitempty"`
	Details     map[string]string `json:"details,omitempty"`
	Explanation string            `json:"explanation"`
}

// BuildAudit turns a walk, its mark and the plan a gc would make into
// the space accounting and the findings they carry (Add adds those of
// --verify and Harbor mode).
func BuildAudit(inv *walker.Inventory, res *mark.Result, plan *sweep.Plan, storage StorageInfo, requests map[string]int64, started, finished time.Time) *Audit {
	a := &Audit{SchemaVersion: AuditSchemaVersion, StartedAt: started.UTC(), FinishedAt: finished.UTC(), Storage: storage,
		Requests: requests, Findings: []finding.Finding{}}
	var findings []finding.Finding
	a.Summary, findings = Summarize(inv, res, plan) // counted there
	for _, f := range findings {
		a.Findings = append(a.Findings, withProject(f))
	}
	a.tally()
	return a
}

// storageFindings collects the findings of a walk, its mark and its plan
// (no verify, no Harbor): the walk's corrupt links come with the mark's
// problems, which keep what they may hide.
func storageFindings(inv *walker.Inventory, res *mark.Result, plan *sweep.Plan) []finding.Finding {
	out := plan.Findings(inv)
	for _, f := range res.Problems {
		if f.Kind.Reported() {
			out = append(out, f)
		}
	}
	return append(out, inv.UnknownKeys()...)
}

// Add records findings. They are ordered broken first, then by kind and
// key, and counted per repository and project, when the report is
// written.
func (a *Audit) Add(findings ...finding.Finding) {
	for _, f := range findings {
		a.Findings = append(a.Findings, withProject(f))
		a.FindingsByKind[f.Kind]++
	}
}

// withProject is f with the project of its repository, unless it names
// its own (Harbor's do).
func withProject(f finding.Finding) finding.Finding {
	if f.Project == "" && f.Repo != "" {
		f.Project = ProjectOf(f.Repo)
	}
	return f
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
func compareFindings(x, y finding.Finding) int {
	if sx, sy := x.Severity(), y.Severity(); sx != sy {
		if sx == finding.Broken {
			return -1
		}
		if sy == finding.Broken {
			return 1
		}
	}
	return cmp.Or(cmp.Compare(x.Kind, y.Kind), strings.Compare(x.Key, y.Key), strings.Compare(string(x.Digest), string(y.Digest)))
}

// Count returns how many findings have the severity.
func (a *Audit) Count(sev finding.Severity) int {
	n := 0
	for _, f := range a.Findings {
		if f.Severity() == sev {
			n++
		}
	}
	return n
}

// WriteJSON writes the document and nothing else.
func (a *Audit) WriteJSON(w io.Writer) error {
	a.tally()
	findings := make([]findingJSON, len(a.Findings))
	for i, f := range a.Findings {
		findings[i] = findingJSON{Kind: f.Kind, Severity: f.Severity(), Repo: f.Repo, Project: f.Project, Digest: f.Digest, Key: f.Key,
			Size: f.Size, Tags: f.Tags, Details: f.Details, Explanation: f.Explain()}
	}
	// The document's keys in Audit's order, its findings as findingJSON.
	doc := struct {
		SchemaVersion int         `json:"schema_version"`
		StartedAt     time.Time   `json:"started_at"`
		FinishedAt    time.Time   `json:"finished_at"`
		Storage       StorageInfo `json:"storage"`
		Summary
		Findings []findingJSON    `json:"findings"`
		Requests map[string]int64 `json:"requests"`
	}{a.SchemaVersion, a.StartedAt, a.FinishedAt, a.Storage, a.Summary, findings, a.Requests}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
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
	fmt.Fprintf(w, "Findings:     %d broken, %d reclaimable\n", a.Count(finding.Broken), a.Count(finding.Reclaimable))
	fmt.Fprintf(w, "Took:         %s\n", a.FinishedAt.Sub(a.StartedAt).Round(time.Millisecond))
	fmt.Fprintf(w, "Requests:     %s\n\n", formatRequests(a.Requests))
	if err := writeSpaceTables(w, &a.Accounting, o); err != nil {
		return err
	}
	for _, f := range a.Findings {
		sigil := "-"
		if f.Severity() == finding.Broken {
			sigil = "!"
		}
		what := f.Key
		if what == "" {
			what = f.Digest.String()
		}
		fmt.Fprintf(w, "%s %-24s %s  (%s)\n", sigil, f.Kind, what, f.Explain())
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
