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
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/regsweep/regsweep/backend"
	"github.com/regsweep/regsweep/internal/testenv"
	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/reports"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/verify"
	"github.com/regsweep/regsweep/walker"
)

// artifactDir is where tests keep what a person may want to look at
// (REGSWEEP_TEST_ARTIFACTS, else a temporary directory).
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("REGSWEEP_TEST_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
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
	want map[string]int
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

	c.want = map[string]int{
		// The injected one, broken/img's link to the deleted layer (its
		// kept manifest needs it) and the garbage link, whose path names a
		// blob storage lacks.
		reports.KindDanglingLayerLink:    3,
		reports.KindMissingBlobReference: 1,
		reports.KindDigestMismatch:       1,
		reports.KindCorruptLink:          1,
		reports.KindUnknownKey:           1,
		reports.KindStaleUpload:          1,
		// On S3 the abandoned upload is also an incomplete multipart upload.
		reports.KindStaleMultipartUpload: 1,
	}
	c.wantObjects = [][2]string{
		{reports.KindDanglingLayerLink, danglingKey},
		{reports.KindDanglingLayerLink, key(t, layout.LayerLink{Repo: "broken/img", Digest: lostDigest})},
		{reports.KindMissingBlobReference, lostDigest.String()},
		{reports.KindDigestMismatch, flippedDigest.String()},
		{reports.KindCorruptLink, garbageKey},
		{reports.KindDanglingLayerLink, garbageKey},
		{reports.KindUnknownKey, strayKey},
		{reports.KindStaleUpload, layout.RepoPrefix("team/app") + "_uploads/" + upload + "/"},
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
			if f.Kind == reports.KindMissingBlobReference && (len(f.Tags) != 1 || f.Tags[0] != c.brokenTag || f.Repository != "broken/img") {
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
				if (f[0] == "!") != (reports.SeverityOf(f[1]) == reports.SeverityBroken) {
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
			if labels["command"] != "audit" || labels["severity"] != reports.SeverityOf(labels["kind"]) {
				t.Errorf("labels %v", labels)
			}
			got[labels["kind"]] = int(m.GetGauge().GetValue())
		}
		if len(got) != len(reports.Kinds()) {
			t.Errorf("findings metric has %d kinds, want every one of %d", len(got), len(reports.Kinds()))
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
		rowRe := regexp.MustCompile(`<tr data-name="([^"]+)">`)
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

func checkByKind(t *testing.T, format string, got, want map[string]int) {
	t.Helper()
	for _, k := range reports.Kinds() {
		if got[k] != want[k] {
			t.Errorf("%s: %d %s findings, want %d", format, got[k], k, want[k])
		}
	}
	for k := range got {
		if reports.SeverityOf(k) == "" {
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

func sum(m map[string]int) int {
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
	if err := json.Unmarshal([]byte(out), &doc); err != nil || code != 0 || doc.FindingsByKind[reports.KindDigestMismatch] != 0 {
		t.Fatalf("audit --verify of intact blobs: exit %d, %v, %v", code, doc.FindingsByKind, err)
	}
	t.Logf("regsweep audit --verify (default --concurrency 32): %d MiB, verify phase %.2fs = %.0f MB/s; whole run %s",
		int64(blobs*size)>>20, doc.Durations["verify"], float64(blobs*size)/1e6/doc.Durations["verify"], elapsed.Round(time.Millisecond))
}
