package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/regsweep/regsweep/internal/regtree"
	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/reports"
	"github.com/regsweep/regsweep/storage/filesystem"
)

// TestAuditFindsInjectedDamage injects one of each kind of damage and
// expects exactly those findings, and nothing written to storage.
func TestAuditFindsInjectedDamage(t *testing.T) {
	root := t.TempDir()
	d, err := filesystem.New(root, 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := regtree.NewWriter(d, 4)
	kept := w.Image("app", []byte(`{"c":1}`), []byte("layer-a"))
	w.Tag("app", "v1", kept.Digest)
	old := w.Image("app", []byte(`{"c":2}`), []byte("layer-b")) // untagged
	broken := w.Image("broken", []byte(`{"c":3}`), []byte("layer-c"))
	w.Tag("broken", "v1", broken.Digest)
	orphan := w.Blob([]byte("nobody needs me"))
	w.Upload("app", "abandoned-1", time.Now().Add(-30*24*time.Hour), []byte("partial"))
	key := func(s layout.Spec) string { k, _ := layout.Path(s); return k }
	missing := digest.FromString("gone")
	w.Raw(key(layout.LayerLink{Repo: "app", Digest: missing}), []byte(missing.String()))      // dangling layer link
	w.Raw(key(layout.LayerLink{Repo: "app", Digest: digest.FromString("x")}), []byte("junk")) // corrupt link
	w.Raw("docker/registry/v2/blobs/sha256/ab/stray.txt", []byte("?"))                        // unknown key
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A manifest that references a layer storage lacks.
	layerC := digest.FromBytes([]byte("layer-c"))
	os.Remove(filepath.Join(root, key(layout.BlobData{Digest: layerC})))

	before := snapshot(t, root)
	stdout, stderr, code := run(t, "audit", "--fs-root", root, "--grace", "0s", "--upload-grace", "0s", "--format", "json", "--cache-dir", t.TempDir())
	if code != exitFindings {
		t.Fatalf("exit %d (want %d): %s", code, exitFindings, stderr)
	}
	assertUnchanged(t, root, before, "audit changed the storage")
	var doc struct {
		FindingsByKind map[string]int `json:"findings_by_kind"`
		Findings       []struct {
			Kind, Severity, Key, Digest string
		} `json:"findings"`
		Reclaimable struct{ Blobs, Manifests int } `json:"reclaimable"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{
		"untagged_manifest": 1,
		"orphan_blob":       4, // the orphan, and the untagged image's manifest, config and layer
		"unused_layer_link": 2, // the untagged image's config and layer
		"stale_upload":      1,
		// The injected one, broken's link to the layer removed below (a
		// kept manifest needs it), and the corrupt link, whose path names
		// a blob storage lacks.
		"dangling_layer_link":    3,
		"corrupt_link":           1,
		"unknown_key":            1,
		"missing_blob_reference": 1,
	}
	for kind, n := range doc.FindingsByKind {
		if n != want[kind] {
			t.Errorf("%s: %d findings, want %d", kind, n, want[kind])
		}
	}
	for _, k := range []string{"orphan_blob", "untagged_manifest", "unused_layer_link", "stale_upload", "stale_multipart_upload", "orphan_segment",
		"empty_repository", "dangling_revision_link", "dangling_layer_link", "missing_blob_reference", "missing_child_manifest",
		"unparseable_manifest", "corrupt_link", "digest_mismatch", "unknown_key"} {
		if _, ok := doc.FindingsByKind[k]; !ok {
			t.Errorf("findings_by_kind lacks %q", k)
		}
	}
	found := map[string]bool{}
	for _, f := range doc.Findings {
		found[f.Kind+" "+f.Digest] = true
	}
	if !found["orphan_blob "+orphan.String()] || !found["untagged_manifest "+old.Digest.String()] || !found["missing_blob_reference "+layerC.String()] {
		t.Errorf("findings lack the injected damage: %v", found)
	}
	// --fail-on none never fails on findings; text output names the keys.
	stdout, _, code = run(t, "audit", "--fs-root", root, "--grace", "0s", "--upload-grace", "0s", "--fail-on", "none", "--cache-dir", t.TempDir())
	if code != 0 || !strings.Contains(stdout, "docker/registry/v2/blobs/sha256/ab/stray.txt") {
		t.Errorf("--fail-on none: exit %d\n%s", code, stdout)
	}
}

func TestAuditVerifyFlagsAFlippedByteOnly(t *testing.T) {
	root := sampleTree(t)
	stdout, stderr, code := run(t, "audit", "--fs-root", root, "--verify", "--fail-on", "broken", "--format", "json", "--cache-dir", t.TempDir())
	if code != 0 {
		t.Fatalf("intact tree: exit %d: %s %s", code, stderr, stdout)
	}
	// Flip one byte of one layer blob.
	var victim string
	filepath.Walk(filepath.Join(root, "docker/registry/v2/blobs"), func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Name() == "data" && victim == "" && info.Size() > 100 {
			victim = p
		}
		return nil
	})
	b, _ := os.ReadFile(victim)
	b[len(b)/2] ^= 0xff
	os.WriteFile(victim, b, 0o644)
	stdout, _, code = run(t, "audit", "--fs-root", root, "--verify", "--format", "json", "--cache-dir", t.TempDir())
	var doc struct {
		FindingsByKind map[string]int `json:"findings_by_kind"`
	}
	json.Unmarshal([]byte(stdout), &doc)
	if code != exitFindings || doc.FindingsByKind["digest_mismatch"] != 1 {
		t.Fatalf("flipped byte: exit %d, findings %v", code, doc.FindingsByKind)
	}
}

// TestReportFilesAndMetrics checks --output, --format csv/html and
// --metrics-file for audit and gc: files are private, metrics parse, gc's
// JSON carries the summary audit has.
func TestReportFilesAndMetrics(t *testing.T) {
	root := sampleTree(t)
	dir := t.TempDir()
	common := []string{"--fs-root", root, "--cache-dir", t.TempDir(), "--grace", "0s", "--upload-grace", "0s"}
	csvPath, htmlPath, prom := filepath.Join(dir, "r.csv"), filepath.Join(dir, "r.html"), filepath.Join(dir, "regsweep.prom")
	stdout, stderr, code := run(t, append([]string{"audit", "--format", "csv", "--output", csvPath, "--metrics-file", prom, "--fail-on", "none"}, common...)...)
	if code != 0 || stdout != "" {
		t.Fatalf("audit csv: exit %d, stdout %q, stderr %s", code, stdout, stderr)
	}
	if strings.Contains(stderr, "\r") {
		t.Errorf("progress drawn on a non-terminal stderr: %q", stderr)
	}
	_, _, code = run(t, append([]string{"audit", "--format", "html", "--output", htmlPath, "--fail-on", "none"}, common...)...)
	if code != 0 {
		t.Fatalf("audit html: exit %d", code)
	}
	for p, want := range map[string]os.FileMode{csvPath: 0o600, htmlPath: 0o600, prom: 0o644} {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v %v (want mode %v)", p, fi, err, want)
		}
	}
	// Each file's flag says the mode the file gets.
	for flag, path := range map[string]string{"output": csvPath, "metrics-file": prom} {
		fi, _ := os.Stat(path)
		cmd, _, _ := newRootCommand(io.Discard, io.Discard).Find([]string{"audit"})
		if usage := cmd.Flags().Lookup(flag).Usage; fi == nil || !strings.Contains(usage, fmt.Sprintf("mode %04o", fi.Mode().Perm())) {
			t.Errorf("--%s: %q does not name the mode its file gets (%v)", flag, usage, fi)
		}
	}
	b, _ := os.ReadFile(csvPath)
	rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil || strings.Join(rows[0], ",") != strings.Join(reports.CSVHeader, ",") || len(rows) != 1+4 {
		t.Errorf("csv: %v %v", rows, err)
	}
	if h, _ := os.ReadFile(htmlPath); !strings.Contains(string(h), `id="table-repositories"`) {
		t.Errorf("html report lacks its tables")
	}
	fams := parseMetrics(t, prom)
	if v := metricValue(fams, reports.MetricLastSuccess, map[string]string{"command": "audit"}); v <= 0 {
		t.Errorf("last success %v", v)
	}

	// gc: the same summary in JSON, and its own metrics.
	gcProm := filepath.Join(dir, "gc.prom")
	stdout, stderr, code = run(t, append([]string{"gc", "--format", "json", "--metrics-file", gcProm, "--delete-untagged", "--max-delete-fraction", "1"}, common...)...)
	if code != 0 {
		t.Fatalf("gc: exit %d: %s", code, stderr)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"plan", "guards", "totals", "reclaimable", "findings_by_kind", "repositories", "projects", "durations_seconds", "requests"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("gc JSON lacks %q", k)
		}
	}
	planBytes := doc["plan"].(map[string]any)["bytes"].(float64)
	if rb := doc["reclaimable"].(map[string]any)["bytes"].(float64); rb != planBytes || rb == 0 {
		t.Errorf("gc reclaimable.bytes %v, plan.bytes %v", rb, planBytes)
	}
	g := parseMetrics(t, gcProm)
	if v := metricValue(g, reports.MetricReclaimableBytes, map[string]string{"command": "gc"}); v != planBytes {
		t.Errorf("gc reclaimable metric %v, want %v", v, planBytes)
	}
	if v := metricValue(g, reports.MetricDryRun, map[string]string{"command": "gc"}); v != 1 {
		t.Errorf("dry run metric %v", v)
	}
	// A format gc does not have is a usage error.
	if _, _, code := run(t, append([]string{"gc", "--format", "html"}, common...)...); code != exitUsage {
		t.Errorf("gc --format html: exit %d", code)
	}
}

// TestFailedAuditKeepsLastSuccess: a run that cannot open its storage
// still writes metrics, with last_run_success 0 and the old success time.
func TestFailedAuditKeepsLastSuccess(t *testing.T) {
	root := sampleTree(t)
	prom := filepath.Join(t.TempDir(), "a.prom")
	if _, _, code := run(t, "audit", "--fs-root", root, "--cache-dir", t.TempDir(), "--metrics-file", prom, "--fail-on", "none"); code != 0 {
		t.Fatalf("exit %d", code)
	}
	good := metricValue(parseMetrics(t, prom), reports.MetricLastSuccess, nil)
	_, _, code := run(t, "audit", "--s3-bucket", "b", "--s3-endpoint", "http://127.0.0.1:1", "--s3-http", "--metrics-file", prom)
	if code == 0 {
		t.Fatal("audit of an unreachable store succeeded")
	}
	fams := parseMetrics(t, prom)
	if v := metricValue(fams, reports.MetricLastRunSuccess, nil); v != 0 {
		t.Errorf("last_run_success %v", v)
	}
	if v := metricValue(fams, reports.MetricLastSuccess, nil); v != good || good == 0 {
		t.Errorf("last success %v, want the good run's %v", v, good)
	}
}

func parseMetrics(t *testing.T, path string) map[string]*dto.MetricFamily {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(f)
	if err != nil {
		t.Fatalf("%s does not parse: %v", path, err)
	}
	return fams
}

// metricValue is the gauge value of the series with these labels (-1 when
// there is none).
func metricValue(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	for _, m := range fams[name].GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range labels {
			match = match && have[k] == v
		}
		if match {
			return m.GetGauge().GetValue()
		}
	}
	return -1
}
