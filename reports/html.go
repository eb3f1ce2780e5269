package reports

import (
	"cmp"
	"fmt"
	"html/template"
	"io"
	"slices"
	"sort"
	"time"

	"github.com/regsweep/regsweep/finding"
)

// The HTML report is one self-contained file: inline CSS, inline SVG
// charts drawn here, and a few lines of inline script to sort tables. Its
// Content-Security-Policy forbids every network fetch, so opening it never
// leaks that it was opened, nor to where.
//
// It is sized by repositories, not by findings: the totals, the charts and
// the per-project and per-repository tables are complete, and of the
// findings it has the counts by kind and the largest few of each kind. A
// store of a million blobs can have a million findings; the JSON report
// lists them all.

// chartBars is how many bars a chart shows at most (the tables list all).
const chartBars = 10

// DefaultFindingsPerKind is how many findings of each kind the HTML report
// shows when HTMLOptions does not say.
const DefaultFindingsPerKind = 10

// HTMLOptions size the HTML report.
type HTMLOptions struct {
	// FindingsPerKind is how many findings of each kind are listed, the
	// largest first (all when <= 0).
	FindingsPerKind int
}

// bar is one bar of a horizontal bar chart; Parts are stacked segments.
type bar struct {
	Label, Title string
	Value        int64
	Text         string
	Y            int
	Parts        []barPart
}

type barPart struct {
	Class string
	X, W  float64
	Value int64
}

type chart struct {
	ID, Title, Legend string
	Bars              []bar
	Height            int
	Empty             string
}

// Chart geometry, in the SVG's own units (it scales to its box).
const (
	chartWidth      = 620
	chartLabelWidth = 190
	chartBarWidth   = 320
	chartRowHeight  = 22
	chartLabelRunes = 28
)

// newChart scales every bar to the largest one.
func newChart(id, title, legend string, bars []bar, empty string) chart {
	var maxValue int64
	for _, b := range bars {
		maxValue = max(maxValue, b.Value)
	}
	for i := range bars {
		bars[i].Y = i * chartRowHeight
		bars[i].Title = bars[i].Label
		bars[i].Label = fitName(bars[i].Label, chartLabelRunes)
		x := float64(chartLabelWidth)
		for j := range bars[i].Parts {
			w := 0.0
			if maxValue > 0 {
				w = float64(chartBarWidth) * float64(bars[i].Parts[j].Value) / float64(maxValue)
			}
			bars[i].Parts[j].X, bars[i].Parts[j].W = x, w
			x += w
		}
	}
	return chart{ID: id, Title: title, Legend: legend, Bars: bars, Height: max(len(bars), 1) * chartRowHeight, Empty: empty}
}

func spaceBar(label string, s Space) bar {
	return bar{Label: label, Value: s.TotalBytes, Text: HumanBytes(s.TotalBytes), Parts: []barPart{
		{Class: "unique", Value: s.UniqueBytes}, {Class: "shared", Value: s.SharedBytes}}}
}

type htmlView struct {
	A                        *Audit
	Took                     string
	TotalBytes, Reclaimable  string
	Broken, ReclaimableCount int
	Charts                   []chart
	Kinds                    []kindRow
	// Findings are those listed: the largest PerKind of each kind.
	Findings     []finding.Finding
	PerKind      int
	Shown, Total int
	Omitted      []kindRow // kinds with findings left out, Count is how many
}

type kindRow struct {
	Kind         finding.Kind
	Severity     finding.Severity
	Count, Shown int
}

// WriteHTML writes the report as one self-contained HTML file, with the
// default number of findings of each kind.
func (a *Audit) WriteHTML(w io.Writer) error {
	return a.WriteHTMLOpts(w, HTMLOptions{FindingsPerKind: DefaultFindingsPerKind})
}

// WriteHTMLOpts writes the report as one self-contained HTML file.
func (a *Audit) WriteHTMLOpts(w io.Writer, o HTMLOptions) error {
	a.tally()
	v := htmlView{A: a, Took: a.FinishedAt.Sub(a.StartedAt).Round(time.Millisecond).String(),
		TotalBytes: HumanBytes(a.Totals.BlobBytes), Reclaimable: HumanBytes(a.Reclaimable.Bytes),
		Broken: a.Count(finding.Broken), ReclaimableCount: a.Count(finding.Reclaimable), PerKind: o.FindingsPerKind}

	var projectBars, repoBars, reclaimBars, kindBars []bar
	for _, p := range a.TopProjects(chartBars, ByTotal) {
		projectBars = append(projectBars, spaceBar(projectLabel(p.Name), p.Space))
	}
	for _, r := range a.TopRepositories(chartBars, ByTotal) {
		repoBars = append(repoBars, spaceBar(r.Name, r.Space))
	}
	// Scaled to the largest repository's: against the whole storage, every
	// bar of a large registry would be a hairline.
	for _, r := range a.TopRepositories(chartBars, ByReclaimable) {
		if r.ReclaimableBytes > 0 {
			reclaimBars = append(reclaimBars, bar{Label: r.Name, Value: r.ReclaimableBytes, Text: HumanBytes(r.ReclaimableBytes),
				Parts: []barPart{{Class: "reclaimable", Value: r.ReclaimableBytes}}})
		}
	}
	shown := findingsToShow(a.Findings, o.FindingsPerKind)
	for _, k := range kindOrder(a.FindingsByKind) {
		n := a.FindingsByKind[k]
		row := kindRow{Kind: k, Severity: k.Severity(), Count: n, Shown: shown.perKind[k]}
		v.Kinds = append(v.Kinds, row)
		if n > 0 {
			kindBars = append(kindBars, bar{Label: string(k), Value: int64(n), Text: group(int64(n)), Parts: []barPart{{Class: string(k.Severity()), Value: int64(n)}}})
		}
		if row.Shown < n {
			v.Omitted = append(v.Omitted, kindRow{Kind: k, Severity: row.Severity, Count: n - row.Shown, Shown: row.Shown})
		}
	}
	sort.SliceStable(kindBars, func(i, j int) bool { return kindBars[i].Value > kindBars[j].Value })
	v.Findings, v.Shown, v.Total = shown.findings, len(shown.findings), len(a.Findings)
	reclaimLegend := fmt.Sprintf("what gc would free in each repository (the largest %d), scaled to the largest; %s in all", chartBars, v.Reclaimable)
	v.Charts = []chart{
		newChart("chart-projects", "Space by project", "unique / shared bytes", projectBars, "no projects"),
		newChart("chart-repositories", "Space by repository", "unique / shared bytes", repoBars, "no repositories"),
		newChart("chart-reclaimable", "Reclaimable space", reclaimLegend, reclaimBars, "no repository has reclaimable space"),
		newChart("chart-findings", "Findings by kind", "broken / reclaimable", kindBars, "no findings"),
	}
	return htmlTemplate.Execute(w, v)
}

// kindOrder lists the kinds broken first, then by name (the order of the
// findings).
func kindOrder(byKind map[finding.Kind]int) []finding.Kind {
	kinds := finding.Kinds()
	for k := range byKind {
		if !slices.Contains(kinds, k) {
			kinds = append(kinds, k)
		}
	}
	slices.SortStableFunc(kinds, func(a, b finding.Kind) int {
		if (a.Severity() == finding.Broken) != (b.Severity() == finding.Broken) {
			if a.Severity() == finding.Broken {
				return -1
			}
			return 1
		}
		return cmp.Compare(a, b)
	})
	return kinds
}

type shownFindings struct {
	findings []finding.Finding
	perKind  map[finding.Kind]int
}

// findingsToShow picks the perKind largest findings of each kind (by
// size, then key), all when perKind <= 0, in the order of the findings.
func findingsToShow(all []finding.Finding, perKind int) shownFindings {
	s := shownFindings{perKind: map[finding.Kind]int{}}
	if perKind <= 0 {
		s.findings = all
		for _, f := range all {
			s.perKind[f.Kind]++
		}
		return s
	}
	larger := func(i, j int) bool { // all[i] goes before all[j]
		return cmp.Or(cmp.Compare(all[j].Size, all[i].Size), cmp.Compare(all[i].Key, all[j].Key)) < 0
	}
	// The largest so far of each kind, largest first: a few each, so an
	// insertion is cheap and a million findings are read once.
	top := map[finding.Kind][]int{}
	for i, f := range all {
		t := top[f.Kind]
		if len(t) == perKind && !larger(i, t[len(t)-1]) {
			continue
		}
		at := len(t)
		for at > 0 && larger(i, t[at-1]) {
			at--
		}
		t = slices.Insert(t, at, i)
		if len(t) > perKind {
			t = t[:perKind]
		}
		top[f.Kind] = t
	}
	var picked []int
	for k, t := range top {
		s.perKind[k] = len(t)
		picked = append(picked, t...)
	}
	slices.Sort(picked)
	for _, i := range picked {
		s.findings = append(s.findings, all[i])
	}
	return s
}

// group writes n with thousands separators.
func group(n int64) string {
	s := fmt.Sprint(n)
	var b []byte
	for i := range len(s) {
		if i > 0 && s[i-1] != '-' && (len(s)-i)%3 == 0 {
			b = append(b, ',')
		}
		b = append(b, s[i])
	}
	return string(b)
}

var htmlTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"human":   HumanBytes,
	"project": projectLabel,
	"plus":    func(a, b int) int { return a + b },
	"f1":      func(f float64) string { return fmt.Sprintf("%.1f", f) },
	"group":   func(n int) string { return group(int64(n)) },
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>regsweep audit: {{.A.Storage.Location}}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:20px 24px;color:#222;background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 6px}.charts h2{margin:0 0 2px;font-size:15px}
.meta{color:#666}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:12px 0}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 14px;min-width:150px}
.card b{display:block;font-size:20px}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:14px 28px}
svg.chart{width:100%;height:auto;display:block}
svg text{font-size:12px;fill:#222}
rect.unique{fill:#3b6fb6}rect.shared{fill:#9bb7e0}rect.reclaimable{fill:#e0a030}rect.kept{fill:#cfd8e3}rect.broken{fill:#c0392b}
.legend{color:#666;font-size:12px}
table{border-collapse:collapse;margin:8px 0;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid #e5e5e5;padding:3px 10px;text-align:left}
th.n{text-align:right}
table.num2 td:nth-child(n+2),table.num3 td:nth-child(n+3){text-align:right}
th{cursor:pointer;user-select:none;background:#f6f6f6}
th[data-dir=asc]::after{content:" \25B2"}th[data-dir=desc]::after{content:" \25BC"}
tr.broken td:first-child{color:#c0392b;font-weight:bold}
code{font-size:12px}
</style>
</head>
<body>
<h1>regsweep audit</h1>
<div class="meta">{{.A.Storage.Driver}} · {{.A.Storage.Location}} · started {{.A.StartedAt.Format "2006-01-02 15:04:05 MST"}} · took {{.Took}} · schema {{.A.SchemaVersion}}</div>
<div class="cards">
<div class="card" id="card-total">stored<b data-bytes="{{.A.Totals.BlobBytes}}">{{.TotalBytes}}</b>{{group .A.Totals.Blobs}} blobs, {{group .A.Totals.Repositories}} repositories</div>
<div class="card" id="card-reclaimable">reclaimable<b data-bytes="{{.A.Reclaimable.Bytes}}">{{.Reclaimable}}</b>{{group .A.Reclaimable.Blobs}} blobs, {{group .A.Reclaimable.Manifests}} manifests</div>
<div class="card" id="card-broken">broken findings<b data-count="{{.Broken}}">{{group .Broken}}</b></div>
<div class="card" id="card-reclaimable-findings">reclaimable findings<b data-count="{{.ReclaimableCount}}">{{group .ReclaimableCount}}</b></div>
</div>
<div class="charts">
{{range .Charts}}<section>
<h2>{{.Title}}</h2>
<div class="legend">{{.Legend}}</div>
{{if .Bars}}<svg class="chart" id="{{.ID}}" viewBox="0 0 620 {{.Height}}" role="img" aria-label="{{.Title}}">
{{range $b := .Bars}}<g class="bar" data-label="{{$b.Title}}" data-value="{{$b.Value}}"><title>{{$b.Title}}</title>
<text x="182" y="{{plus $b.Y 15}}" text-anchor="end">{{$b.Label}}</text>
{{range $b.Parts}}<rect class="{{.Class}}" x="{{f1 .X}}" y="{{plus $b.Y 3}}" width="{{f1 .W}}" height="16" data-value="{{.Value}}"></rect>{{end}}
<text class="value" x="518" y="{{plus $b.Y 15}}">{{$b.Text}}</text>
</g>{{end}}
</svg>{{else}}<p class="legend" id="{{.ID}}">{{.Empty}}</p>{{end}}
</section>
{{end}}</div>

<h2>Projects</h2>
<table class="sortable num2" id="table-projects" data-default-sort="total_bytes">
<thead><tr><th data-key="name">project</th><th class="n" data-key="repositories">repositories</th><th class="n" data-key="tags">tags</th><th class="n" data-key="total_bytes">total</th><th class="n" data-key="unique_bytes">unique</th><th class="n" data-key="shared_bytes">shared</th><th class="n" data-key="reclaimable_bytes">reclaimable</th><th class="n" data-key="findings">findings</th></tr></thead>
<tbody>{{range .A.Projects}}<tr><td>{{project .Name}}<td data-value="{{.Repositories}}">{{.Repositories}}<td data-value="{{.Tags}}">{{.Tags}}<td data-value="{{.TotalBytes}}">{{human .TotalBytes}}<td data-value="{{.UniqueBytes}}">{{human .UniqueBytes}}<td data-value="{{.SharedBytes}}">{{human .SharedBytes}}<td data-value="{{.ReclaimableBytes}}">{{human .ReclaimableBytes}}<td data-value="{{.Findings}}">{{.Findings}}</tr>
{{end}}</tbody></table>

<h2>Repositories</h2>
<table class="sortable num3" id="table-repositories" data-default-sort="total_bytes">
<thead><tr><th data-key="name">repository</th><th data-key="project">project</th><th class="n" data-key="tags">tags</th><th class="n" data-key="manifests">manifests</th><th class="n" data-key="blobs">blobs</th><th class="n" data-key="total_bytes">total</th><th class="n" data-key="unique_bytes">unique</th><th class="n" data-key="shared_bytes">shared</th><th class="n" data-key="reclaimable_bytes">reclaimable</th><th class="n" data-key="findings">findings</th></tr></thead>
<tbody>{{range .A.Repositories}}<tr><td>{{.Name}}<td>{{project .Project}}<td data-value="{{.Tags}}">{{.Tags}}<td data-value="{{.Manifests}}">{{.Manifests}}<td data-value="{{.Blobs}}">{{.Blobs}}<td data-value="{{.TotalBytes}}">{{human .TotalBytes}}<td data-value="{{.UniqueBytes}}">{{human .UniqueBytes}}<td data-value="{{.SharedBytes}}">{{human .SharedBytes}}<td data-value="{{.ReclaimableBytes}}">{{human .ReclaimableBytes}}<td data-value="{{.Findings}}">{{.Findings}}</tr>
{{end}}</tbody></table>

<h2>Findings by kind</h2>
<table class="sortable" id="table-kinds" data-default-sort="count">
<thead><tr><th data-key="kind">kind</th><th data-key="severity">severity</th><th class="n" data-key="count">findings</th><th class="n" data-key="shown">listed below</th></tr></thead>
<tbody>{{range .Kinds}}<tr data-kind="{{.Kind}}" class="{{.Severity}}"><td data-value="{{.Kind}}">{{.Kind}}</td><td data-value="{{.Severity}}">{{.Severity}}</td><td class="n" data-value="{{.Count}}">{{.Count}}</td><td class="n" data-value="{{.Shown}}">{{.Shown}}</td></tr>
{{end}}</tbody></table>

<h2>Findings</h2>
<p id="findings-note" data-shown="{{.Shown}}" data-total="{{.Total}}">{{if lt .Shown .Total}}Listed: {{group .Shown}} of {{group .Total}} findings, the {{.PerKind}} largest of each kind.
The JSON report lists every finding: run the same <code>regsweep audit</code> with <code>--format json</code> (its <code>findings</code> array;
for one kind, e.g. <code>--format json | jq '.findings[] | select(.kind == "orphan_blob")'</code>), or with <code>--top 0</code> for an HTML report of all of them.{{else}}All {{group .Total}} findings.{{end}}</p>
{{if .Omitted}}<ul id="findings-omitted">{{range .Omitted}}<li data-kind="{{.Kind}}" data-omitted="{{.Count}}">{{.Kind}}: {{group .Count}} more not listed</li>{{end}}</ul>{{end}}
<table class="sortable" id="table-findings">
<thead><tr><th data-key="kind">kind</th><th data-key="repository">repository</th><th data-key="object">digest / key</th><th class="n" data-key="size">size</th><th data-key="explanation">explanation</th></tr></thead>
<tbody>{{range .Findings}}<tr class="{{.Severity}}" data-kind="{{.Kind}}">
<td data-value="{{.Kind}}">{{.Kind}}</td><td data-value="{{.Repo}}">{{.Repo}}</td><td data-value="{{.Key}}">{{if .Digest}}<code>{{.Digest}}</code><br>{{end}}<code>{{.Key}}</code></td>
<td class="n" data-value="{{.Size}}">{{human .Size}}</td><td data-value="{{.Explain}}">{{.Explain}}</td></tr>
{{end}}</tbody></table>

<script>
// Sortable tables: click a header to sort by it (numbers by their exact
// value: data-value, else the cell's text); tables with data-default-sort
// start sorted by it, largest first.
(function () {
  function value(cell) {
    var v = cell.getAttribute('data-value');
    return v === null ? cell.textContent : v;
  }
  function sortBy(table, col, dir) {
    var tbody = table.tBodies[0], rows = Array.prototype.slice.call(tbody.rows);
    var numeric = table.tHead.rows[0].cells[col].classList.contains('n');
    var keyed = rows.map(function (r) { var v = value(r.cells[col]); return [numeric ? Number(v) : v, r]; });
    keyed.sort(function (a, b) {
      var c = numeric ? a[0] - b[0] : a[0].localeCompare(b[0]);
      return dir === 'asc' ? c : -c;
    });
    var frag = document.createDocumentFragment();
    keyed.forEach(function (k) { frag.appendChild(k[1]); });
    tbody.appendChild(frag);
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      if (i === col) { th.setAttribute('data-dir', dir); } else { th.removeAttribute('data-dir'); }
    });
    table.setAttribute('data-sorted-by', table.tHead.rows[0].cells[col].getAttribute('data-key'));
    table.setAttribute('data-sort-dir', dir);
  }
  Array.prototype.forEach.call(document.querySelectorAll('table.sortable'), function (table) {
    var ths = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(ths, function (th, i) {
      th.addEventListener('click', function () {
        sortBy(table, i, th.getAttribute('data-dir') === 'desc' ? 'asc' : 'desc');
      });
      if (th.getAttribute('data-key') === table.getAttribute('data-default-sort')) { sortBy(table, i, 'desc'); }
    });
  });
  document.body.setAttribute('data-ready', 'true');
})();
</script>
</body>
</html>
`))
