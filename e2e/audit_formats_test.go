package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/regsweep/regsweep/backend"
	"github.com/regsweep/regsweep/finding"
	"github.com/regsweep/regsweep/gc"
	"github.com/regsweep/regsweep/internal/regtree"
	"github.com/regsweep/regsweep/internal/testenv"
	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/mark"
	"github.com/regsweep/regsweep/reports"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/verify"
	"github.com/regsweep/regsweep/walker"
)

// artifactDir is where tests keep what a person may want to look at:
// REGSWEEP_TEST_ARTIFACTS, else the test's artifact directory (under
// -outputdir with `go test -artifacts`, else a temporary directory).
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("REGSWEEP_TEST_ARTIFACTS")
	if dir == "" {
		dir = t.ArtifactDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("artifacts: %s", dir)
	return dir
}

func key(t *testing.T, s layout.Spec) string {
	t.Helper()
	k, err := layout.Path(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// damagedCorpus is a registry on MinIO with one of each kind of damage.
type damagedCorpus struct {
	b *backendUnderTest
	// want is exactly the findings expected, by kind.
	want map[finding.Kind]int
	// findings that must name a given object: kind -> digest or key.
	wantObjects [][2]string
	// expected accounting, computed from what the registry serves.
	total, unique map[string]int64
	brokenTag     string // the tag the missing layer breaks
}

func buildDamagedCorpus(t *testing.T) *damagedCorpus {
	b := minioBackend(t)
	reg := b.reg
	ctx := context.Background()
	r := func(n int) []byte { return testenv.RandomBytes(t, n) }
	shared := r(5000)
	la := r(3000)
	testenv.PushRandomImage(t, reg, "team/app:v1", shared, la)
	testenv.PushRandomImage(t, reg, "team/web:v1", shared, r(2000))
	testenv.PushRandomImage(t, reg, "other/db:v1", r(4000), la) // its first layer gets a flipped byte
	testenv.PushRandomImage(t, reg, "solo:v1", r(1000))
	testenv.PushRandomImage(t, reg, "broken/img:v1", r(1500)) // its layer is deleted: the manifest references a missing blob
	upload := testenv.StartAbandonedUpload(t, reg, "team/app")

	c := &damagedCorpus{b: b, brokenTag: "v1", total: map[string]int64{}, unique: map[string]int64{}}
	// The accounting as the registry serves it, before the damage: what
	// each tag pulls, sized from the store.
	inv := b.inventory(t)
	needs := map[string]map[string]bool{}
	users := map[string]int{}
	for _, repo := range []string{"team/app", "team/web", "other/db", "solo", "broken/img"} {
		needs[repo] = map[string]bool{}
		for _, d := range pull(t, reg, repo, "v1") {
			needs[repo][d] = true
		}
		for d := range needs[repo] {
			users[d]++
		}
	}
	// pull lists a manifest, its config, then its layers: the layer blobs
	// are tarballs of the bytes pushed.
	lostDigest := digest.Digest(layerOf(t, reg, "broken/img", 0))
	flippedDigest := digest.Digest(layerOf(t, reg, "other/db", 0))
	for repo, ds := range needs {
		for d := range ds {
			blob, ok := inv.Blobs.Get(digest.Digest(d))
			if !ok {
				t.Fatalf("%s needs %s, which storage lacks before the damage", repo, d)
			}
			if d == lostDigest.String() {
				continue // deleted below: no longer stored, so not counted
			}
			c.total[repo] += blob.Size
			if users[d] == 1 {
				c.unique[repo] += blob.Size
			}
		}
	}

	d, err := backend.Open(ctx, b.cfg, backend.OpenOptions{Concurrency: 8})
	if err != nil {
		t.Fatal(err)
	}
	put := func(k string, data []byte) {
		if err := d.Put(ctx, k, data); err != nil {
			t.Fatal(err)
		}
	}
	// A dangling layer link: to a blob storage never had.
	ghost := digest.FromString("never pushed")
	danglingKey := key(t, layout.LayerLink{Repo: "team/app", Digest: ghost})
	put(danglingKey, []byte(ghost.String()))
	// A garbage link file.
	garbageKey := key(t, layout.LayerLink{Repo: "team/web", Digest: digest.FromString("garbage")})
	put(garbageKey, []byte("this is not a digest"))
	// A stray key under docker/registry/v2/.
	strayKey := "docker/registry/v2/blobs/sha256/ab/stray.txt"
	put(strayKey, []byte("?"))
	// A manifest referencing a missing layer: delete the layer's blob.
	lostKey := key(t, layout.BlobData{Digest: lostDigest})
	if res, err := d.Delete(ctx, []string{lostKey}); err != nil || len(res) > 0 {
		t.Fatalf("deleting %s: %v %v", lostKey, err, res)
	}
	// A flipped byte in a blob (same size, other content).
	flippedKey := key(t, layout.BlobData{Digest: flippedDigest})
	data, err := d.Get(ctx, flippedKey, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	put(flippedKey, data)

	c.want = map[finding.Kind]int{
		// The injected one, broken/img's link to the deleted layer (its
		// kept manifest needs it) and the garbage link, whose path names a
		// blob storage lacks.
		finding.DanglingLayerLink:    3,
		finding.MissingBlobReference: 1,
		finding.DigestMismatch:       1,
		finding.CorruptLink:          1,
		finding.UnknownKey:           1,
		finding.StaleUpload:          1,
		// On S3 the abandoned upload is also an incomplete multipart upload.
		finding.StaleMultipartUpload: 1,
	}
	c.wantObjects = [][2]string{
		{string(finding.DanglingLayerLink), danglingKey},
		{string(finding.DanglingLayerLink), key(t, layout.LayerLink{Repo: "broken/img", Digest: lostDigest})},
		{string(finding.MissingBlobReference), lostDigest.String()},
		{string(finding.DigestMismatch), flippedDigest.String()},
		{string(finding.CorruptLink), garbageKey},
		{string(finding.DanglingLayerLink), garbageKey},
		{string(finding.UnknownKey), strayKey},
		{string(finding.StaleUpload), layout.RepoPrefix("team/app") + "_uploads/" + upload + "/"},
	}
	return c
}

// auditCLI runs the CLI like backendUnderTest.regsweep, but checks for
// secrets itself: the test MinIO's access key is "regsweep", which is also
// the program name main prints before an error (and exit 3 has one).
func auditCLI(t *testing.T, b *backendUnderTest, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(regsweepBinary(t), append(args, b.flags...)...)
	cmd.Env = append(os.Environ(), b.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("regsweep %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	errText := regexp.MustCompile(`(?m)^regsweep: `).ReplaceAllString(stderr.String(), "")
	for _, secret := range b.cfg.Secrets() {
		if strings.Contains(stdout.String(), secret) || strings.Contains(errText, secret) {
			t.Fatalf("regsweep %v printed a secret", args)
		}
	}
	if code != 0 && code != 3 {
		t.Logf("regsweep %v exited %d; stderr:\n%s", args, code, stderr.String())
	}
	return stdout.String(), code
}

// layerOf is the digest of the i-th layer of repo:v1.
func layerOf(t *testing.T, reg *testenv.Registry, repo string, i int) string {
	t.Helper()
	needed := pull(t, reg, repo, "v1")
	if len(needed) < 3+i {
		t.Fatalf("%s:v1 has no layer %d: %v", repo, i, needed)
	}
	return needed[2+i]
}

// auditArgs: nothing is too young, every blob is hashed.
var auditArgs = []string{"audit", "--verify", "--grace", "0s", "--upload-grace", "0s", "--fail-on", "broken"}

func TestAuditFormats(t *testing.T) {
	c := buildDamagedCorpus(t)
	b := c.b
	dir := t.TempDir()
	artifacts := artifactDir(t)
	run := func(extra ...string) string {
		t.Helper()
		args := append(append(append([]string{}, auditArgs...), "--cache-dir", t.TempDir()), extra...)
		out, code := auditCLI(t, b, args...)
		if code != 3 {
			t.Fatalf("audit %v: exit %d, want 3 (broken findings)", extra, code)
		}
		return out
	}

	t.Run("json", func(t *testing.T) {
		var doc struct {
			SchemaVersion  int            `json:"schema_version"`
			FindingsByKind map[string]int `json:"findings_by_kind"`
			Findings       []struct {
				Kind, Severity, Repository, Digest, Key string
				Tags                                    []string
			} `json:"findings"`
			Storage      map[string]string `json:"storage"`
			Repositories []struct {
				Name                     string
				Project                  string
				TotalBytes               int64 `json:"total_bytes"`
				UniqueBytes              int64 `json:"unique_bytes"`
				SharedBytes              int64 `json:"shared_bytes"`
				Findings, BrokenFindings int
			} `json:"repositories"`
			Requests map[string]int64 `json:"requests"`
		}
		if err := json.Unmarshal([]byte(run("--format", "json")), &doc); err != nil {
			t.Fatal(err)
		}
		if doc.SchemaVersion != reports.AuditSchemaVersion || doc.Storage["driver"] != "s3" || !strings.HasSuffix(doc.Storage["root"], "/registry") {
			t.Errorf("schema %d, storage %v", doc.SchemaVersion, doc.Storage)
		}
		checkByKind(t, "json", doc.FindingsByKind, c.want)
		if len(doc.Findings) != sum(c.want) {
			t.Errorf("%d findings, want %d", len(doc.Findings), sum(c.want))
		}
		have := map[[2]string]bool{}
		for _, f := range doc.Findings {
			have[[2]string{f.Kind, f.Digest}] = true
			have[[2]string{f.Kind, f.Key}] = true
			if f.Kind == string(finding.MissingBlobReference) && (len(f.Tags) != 1 || f.Tags[0] != c.brokenTag || f.Repository != "broken/img") {
				t.Errorf("missing_blob_reference names tags %v in %s, want [%s] in broken/img", f.Tags, f.Repository, c.brokenTag)
			}
		}
		for _, o := range c.wantObjects {
			if !have[o] {
				t.Errorf("no %s finding for %s", o[0], o[1])
			}
		}
		if len(doc.Repositories) != 5 {
			t.Fatalf("%d repositories", len(doc.Repositories))
		}
		for _, r := range doc.Repositories {
			if r.TotalBytes != c.total[r.Name] || r.UniqueBytes != c.unique[r.Name] || r.SharedBytes != r.TotalBytes-r.UniqueBytes {
				t.Errorf("%s: total %d unique %d shared %d; the registry serves total %d unique %d",
					r.Name, r.TotalBytes, r.UniqueBytes, r.SharedBytes, c.total[r.Name], c.unique[r.Name])
			}
		}
		if doc.Requests["put"] != 0 || doc.Requests["delete"] != 0 {
			t.Errorf("audit wrote to storage: %v", doc.Requests)
		}
	})

	t.Run("text", func(t *testing.T) {
		out := run("--format", "text", "--top", "3")
		got := map[string]int{}
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) >= 2 && (f[0] == "!" || f[0] == "-") {
				got[f[1]]++
				if (f[0] == "!") != (finding.Kind(f[1]).Severity() == finding.Broken) {
					t.Errorf("wrong sigil: %s", line)
				}
			}
		}
		checkByKind(t, "text", got, c.want)
		if !strings.Contains(out, "Repositories by space (top 3 of 5)") || !strings.Contains(out, "Projects by space (top 3 of 4)") {
			t.Errorf("text report lacks the space tables:\n%s", out)
		}
	})

	t.Run("csv", func(t *testing.T) {
		path := filepath.Join(dir, "audit.csv")
		if out := run("--format", "csv", "--output", path); out != "" {
			t.Errorf("--output still wrote stdout: %q", out)
		}
		checkPrivate(t, path)
		f, _ := os.ReadFile(path)
		rows, err := csv.NewReader(bytes.NewReader(f)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(rows[0], ",") != strings.Join(reports.CSVHeader, ",") {
			t.Fatalf("header %v", rows[0])
		}
		col := map[string]int{}
		for i, n := range rows[0] {
			col[n] = i
		}
		// Findings naming each repository: team/app has the dangling link,
		// the upload and its multipart upload; team/web the garbage link
		// (corrupt and dangling); broken/img the missing layer and its
		// dangling link.
		wantFindings := map[string]string{"team/app": "3", "team/web": "2", "other/db": "0", "solo": "0", "broken/img": "2"}
		for _, row := range rows[1:] {
			name := row[col["repository"]]
			if row[col["findings"]] != wantFindings[name] || row[col["total_bytes"]] != strconv.FormatInt(c.total[name], 10) ||
				row[col["unique_bytes"]] != strconv.FormatInt(c.unique[name], 10) || row[col["project"]] != reports.ProjectOf(name) {
				t.Errorf("csv row %v: want findings %s, total %d, unique %d", row, wantFindings[name], c.total[name], c.unique[name])
			}
		}
		if len(rows) != 6 {
			t.Errorf("%d csv rows, want a header and 5 repositories", len(rows))
		}
	})

	t.Run("metrics", func(t *testing.T) {
		path := filepath.Join(dir, "regsweep.prom")
		run("--format", "json", "--metrics-file", path)
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("metrics file: %v %v, want mode 0644 (node_exporter reads it)", fi, err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(f)
		if err != nil {
			t.Fatalf("metrics file does not parse: %v", err)
		}
		got := map[string]int{}
		for _, m := range fams[reports.MetricFindings].GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["command"] != "audit" || labels["severity"] != string(finding.Kind(labels["kind"]).Severity()) {
				t.Errorf("labels %v", labels)
			}
			got[labels["kind"]] = int(m.GetGauge().GetValue())
		}
		if len(got) != len(finding.Kinds()) {
			t.Errorf("findings metric has %d kinds, want every one of %d", len(got), len(finding.Kinds()))
		}
		checkByKind(t, "metrics", got, c.want)
		if fams[reports.MetricLastSuccess] == nil || fams[reports.MetricLastSuccess].GetMetric()[0].GetGauge().GetValue() < float64(time.Now().Add(-time.Hour).Unix()) {
			t.Errorf("no recent %s", reports.MetricLastSuccess)
		}
		if fams[reports.MetricPhaseDuration] == nil || len(fams[reports.MetricPhaseDuration].GetMetric()) != 4 {
			t.Errorf("phase durations: %v", fams[reports.MetricPhaseDuration])
		}
	})

	t.Run("html", func(t *testing.T) {
		path := filepath.Join(artifacts, "audit-report.html")
		run("--format", "html", "--output", path)
		checkPrivate(t, path)
		dom, shot := renderInChromium(t, path, filepath.Join(artifacts, "audit-report.png"))
		t.Logf("HTML report %s, screenshot %s", path, shot)
		if !strings.Contains(dom, `data-ready="true"`) {
			t.Fatalf("the report's script did not run:\n%.2000s", dom)
		}
		// The findings chart has one bar per kind found, with its count.
		got := map[string]int{}
		chartRe := regexp.MustCompile(`(?s)<svg[^>]*id="chart-findings".*?</svg>`)
		barRe := regexp.MustCompile(`<g class="bar" data-label="([a-z_]+)" data-value="(\d+)"`)
		for _, m := range barRe.FindAllStringSubmatch(chartRe.FindString(dom), -1) {
			got[m[1]], _ = strconv.Atoi(m[2])
		}
		checkByKind(t, "html chart", got, c.want)
		for _, id := range []string{"chart-projects", "chart-repositories", "chart-reclaimable"} {
			if !regexp.MustCompile(`<svg[^>]*id="` + id + `"`).MatchString(dom) {
				t.Errorf("no %s chart", id)
			}
		}
		// The repositories table was sorted by the script, largest first,
		// with the exact totals.
		tableRe := regexp.MustCompile(`(?s)<table[^>]*id="table-repositories"[^>]*>.*?</table>`)
		table := tableRe.FindString(dom)
		if !strings.Contains(table, `data-sorted-by="total_bytes"`) || !strings.Contains(table, `data-sort-dir="desc"`) {
			t.Errorf("repositories table not sorted by the script: %.300s", table)
		}
		rowRe := regexp.MustCompile(`<tr><td>([^<]+)</td>`)
		var order []string
		for _, m := range rowRe.FindAllStringSubmatch(table, -1) {
			order = append(order, m[1])
			if !strings.Contains(table, fmt.Sprintf(`data-value="%d"`, c.total[m[1]])) {
				t.Errorf("table lacks %s's total %d", m[1], c.total[m[1]])
			}
		}
		want := []string{"team/app", "team/web", "other/db", "solo", "broken/img"}
		sort.SliceStable(want, func(i, j int) bool { return c.total[want[i]] > c.total[want[j]] })
		if strings.Join(order, " ") != strings.Join(want, " ") {
			t.Errorf("rendered order %v, want %v (by total bytes)", order, want)
		}
		// The findings-by-kind table has the exact counts.
		kindRe := regexp.MustCompile(`<tr data-kind="([a-z_]+)" class="[a-z]+"><td[^>]*>[a-z_]+</td><td[^>]*>[a-z]+</td><td class="n" data-value="(\d+)">`)
		kinds := map[string]int{}
		for _, m := range kindRe.FindAllStringSubmatch(dom, -1) {
			kinds[m[1]], _ = strconv.Atoi(m[2])
		}
		checkByKind(t, "html table", kinds, c.want)
	})
}

// renderInChromium loads the file in headless Chromium and returns the
// DOM after its scripts ran; it keeps a screenshot at shot.
func renderInChromium(t *testing.T, page, shot string) (string, string) {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed (testenv/install.sh installs Debian's chromium package)")
	}
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--hide-scrollbars"}
	chrome := func(args ...string) []byte {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, append(append(append([]string{}, base...), "--user-data-dir="+t.TempDir()), args...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
		}
		return stdout.Bytes()
	}
	url := "file://" + page
	dom := string(chrome("--dump-dom", url))
	chrome("--window-size=1280,2400", "--screenshot="+shot, url)
	if fi, err := os.Stat(shot); err != nil || fi.Size() == 0 {
		t.Fatalf("no screenshot at %s: %v", shot, err)
	}
	return dom, shot
}

func checkByKind(t *testing.T, format string, got map[string]int, want map[finding.Kind]int) {
	t.Helper()
	for _, k := range finding.Kinds() {
		if got[string(k)] != want[k] {
			t.Errorf("%s: %d %s findings, want %d", format, got[string(k)], k, want[k])
		}
	}
	for k := range got {
		if finding.Kind(k).Severity() == "" {
			t.Errorf("%s: unknown kind %q", format, k)
		}
	}
}

func checkPrivate(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", path, fi.Mode().Perm())
	}
}

func sum(m map[finding.Kind]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// TestAuditFormatsVerifyThroughput measures how fast --verify hashes blobs
// on MinIO (printed, never asserted: tests do not assert on time), and
// checks every intact blob passes.
func TestAuditFormatsVerifyThroughput(t *testing.T) {
	m := testenv.MinIO(t)
	bucket := testenv.NewBucket(t, m)
	cfg := backend.Config{Driver: "s3", S3: backend.S3Config{Region: "us-east-1", RegionEndpoint: m.URL(), Bucket: bucket,
		AccessKey: m.AccessKey, SecretKey: m.SecretKey, RootDirectory: "/registry", ForcePathStyle: true, V4Auth: true}}
	ctx := context.Background()
	const blobs, size = 24, 16 << 20 // 384 MiB
	reqs := &storage.Requests{}
	d, err := backend.Open(ctx, cfg, backend.OpenOptions{Concurrency: 32, Retry: storage.DefaultRetry(), Requests: reqs})
	if err != nil {
		t.Fatal(err)
	}
	var digests []digest.Digest
	buf := make([]byte, size)
	for range blobs {
		if _, err := rand.Read(buf); err != nil {
			t.Fatal(err)
		}
		dg := digest.FromBytes(buf)
		if err := d.Put(ctx, key(t, layout.BlobData{Digest: dg}), buf); err != nil {
			t.Fatal(err)
		}
		digests = append(digests, dg)
	}
	inv, err := walker.Collect(ctx, d, walker.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if inv.Blobs.Len() != blobs {
		t.Fatalf("%d blobs listed, want %d", inv.Blobs.Len(), blobs)
	}
	ro, err := backend.Open(ctx, cfg, backend.OpenOptions{Concurrency: 32, ReadOnly: true, Retry: storage.DefaultRetry()})
	if err != nil {
		t.Fatal(err)
	}
	for _, conc := range []int{8, 32} {
		var hashed int64
		bad := 0
		start := time.Now()
		err := verify.Blobs(ctx, ro, digests, verify.Options{Concurrency: conc}, func(r verify.Result) error {
			hashed += r.Bytes
			if r.Actual != r.Digest {
				bad++
			}
			return nil
		})
		elapsed := time.Since(start)
		if err != nil {
			t.Fatal(err)
		}
		if hashed != blobs*size || bad != 0 {
			t.Fatalf("hashed %d bytes, %d mismatches; want %d bytes, none", hashed, bad, blobs*size)
		}
		t.Logf("--verify on MinIO, concurrency %d: %d MiB in %s = %.0f MB/s", conc, hashed>>20, elapsed.Round(time.Millisecond),
			float64(hashed)/1e6/elapsed.Seconds())
	}
	// The whole CLI run (walk, mark, verify), for comparison.
	b := &backendUnderTest{cfg: cfg, flags: []string{"--s3-endpoint", m.URL(), "--s3-bucket", bucket, "--s3-root", "/registry", "--s3-path-style"},
		env: []string{"REGSWEEP_S3_ACCESS_KEY=" + m.AccessKey, "REGSWEEP_S3_SECRET_KEY=" + m.SecretKey}}
	regsweepBinary(t) // built before the clock starts
	start := time.Now()
	out, code := b.regsweep(t, "audit", "--verify", "--format", "json", "--fail-on", "broken", "--grace", "0s", "--cache-dir", t.TempDir())
	elapsed := time.Since(start)
	var doc struct {
		FindingsByKind map[string]int     `json:"findings_by_kind"`
		Durations      map[string]float64 `json:"durations_seconds"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || code != 0 || doc.FindingsByKind[string(finding.DigestMismatch)] != 0 {
		t.Fatalf("audit --verify of intact blobs: exit %d, %v, %v", code, doc.FindingsByKind, err)
	}
	t.Logf("regsweep audit --verify (default --concurrency 32): %d MiB, verify phase %.2fs = %.0f MB/s; whole run %s",
		int64(blobs*size)>>20, doc.Durations["verify"], float64(blobs*size)/1e6/doc.Durations["verify"], elapsed.Round(time.Millisecond))
}

// largeAudit is the audit report of a generated store as the CLI builds
// it (walk, mark, plan, BuildAudit) on an in-memory store: the bench's
// registry shape (internal/cmd/bench) with repos repositories, about 202
// blobs each.
func largeAudit(t *testing.T, repos int) *reports.Audit {
	t.Helper()
	ctx := context.Background()
	mem := storage.NewMemory(nil, nil)
	spec := regtree.Spec{Seed: 7, Repositories: repos, ImagesPerRepo: 20, TagsPerRepo: 5, LayersPerImg: 9,
		SharedLayers: 50, OrphanBlobs: 2 * repos, LayerSize: 64, MultiArch: true, Uploads: repos / 25}
	if _, err := regtree.Generate(ctx, mem, spec, 8); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	an, err := gc.Analyze(ctx, mem, mark.StorageSource(mem, "", 0), gc.Options{DeleteUntagged: true, Concurrency: 8})
	if err != nil {
		t.Fatal(err)
	}
	a := reports.BuildAudit(an.Inventory, an.Mark, an.Plan, reports.NewStorageInfo(mem.Name(), mem.Location()), map[string]int64{}, started, time.Now())
	return a
}

// scaleAudit is a copied n times over, each copy with its own
// repositories (team<r%7>/app<r>, as the generator names them) and
// findings: the report of a store n times larger, of the same shape.
func scaleAudit(a *reports.Audit, n int) *reports.Audit {
	b := *a
	b.Totals.Repositories *= n
	b.Totals.Tags *= n
	b.Totals.Manifests *= n
	b.Totals.LayerLinks *= n
	b.Totals.Blobs *= n
	b.Totals.BlobBytes *= int64(n)
	b.Totals.Uploads *= n
	r := &b.Reclaimable
	r.Blobs, r.Bytes, r.Manifests, r.LayerLinks = r.Blobs*n, r.Bytes*int64(n), r.Manifests*n, r.LayerLinks*n
	r.Uploads, r.MultipartUploads, r.Segments, r.Repositories = r.Uploads*n, r.MultipartUploads*n, r.Segments*n, r.Repositories*n
	b.FindingsByKind = map[finding.Kind]int{}
	for k, v := range a.FindingsByKind {
		b.FindingsByKind[k] = v * n
	}
	rename := map[string]string{}
	name := func(repo string, copy int) string {
		if repo == "" || copy == 0 {
			return repo
		}
		k := repo + "\x00" + strconv.Itoa(copy)
		if v, ok := rename[k]; ok {
			return v
		}
		var i int
		fmt.Sscanf(repo[strings.Index(repo, "/app")+4:], "%d", &i)
		i += copy * len(a.Repositories)
		v := fmt.Sprintf("team%d/app%d", i%7, i)
		rename[k] = v
		return v
	}
	b.Repositories = nil
	b.Projects = nil
	b.Findings = nil
	projects := map[string]*reports.ProjectSpace{}
	for c := range n {
		for _, repo := range a.Repositories {
			repo.Name = name(repo.Name, c)
			repo.Project = reports.ProjectOf(repo.Name)
			b.Repositories = append(b.Repositories, repo)
			p := projects[repo.Project]
			if p == nil {
				p = &reports.ProjectSpace{Name: repo.Project}
				projects[repo.Project] = p
			}
			p.Repositories++
			p.Tags += repo.Tags
			p.Manifests += repo.Manifests
			p.Blobs += repo.Blobs
			p.TotalBytes += repo.TotalBytes
			p.UniqueBytes += repo.UniqueBytes
			p.SharedBytes += repo.SharedBytes
			p.ReclaimableBytes += repo.ReclaimableBytes
		}
		for _, f := range a.Findings {
			if c > 0 {
				old := f.Repo
				f.Repo = name(f.Repo, c)
				f.Project = reports.ProjectOf(f.Repo)
				if f.Digest != "" {
					nd := digest.FromString(f.Digest.String() + strconv.Itoa(c))
					f.Key = strings.ReplaceAll(f.Key, f.Digest.Encoded(), nd.Encoded())
					f.Key = strings.ReplaceAll(f.Key, f.Digest.Encoded()[:2]+"/", nd.Encoded()[:2]+"/")
					f.Digest = nd
				}
				if old != "" {
					f.Key = strings.Replace(f.Key, "/"+old+"/", "/"+f.Repo+"/", 1)
				} else if f.Digest == "" {
					f.Key += strconv.Itoa(c)
				}
			}
			b.Findings = append(b.Findings, f)
		}
	}
	for _, p := range projects {
		b.Projects = append(b.Projects, *p)
	}
	sort.Slice(b.Projects, func(i, j int) bool { return b.Projects[i].Name < b.Projects[j].Name })
	sort.Slice(b.Repositories, func(i, j int) bool { return b.Repositories[i].Name < b.Repositories[j].Name })
	return &b
}

// TestAuditFormatsLargeHTML: the HTML report of a store of a million
// blobs and 5,000 repositories stays under 2 MB, opens in Chromium with
// the totals and the charts on its first screen, and its tables sort by a
// click. The million-blob report is the real pipeline's report of a
// 100,000-blob store (built in memory as the CLI builds it) copied ten
// times over with new names: walking a million blobs would take minutes.
func TestAuditFormatsLargeHTML(t *testing.T) {
	const maxSize = 2 << 20
	artifacts := artifactDir(t)
	small := largeAudit(t, 500)
	big := scaleAudit(small, 10)
	if big.Totals.Blobs < 1_000_000 || len(big.Repositories) != 5000 {
		t.Fatalf("the generated store has %d blobs and %d repositories, want a million and 5,000", big.Totals.Blobs, len(big.Repositories))
	}
	write := func(a *reports.Audit, name string) (string, int64) {
		path := filepath.Join(artifacts, name)
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.WriteHTML(f); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(path)
		return path, fi.Size()
	}
	_, smallSize := write(small, "audit-100k.html")
	path, size := write(big, "audit-1m.html")
	t.Logf("HTML report: %d blobs, %d repositories, %d findings: %d bytes; %d blobs, %d repositories, %d findings: %d bytes (%s)",
		small.Totals.Blobs, len(small.Repositories), len(small.Findings), smallSize, big.Totals.Blobs, len(big.Repositories), len(big.Findings), size, path)
	if size > maxSize {
		t.Errorf("the report of %d blobs is %d bytes, over %d", big.Totals.Blobs, size, maxSize)
	}

	page := openInChromium(t, path, filepath.Join(artifacts, "audit-1m-first-screen.png"))
	// The first screen (1280x900) shows the four totals and the four
	// charts, whole.
	for _, id := range []string{"card-total", "card-reclaimable", "card-broken", "card-reclaimable-findings",
		"chart-projects", "chart-repositories", "chart-reclaimable", "chart-findings"} {
		if bottom := page.eval(t, fmt.Sprintf(`document.getElementById(%q).getBoundingClientRect().bottom`, id)); bottom <= 0 || bottom > 900 {
			t.Errorf("#%s ends at %vpx, not on the first screen (900px)", id, bottom)
		}
	}
	if got := page.text(t, `document.querySelector('#card-total b').textContent`); got != reports.HumanBytes(big.Totals.BlobBytes) {
		t.Errorf("stored total %q, want %q", got, reports.HumanBytes(big.Totals.BlobBytes))
	}
	// The reclaimable chart is scaled to its largest repository: its first
	// bar is full width.
	if w := page.eval(t, `document.querySelector('#chart-reclaimable g.bar rect').getBBox().width`); w < 319 {
		t.Errorf("the largest repository's reclaimable bar is %v wide, want the full 320", w)
	}
	// Every repository is in the table; a click on "reclaimable" sorts
	// it by reclaimable bytes, largest first; a second click, smallest first.
	if n := page.eval(t, `document.querySelectorAll('#table-repositories tbody tr').length`); int(n) != len(big.Repositories) {
		t.Errorf("the repositories table has %v rows, want %d", n, len(big.Repositories))
	}
	column := `Array.from(document.querySelectorAll('#table-repositories tbody tr')).map(r => Number(r.cells[8].getAttribute('data-value')))`
	for _, dir := range []string{"desc", "asc"} {
		page.click(t, `#table-repositories th[data-key="reclaimable_bytes"]`)
		var values []float64
		page.decode(t, column, &values)
		sorted := slices.IsSortedFunc(values, func(a, b float64) int {
			if dir == "desc" {
				a, b = b, a
			}
			return cmpFloat(a, b)
		})
		if !sorted || page.text(t, `document.getElementById('table-repositories').getAttribute('data-sort-dir')`) != dir {
			t.Errorf("after a click the repositories are not sorted %s by reclaimable bytes: %v...", dir, values[:min(5, len(values))])
		}
	}
	// Findings: every kind counted, at most 10 of each listed, and the
	// rest named with the command that lists them.
	listed := map[finding.Kind]int{}
	var kinds []finding.Kind
	page.decode(t, `Array.from(document.querySelectorAll('#table-findings tbody tr')).map(r => r.getAttribute('data-kind'))`, &kinds)
	for _, k := range kinds {
		listed[k]++
	}
	for k, n := range big.FindingsByKind {
		if want := min(n, reports.DefaultFindingsPerKind); listed[k] != want {
			t.Errorf("%d %s findings listed, want %d", listed[k], k, want)
		}
		if n > reports.DefaultFindingsPerKind {
			omitted := page.text(t, fmt.Sprintf(`(document.querySelector('#findings-omitted li[data-kind=%q]') || {}).getAttribute ? document.querySelector('#findings-omitted li[data-kind=%q]').getAttribute('data-omitted') : ''`, k, k))
			if omitted != strconv.Itoa(n-reports.DefaultFindingsPerKind) {
				t.Errorf("%s: %q omitted, want %d", k, omitted, n-reports.DefaultFindingsPerKind)
			}
		}
	}
	if note := page.text(t, `document.getElementById('findings-note').textContent`); !strings.Contains(note, "--format json") {
		t.Errorf("the findings note does not name the command that lists them all: %q", note)
	}
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// chromiumPage is a page open in headless Chromium.
type chromiumPage struct{ ctx context.Context }

// openInChromium opens the file in headless Chromium with a 1280x900
// window, waits for its script, and keeps a screenshot of the first screen
// at shot.
func openInChromium(t *testing.T, file, shot string) chromiumPage {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed (testenv/install.sh installs Debian's chromium package)")
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true),
		chromedp.Flag("hide-scrollbars", true), chromedp.WindowSize(1280, 900))...)
	t.Cleanup(cancel)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(cancelTab)
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900), chromedp.Navigate("file://"+file),
		chromedp.WaitVisible(`body[data-ready="true"]`)); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the first screen: %s", shot)
	return chromiumPage{ctx}
}

func (p chromiumPage) decode(t *testing.T, expr string, v any) {
	t.Helper()
	raw, err := chromedp.Run(p.ctx, chromedp.Evaluate[[]byte](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
}

func (p chromiumPage) eval(t *testing.T, expr string) float64 {
	t.Helper()
	var f float64
	p.decode(t, expr, &f)
	return f
}

func (p chromiumPage) text(t *testing.T, expr string) string {
	t.Helper()
	var s string
	p.decode(t, expr, &s)
	return s
}

func (p chromiumPage) click(t *testing.T, selector string) {
	t.Helper()
	if err := chromedp.Do(p.ctx, chromedp.Click(selector)); err != nil {
		t.Fatalf("click %s: %v", selector, err)
	}
}
