package reports

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/regsweep/regsweep/finding"
	"github.com/regsweep/regsweep/gc"
	"github.com/regsweep/regsweep/internal/regtree"
	"github.com/regsweep/regsweep/mark"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/sweep"
	"github.com/regsweep/regsweep/walker"
)

// handTree is a small registry whose accounting is computed by hand below.
type handTree struct {
	inv  *walker.Inventory
	res  *mark.Result
	plan *sweep.Plan
	// Sizes of the manifests (the generator decides their JSON).
	m1, m2, m3, m4, m5 int64
	uploadBytes        int64
}

func buildHandTree(t *testing.T) handTree {
	t.Helper()
	ctx := context.Background()
	d := storage.NewMemory(time.Now, nil)
	w := regtree.NewWriter(d, 4)
	shared := bytes.Repeat([]byte("S"), 1000)
	la := bytes.Repeat([]byte("a"), 300) // in team/app and other/db: shared across projects
	lw := bytes.Repeat([]byte("w"), 500)
	ld := bytes.Repeat([]byte("d"), 700)
	ls := bytes.Repeat([]byte("s"), 50)
	lo := bytes.Repeat([]byte("o"), 80)
	var h handTree
	img1 := w.Image("team/app", []byte(`{"c":"app"}`), shared, la) // config 11 bytes
	w.Tag("team/app", "v1", img1.Digest)
	img2 := w.Image("team/web", []byte(`{"c":"web"}`), shared, lw)
	w.Tag("team/web", "v1", img2.Digest)
	img3 := w.Image("other/db", []byte(`{"c":"db!"}`), ld, la)
	w.Tag("other/db", "v1", img3.Digest)
	img4 := w.Image("solo", []byte(`{"c":"sol"}`), ls)
	w.Tag("solo", "latest", img4.Digest)
	img5 := w.Image("solo", []byte(`{"c":"old"}`), lo) // untagged: reclaimable
	w.Blob(bytes.Repeat([]byte("x"), 64))              // orphan: linked by nobody
	data := bytes.Repeat([]byte("u"), 123)
	w.Upload("team/app", "up-1", time.Now().Add(-30*24*time.Hour), data)
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	h.m1, h.m2, h.m3, h.m4, h.m5 = img1.Size, img2.Size, img3.Size, img4.Size, img5.Size
	// startedat (RFC 3339, 20 bytes), hash state ("hash-state") and data.
	h.uploadBytes = int64(len(time.Now().UTC().Format(time.RFC3339))) + int64(len("hash-state")) + 123

	a, err := gc.Analyze(ctx, d, mark.StorageSource(d, "", 0), gc.Options{DeleteUntagged: true, MaxDeleteFraction: 1})
	if err != nil {
		t.Fatal(err)
	}
	h.inv, h.res, h.plan = a.Inventory, a.Mark, a.Plan
	return h
}

func TestAccountingIsExactOnAHandComputedTree(t *testing.T) {
	h := buildHandTree(t)
	const cfg = 11 // every config above is 11 bytes
	acc := Account(h.inv, h.res, h.plan)

	type want struct {
		blobs                              int
		total, unique, shared, reclaimable int64
	}
	wantRepos := map[string]want{
		// m1, config, shared layer (also team/web), la (also other/db)
		"team/app": {4, h.m1 + cfg + 1000 + 300, h.m1 + cfg, 1300, h.uploadBytes},
		"team/web": {4, h.m2 + cfg + 1000 + 500, h.m2 + cfg + 500, 1000, 0},
		"other/db": {4, h.m3 + cfg + 700 + 300, h.m3 + cfg + 700, 300, 0},
		// The untagged image (m5, its config, lo) is reclaimable, not kept.
		"solo": {3, h.m4 + cfg + 50, h.m4 + cfg + 50, 0, h.m5 + cfg + 80},
	}
	if len(acc.Repositories) != len(wantRepos) {
		t.Fatalf("%d repositories, want %d", len(acc.Repositories), len(wantRepos))
	}
	for _, r := range acc.Repositories {
		w := wantRepos[r.Name]
		got := want{r.Blobs, r.TotalBytes, r.UniqueBytes, r.SharedBytes, r.ReclaimableBytes}
		if got != w {
			t.Errorf("%s: got %+v, want %+v", r.Name, got, w)
		}
		if r.Project != ProjectOf(r.Name) {
			t.Errorf("%s: project %q", r.Name, r.Project)
		}
	}
	wantProjects := map[string]want{
		// team: m1, m2, two configs, shared once, la, lw; la is also other's.
		"team":  {7, h.m1 + h.m2 + 2*cfg + 1000 + 300 + 500, h.m1 + h.m2 + 2*cfg + 1000 + 500, 300, h.uploadBytes},
		"other": {4, h.m3 + cfg + 700 + 300, h.m3 + cfg + 700, 300, 0},
		"":      {3, h.m4 + cfg + 50, h.m4 + cfg + 50, 0, h.m5 + cfg + 80},
	}
	if len(acc.Projects) != 3 {
		t.Fatalf("projects %+v", acc.Projects)
	}
	for _, p := range acc.Projects {
		w := wantProjects[p.Name]
		got := want{p.Blobs, p.TotalBytes, p.UniqueBytes, p.SharedBytes, p.ReclaimableBytes}
		if got != w {
			t.Errorf("project %q: got %+v, want %+v", p.Name, got, w)
		}
	}
	if p := acc.Projects[0]; p.Name != "" || p.Repositories != 1 || acc.Projects[2].Name != "team" || acc.Projects[2].Repositories != 2 {
		t.Errorf("projects not sorted by name or miscounted: %+v", acc.Projects)
	}
	// The global figure also has the orphan (64 bytes), linked by nobody.
	s, _ := Summarize(h.inv, h.res, h.plan)
	if wantBytes := h.m5 + cfg + 80 + 64 + h.uploadBytes; s.Reclaimable.Bytes != wantBytes {
		t.Errorf("reclaimable %d bytes, want %d", s.Reclaimable.Bytes, wantBytes)
	}
	// The summary's totals are the inventory report's, counted without it.
	inv := BuildInventory(h.inv, StorageInfo{}, nil, time.Time{}, time.Time{})
	if s.Totals != inv.Totals || s.Totals.Repositories == 0 || s.Totals.LayerLinks == 0 {
		t.Errorf("summary totals %+v, inventory report's %+v", s.Totals, inv.Totals)
	}
	var sum Counts
	for _, r := range inv.Repositories {
		sum.Repositories += r.Repositories
		sum.Tags += r.Tags
		sum.Manifests += r.Manifests
		sum.LayerLinks += r.LayerLinks
		sum.Uploads += r.Uploads
	}
	if sum.Repositories != inv.Totals.Repositories || sum.Tags != inv.Totals.Tags || sum.Manifests != inv.Totals.Manifests ||
		sum.LayerLinks != inv.Totals.LayerLinks || sum.Uploads != inv.Totals.Uploads {
		t.Errorf("repository rows sum to %+v, totals %+v", sum, inv.Totals)
	}
	top := acc.TopRepositories(2, ByTotal)
	if len(top) != 2 || top[0].Name != "team/web" || top[1].Name != "team/app" {
		t.Errorf("top 2 by total: %v", top)
	}
}

func TestProjectOf(t *testing.T) {
	for in, want := range map[string]string{"library/nginx": "library", "a/b/c": "a", "solo": ""} {
		if got := ProjectOf(in); got != want {
			t.Errorf("ProjectOf(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestStorageInfoRoot(t *testing.T) {
	cases := []struct{ driver, location, root string }{
		{"filesystem", "filesystem:///var/lib/registry", "/var/lib/registry"},
		{"s3", "s3://127.0.0.1:9000/bucket/registry", "bucket/registry"},
		{"s3", "s3://127.0.0.1:9000/bucket/", "bucket"},
		{"swift", "swift://swift.example/container/prefix", "container/prefix"},
	}
	for _, c := range cases {
		if got := NewStorageInfo(c.driver, c.location).Root; got != c.root {
			t.Errorf("%s: root %q, want %q", c.location, got, c.root)
		}
	}
}

func sampleAudit(t *testing.T) (*Audit, handTree) {
	h := buildHandTree(t)
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a := BuildAudit(h.inv, h.res, h.plan, NewStorageInfo("memory", "memory://"), map[string]int64{"list": 3, "get": 9}, start, start.Add(2*time.Second))
	a.Add(finding.Finding{Kind: finding.DigestMismatch, Digest: digest.FromString("x"), Key: "docker/registry/v2/blobs/x", Explanation: "flipped"})
	return a, h
}

func TestAuditFormatsAgree(t *testing.T) {
	a, h := sampleAudit(t)
	var js bytes.Buffer
	if err := a.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(js.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"schema_version", "started_at", "finished_at", "storage", "totals", "reclaimable", "findings_by_kind",
		"findings", "requests", "repositories", "projects", "durations_seconds"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	st := doc["storage"].(map[string]any)
	for _, k := range []string{"driver", "root", "location"} {
		if _, ok := st[k]; !ok {
			t.Errorf("storage lacks %q", k)
		}
	}
	byKind := doc["findings_by_kind"].(map[string]any)
	if byKind["untagged_manifest"].(float64) != 1 || byKind["digest_mismatch"].(float64) != 1 || byKind["stale_upload"].(float64) != 1 {
		t.Errorf("findings_by_kind %v", byKind)
	}
	if _, ok := byKind["harbor_stale_trash"]; !ok {
		t.Errorf("findings_by_kind lacks the Harbor kinds")
	}

	var c bytes.Buffer
	if err := a.WriteCSV(&c); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&c).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(rows[0], ",") != strings.Join(CSVHeader, ",") || len(rows) != 5 {
		t.Fatalf("csv: %v", rows)
	}
	col := map[string]int{}
	for i, n := range rows[0] {
		col[n] = i
	}
	for _, r := range rows[1:] {
		if r[col["repository"]] == "solo" {
			want := strconv.FormatInt(h.m5+11+80, 10)
			if r[col["reclaimable_bytes"]] != want || r[col["project"]] != "" || r[col["findings"]] != "3" {
				t.Errorf("solo row %v (reclaimable want %s, findings 3: untagged manifest, unused config and layer links)", r, want)
			}
		}
	}

	var txt bytes.Buffer
	if err := a.WriteTextOpts(&txt, TextOptions{Top: 2, Width: 80}); err != nil {
		t.Fatal(err)
	}
	out := txt.String()
	if !strings.Contains(out, "Repositories by space (top 2 of 4)") || !strings.Contains(out, "Projects by space (top 2 of 3)") ||
		!strings.Contains(out, "! digest_mismatch") {
		t.Errorf("text report:\n%s", out)
	}

	var page bytes.Buffer
	if err := a.WriteHTML(&page); err != nil {
		t.Fatal(err)
	}
	html := page.String()
	for _, want := range []string{`id="chart-projects"`, `id="chart-repositories"`, `id="chart-reclaimable"`, `id="chart-findings"`,
		`id="table-repositories"`, `<tr><td>team/web<td>team`, "default-src 'none'"} {
		if !strings.Contains(html, want) {
			t.Errorf("html lacks %s", want)
		}
	}
	for _, bad := range []string{"http://", "https://", "src=\"//"} {
		if strings.Contains(html, bad) {
			t.Errorf("html refers to the network: %s", bad)
		}
	}
}

func TestMetricsFileParsesAndIsPrivate(t *testing.T) {
	a, _ := sampleAudit(t)
	run := Run{Command: "audit", Started: a.StartedAt, Finished: a.FinishedAt, Success: true, Summary: &a.Summary, Requests: a.Requests}
	reg, err := run.Registry(true)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "regsweep.prom")
	if err := WriteMetricsFile(path, reg); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	// Readable by node_exporter, which usually runs as another user.
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("metrics file mode %v, %v", fi.Mode(), err)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*tmp")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
	f, _ := os.Open(path)
	defer f.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(f)
	if err != nil {
		t.Fatal(err)
	}
	value := func(name string, labels map[string]string) (float64, bool) {
		for _, m := range fams[name].GetMetric() {
			ok := true
			for k, v := range labels {
				found := false
				for _, l := range m.GetLabel() {
					found = found || (l.GetName() == k && l.GetValue() == v)
				}
				ok = ok && found
			}
			if ok {
				return m.GetGauge().GetValue(), true
			}
		}
		return 0, false
	}
	if v, ok := value(MetricFindings, map[string]string{"kind": "digest_mismatch", "severity": "broken", "command": "audit"}); !ok || v != 1 {
		t.Errorf("digest_mismatch findings %v %v", v, ok)
	}
	if v, ok := value(MetricFindings, map[string]string{"kind": "orphan_segment"}); !ok || v != 0 {
		t.Errorf("every kind must be present: orphan_segment %v %v", v, ok)
	}
	if v, ok := value(MetricReclaimableBytes, nil); !ok || v != float64(a.Reclaimable.Bytes) {
		t.Errorf("reclaimable bytes %v", v)
	}
	if v, ok := value(MetricLastSuccess, map[string]string{"command": "audit"}); !ok || v != float64(a.FinishedAt.Unix()) {
		t.Errorf("last success %v %v", v, ok)
	}
	if v, ok := value(MetricProjectBytes, map[string]string{"project": "team", "type": "total"}); !ok || v <= 0 {
		t.Errorf("team total %v %v", v, ok)
	}

	// A failed run keeps the last success of the good one.
	if got := PreviousLastSuccess(path, "audit"); got != float64(a.FinishedAt.Unix()) {
		t.Errorf("previous last success %v", got)
	}
	failed := Run{Command: "audit", Started: a.StartedAt, Finished: a.FinishedAt.Add(time.Hour), PreviousLastSuccess: PreviousLastSuccess(path, "audit")}
	reg, _ = failed.Registry(true)
	if err := WriteMetricsFile(path, reg); err != nil {
		t.Fatal(err)
	}
	if got := PreviousLastSuccess(path, "audit"); got != float64(a.FinishedAt.Unix()) {
		t.Errorf("a failed run changed the last success to %v", got)
	}
}

func TestPushReachesThePushgateway(t *testing.T) {
	a, _ := sampleAudit(t)
	type got struct {
		method, path, user string
		families           int
		err                error
	}
	ch := make(chan got, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, _, _ := r.BasicAuth()
		body, _ := io.ReadAll(r.Body)
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
		ch <- got{r.Method, r.URL.Path, user, len(fams), err}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	run := Run{Command: "audit", Started: a.StartedAt, Finished: a.FinishedAt, Success: true, Summary: &a.Summary}
	reg, err := run.Registry(false)
	if err != nil {
		t.Fatal(err)
	}
	u := strings.Replace(srv.URL, "http://", "http://ops:s3cret@", 1)
	if err := Push(context.Background(), u, "nightly", "audit", reg, true, srv.Client()); err != nil {
		t.Fatal(err)
	}
	g := <-ch
	if g.err != nil || g.method != http.MethodPut || g.path != "/metrics/job/nightly/command/audit" || g.user != "ops" || g.families < 8 {
		t.Errorf("push: %+v", g)
	}
	// A failed run adds (POST) rather than replacing the group.
	if err := Push(context.Background(), srv.URL, "nightly", "audit", reg, false, srv.Client()); err != nil {
		t.Fatal(err)
	}
	if g := <-ch; g.method != http.MethodPost {
		t.Errorf("failed run pushed with %s", g.method)
	}
	// An unreachable gateway is an error that does not print credentials.
	srv.Close()
	err = Push(context.Background(), u, "nightly", "audit", reg, true, &http.Client{Timeout: 2 * time.Second})
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("push to a closed gateway: %v", err)
	}
}
