package reports

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/finding"
)

// syntheticAudit has repos repositories and perRepo orphan blobs and
// unused layer links in each, sized so that the largest are known.
func syntheticAudit(repos, perRepo int) *Audit {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a := &Audit{SchemaVersion: AuditSchemaVersion, StartedAt: start, FinishedAt: start.Add(time.Minute),
		Storage: NewStorageInfo("memory", "memory://"), Findings: []finding.Finding{}, Requests: map[string]int64{}}
	a.FindingsByKind = map[finding.Kind]int{}
	for _, k := range finding.Kinds() {
		a.FindingsByKind[k] = 0
	}
	for r := range repos {
		name := fmt.Sprintf("team%d/app%d", r%3, r)
		a.Repositories = append(a.Repositories, RepositorySpace{Name: name, Project: ProjectOf(name),
			Space: Space{TotalBytes: int64(1000 + r), ReclaimableBytes: int64(100 * (r + 1))}})
		for i := range perRepo {
			d := digest.FromString(fmt.Sprint(r, i))
			a.Add(finding.Finding{Kind: finding.OrphanBlob, Digest: d, Key: "docker/registry/v2/blobs/sha256/" + d.Encoded()[:2] + "/" + d.Encoded() + "/data",
				Size: int64(r*perRepo + i), Explanation: "no kept manifest references this blob"})
			a.Add(finding.Finding{Kind: finding.UnusedLayerLink, Repo: name, Digest: d, Key: "docker/registry/v2/repositories/" + name + "/_layers/sha256/" + d.Encoded() + "/link",
				Explanation: "no kept manifest of this repository uses the blob"})
		}
	}
	for p := range 3 {
		a.Projects = append(a.Projects, ProjectSpace{Name: fmt.Sprintf("team%d", p), Repositories: repos / 3})
	}
	a.Reclaimable.Bytes = int64(1 << 40) // the whole storage's: far above any repository's
	a.Totals.BlobBytes = int64(2 << 40)
	return a
}

// The HTML report is sized by repositories: a hundred times the findings
// adds next to nothing, and it lists the largest few of each kind, says
// how many it left out and which command lists them all.
func TestHTMLIsSizedByRepositories(t *testing.T) {
	size := func(a *Audit, o HTMLOptions) (int, string) {
		var b bytes.Buffer
		if err := a.WriteHTMLOpts(&b, o); err != nil {
			t.Fatal(err)
		}
		return b.Len(), b.String()
	}
	few, _ := size(syntheticAudit(200, 5), HTMLOptions{FindingsPerKind: 5})
	many, page := size(syntheticAudit(200, 300), HTMLOptions{FindingsPerKind: 5})
	if many > few+few/10 {
		t.Errorf("2,000 findings give %d bytes, 120,000 give %d: the report grows with findings", few, many)
	}
	listed := regexp.MustCompile(`<tr class="reclaimable" data-kind="(orphan_blob|unused_layer_link)">`).FindAllStringSubmatch(page, -1)
	if len(listed) != 10 {
		t.Errorf("%d findings listed, want 5 of each of 2 kinds", len(listed))
	}
	// The largest orphan blobs are the last written (sizes 59,995 to 59,999).
	for i := 59995; i < 60000; i++ {
		if !strings.Contains(page, `data-value="`+strconv.Itoa(i)+`">`) {
			t.Errorf("orphan blob of size %d, one of the 5 largest, is not listed", i)
		}
	}
	for _, want := range []string{`data-kind="orphan_blob" data-omitted="59995"`, `data-kind="unused_layer_link" data-omitted="59995"`,
		`data-shown="10" data-total="120000"`, "--format json"} {
		if !strings.Contains(page, want) {
			t.Errorf("report lacks %s", want)
		}
	}
	// Every repository has its row.
	table := regexp.MustCompile(`(?s)<table[^>]*id="table-repositories".*?</table>`).FindString(page)
	if n := strings.Count(table, `<tr><td>team`); n != 200 {
		t.Errorf("%d repository rows, want 200", n)
	}
	// The reclaimable chart is scaled to the largest repository (200 *
	// 100 bytes), not to the storage's total: its first bar is full.
	chart := regexp.MustCompile(`(?s)<svg[^>]*id="chart-reclaimable".*?</svg>`).FindString(page)
	first := regexp.MustCompile(`<g class="bar" data-label="([^"]+)" data-value="(\d+)">.*?<rect class="reclaimable" x="[0-9.]+" y="\d+" width="([0-9.]+)"`).FindStringSubmatch(strings.ReplaceAll(chart, "\n", ""))
	if first == nil || first[1] != "team1/app199" || first[2] != "20000" || first[3] != "320.0" {
		t.Errorf("first reclaimable bar %v, want team1/app199, 20000 bytes, full width 320", first)
	}
	// --top 0: every finding.
	_, all := size(syntheticAudit(20, 10), HTMLOptions{})
	if n := strings.Count(all, `<tr class="reclaimable" data-kind=`); n != 400 || strings.Contains(all, "findings-omitted") {
		t.Errorf("with no limit %d findings listed, want all 400", n)
	}
}
