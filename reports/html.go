package reports

import (
	"fmt"
	"html/template"
	"io"
	"sort"
	"time"
)

// The HTML report is one self-contained file: inline CSS, inline SVG
// charts drawn here, and a few lines of inline script to sort tables. Its
// Content-Security-Policy forbids every network fetch, so opening it never
// leaks that it was opened, nor to where.

// chartBars is how many bars a chart shows at most (the tables list all).
const chartBars = 20

// bar is one bar of a horizontal bar chart; Parts are stacked segments.
type bar struct {
	Label string
	Value int64
	Text  string
	Y     int
	Parts []barPart
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

const (
	chartLabelWidth = 260
	chartBarWidth   = 480
	chartRowHeight  = 22
)

func newChart(id, title, legend string, bars []bar, empty string) chart {
	var maxValue int64
	for _, b := range bars {
		maxValue = max(maxValue, b.Value)
	}
	for i := range bars {
		bars[i].Y = i * chartRowHeight
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
}

type kindRow struct {
	Kind, Severity string
	Count          int
}

// WriteHTML writes the report as one self-contained HTML file.
func (a *Audit) WriteHTML(w io.Writer) error {
	a.tally()
	v := htmlView{A: a, Took: a.FinishedAt.Sub(a.StartedAt).Round(time.Millisecond).String(),
		TotalBytes: HumanBytes(a.Totals.BlobBytes), Reclaimable: HumanBytes(a.Reclaimable.Bytes),
		Broken: a.Count(SeverityBroken), ReclaimableCount: a.Count(SeverityReclaimable)}

	var projectBars, repoBars, reclaimBars, kindBars []bar
	for _, p := range a.TopProjects(chartBars, ByTotal) {
		projectBars = append(projectBars, spaceBar(projectLabel(p.Name), p.Space))
	}
	for _, r := range a.TopRepositories(chartBars, ByTotal) {
		repoBars = append(repoBars, spaceBar(r.Name, r.Space))
	}
	kept := a.Totals.BlobBytes - a.Reclaimable.Bytes
	reclaimBars = append(reclaimBars, bar{Label: "all storage", Value: a.Totals.BlobBytes, Text: HumanBytes(a.Reclaimable.Bytes) + " of " + HumanBytes(a.Totals.BlobBytes),
		Parts: []barPart{{Class: "reclaimable", Value: a.Reclaimable.Bytes}, {Class: "kept", Value: max(kept, 0)}}})
	for _, r := range a.TopRepositories(chartBars, ByReclaimable) {
		if r.ReclaimableBytes > 0 {
			reclaimBars = append(reclaimBars, bar{Label: r.Name, Value: r.ReclaimableBytes, Text: HumanBytes(r.ReclaimableBytes),
				Parts: []barPart{{Class: "reclaimable", Value: r.ReclaimableBytes}}})
		}
	}
	for _, k := range Kinds() {
		n := a.FindingsByKind[k]
		v.Kinds = append(v.Kinds, kindRow{Kind: k, Severity: severity[k], Count: n})
		if n > 0 {
			kindBars = append(kindBars, bar{Label: k, Value: int64(n), Text: fmt.Sprint(n), Parts: []barPart{{Class: severity[k], Value: int64(n)}}})
		}
	}
	sort.SliceStable(kindBars, func(i, j int) bool { return kindBars[i].Value > kindBars[j].Value })
	v.Charts = []chart{
		newChart("chart-projects", "Space by project", "unique / shared bytes", projectBars, "no projects"),
		newChart("chart-repositories", "Space by repository", "unique / shared bytes", repoBars, "no repositories"),
		newChart("chart-reclaimable", "Reclaimable space", "what gc would free, in all and by repository", reclaimBars, ""),
		newChart("chart-findings", "Findings by kind", "broken / reclaimable", kindBars, "no findings"),
	}
	return htmlTemplate.Execute(w, v)
}

var htmlTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"human":   HumanBytes,
	"project": projectLabel,
	"plus":    func(a, b int) int { return a + b },
	"f1":      func(f float64) string { return fmt.Sprintf("%.1f", f) },
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<title>regsweep audit: {{.A.Storage.Location}}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}
.meta{color:#666}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}
.card{border:1px solid #ddd;border-radius:6px;padding:10px 14px;min-width:150px}
.card b{display:block;font-size:20px}
svg text{font-size:12px;fill:#222}
rect.unique{fill:#3b6fb6}rect.shared{fill:#9bb7e0}rect.reclaimable{fill:#e0a030}rect.kept{fill:#cfd8e3}rect.broken{fill:#c0392b}
.legend{color:#666;font-size:12px}
table{border-collapse:collapse;margin:8px 0;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid #e5e5e5;padding:4px 10px;text-align:left}
td.n,th.n{text-align:right}
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
<div class="card" id="card-total">stored<b data-bytes="{{.A.Totals.BlobBytes}}">{{.TotalBytes}}</b>{{.A.Totals.Blobs}} blobs, {{.A.Totals.Repositories}} repositories</div>
<div class="card" id="card-reclaimable">reclaimable<b data-bytes="{{.A.Reclaimable.Bytes}}">{{.Reclaimable}}</b>{{.A.Reclaimable.Blobs}} blobs, {{.A.Reclaimable.Manifests}} manifests</div>
<div class="card" id="card-broken">broken findings<b data-count="{{.Broken}}">{{.Broken}}</b></div>
<div class="card" id="card-reclaimable-findings">reclaimable findings<b data-count="{{.ReclaimableCount}}">{{.ReclaimableCount}}</b></div>
</div>
{{range .Charts}}
<h2>{{.Title}}</h2>
<div class="legend">{{.Legend}}</div>
{{if .Bars}}<svg class="chart" id="{{.ID}}" width="860" height="{{.Height}}" role="img" aria-label="{{.Title}}">
{{range $b := .Bars}}<g class="bar" data-label="{{$b.Label}}" data-value="{{$b.Value}}">
<text x="252" y="{{plus $b.Y 15}}" text-anchor="end">{{$b.Label}}</text>
{{range $b.Parts}}<rect class="{{.Class}}" x="{{f1 .X}}" y="{{plus $b.Y 3}}" width="{{f1 .W}}" height="16" data-value="{{.Value}}"></rect>{{end}}
<text class="value" x="748" y="{{plus $b.Y 15}}">{{$b.Text}}</text>
</g>{{end}}
</svg>{{else}}<p class="legend">{{.Empty}}</p>{{end}}
{{end}}

<h2>Projects</h2>
<table class="sortable" id="table-projects" data-default-sort="total_bytes">
<thead><tr><th data-key="name">project</th><th class="n" data-key="repositories">repositories</th><th class="n" data-key="tags">tags</th><th class="n" data-key="total_bytes">total</th><th class="n" data-key="unique_bytes">unique</th><th class="n" data-key="shared_bytes">shared</th><th class="n" data-key="reclaimable_bytes">reclaimable</th><th class="n" data-key="findings">findings</th></tr></thead>
<tbody>{{range .A.Projects}}<tr data-name="{{.Name}}">
<td data-value="{{.Name}}">{{project .Name}}</td><td class="n" data-value="{{.Repositories}}">{{.Repositories}}</td><td class="n" data-value="{{.Tags}}">{{.Tags}}</td>
<td class="n" data-value="{{.TotalBytes}}">{{human .TotalBytes}}</td><td class="n" data-value="{{.UniqueBytes}}">{{human .UniqueBytes}}</td>
<td class="n" data-value="{{.SharedBytes}}">{{human .SharedBytes}}</td><td class="n" data-value="{{.ReclaimableBytes}}">{{human .ReclaimableBytes}}</td>
<td class="n" data-value="{{.Findings}}">{{.Findings}}</td></tr>
{{end}}</tbody></table>

<h2>Repositories</h2>
<table class="sortable" id="table-repositories" data-default-sort="total_bytes">
<thead><tr><th data-key="name">repository</th><th data-key="project">project</th><th class="n" data-key="tags">tags</th><th class="n" data-key="manifests">manifests</th><th class="n" data-key="blobs">blobs</th><th class="n" data-key="total_bytes">total</th><th class="n" data-key="unique_bytes">unique</th><th class="n" data-key="shared_bytes">shared</th><th class="n" data-key="reclaimable_bytes">reclaimable</th><th class="n" data-key="findings">findings</th></tr></thead>
<tbody>{{range .A.Repositories}}<tr data-name="{{.Name}}">
<td data-value="{{.Name}}">{{.Name}}</td><td data-value="{{.Project}}">{{project .Project}}</td><td class="n" data-value="{{.Tags}}">{{.Tags}}</td>
<td class="n" data-value="{{.Manifests}}">{{.Manifests}}</td><td class="n" data-value="{{.Blobs}}">{{.Blobs}}</td>
<td class="n" data-value="{{.TotalBytes}}">{{human .TotalBytes}}</td><td class="n" data-value="{{.UniqueBytes}}">{{human .UniqueBytes}}</td>
<td class="n" data-value="{{.SharedBytes}}">{{human .SharedBytes}}</td><td class="n" data-value="{{.ReclaimableBytes}}">{{human .ReclaimableBytes}}</td>
<td class="n" data-value="{{.Findings}}">{{.Findings}}</td></tr>
{{end}}</tbody></table>

<h2>Findings by kind</h2>
<table class="sortable" id="table-kinds" data-default-sort="count">
<thead><tr><th data-key="kind">kind</th><th data-key="severity">severity</th><th class="n" data-key="count">findings</th></tr></thead>
<tbody>{{range .Kinds}}<tr data-kind="{{.Kind}}" class="{{.Severity}}"><td data-value="{{.Kind}}">{{.Kind}}</td><td data-value="{{.Severity}}">{{.Severity}}</td><td class="n" data-value="{{.Count}}">{{.Count}}</td></tr>
{{end}}</tbody></table>

<h2>Findings</h2>
<table class="sortable" id="table-findings">
<thead><tr><th data-key="kind">kind</th><th data-key="repository">repository</th><th data-key="object">digest / key</th><th class="n" data-key="size">size</th><th data-key="explanation">explanation</th></tr></thead>
<tbody>{{range .A.Findings}}<tr class="{{.Severity}}" data-kind="{{.Kind}}">
<td data-value="{{.Kind}}">{{.Kind}}</td><td data-value="{{.Repo}}">{{.Repo}}</td><td data-value="{{.Key}}">{{if .Digest}}<code>{{.Digest}}</code><br>{{end}}<code>{{.Key}}</code></td>
<td class="n" data-value="{{.Size}}">{{human .Size}}</td><td data-value="{{.Explanation}}">{{.Explanation}}</td></tr>
{{end}}</tbody></table>

<script>
// Sortable tables: click a header to sort by it (numbers by their exact
// value, in data-value); tables with data-default-sort start sorted by it,
// largest first.
(function () {
  function sortBy(table, col, dir) {
    var tbody = table.tBodies[0], rows = Array.prototype.slice.call(tbody.rows);
    var numeric = table.tHead.rows[0].cells[col].classList.contains('n');
    rows.sort(function (a, b) {
      var x = a.cells[col].getAttribute('data-value'), y = b.cells[col].getAttribute('data-value');
      var c = numeric ? Number(x) - Number(y) : x.localeCompare(y);
      return dir === 'asc' ? c : -c;
    });
    rows.forEach(function (r) { tbody.appendChild(r); });
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
