package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/internal/regtree"
	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/lock"
	"github.com/regsweep/regsweep/storage/filesystem"
)

// run executes the CLI in-process and returns stdout, stderr and the exit
// code main would use.
func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	root := newRootCommand(&stdout, &stderr)
	root.SetArgs(args)
	root.SetIn(strings.NewReader(""))
	err := root.ExecuteContext(context.Background())
	if err != nil {
		stderr.WriteString("regsweep: " + err.Error() + "\n")
	}
	return stdout.String(), stderr.String(), exitCode(err)
}

func sampleTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	d, err := filesystem.New(root, 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = regtree.Generate(context.Background(), d, regtree.Spec{Seed: 9, Repositories: 4, ImagesPerRepo: 3, TagsPerRepo: 1,
		LayersPerImg: 2, SharedLayers: 1, OrphanBlobs: 3, MultiArch: true, Uploads: 1}, 4)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// snapshot lists every file under root with its size and mtime.
func snapshot(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err == nil {
			out = append(out, p+" "+info.ModTime().String())
		}
		return nil
	})
	sort.Strings(out)
	return out
}

// assertUnchanged fails unless root is as snapshot found it before.
func assertUnchanged(t *testing.T, root string, before []string, what string) {
	t.Helper()
	if after := snapshot(t, root); !slices.Equal(after, before) {
		t.Errorf("%s", what)
	}
}

func TestInventoryJSONIsTheOnlyStdout(t *testing.T) {
	root := sampleTree(t)
	stdout, stderr, code := run(t, "inventory", "--format", "json", "--fs-root", root)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("stdout is not one JSON document: %v\n%s", err, stdout)
	}
	totals := doc["totals"].(map[string]any)
	for _, k := range []string{"repositories", "tags", "manifests", "layer_links", "blobs", "blob_bytes", "uploads", "unknown_keys"} {
		if _, ok := totals[k]; !ok {
			t.Errorf("totals lacks %q", k)
		}
	}
	if totals["repositories"].(float64) != 4 || totals["uploads"].(float64) != 1 {
		t.Errorf("totals: %v", totals)
	}
	reqs := doc["requests"].(map[string]any)
	for _, k := range []string{"list", "get", "head", "put", "delete"} {
		if _, ok := reqs[k]; !ok {
			t.Errorf("requests lacks %q", k)
		}
	}
	if !strings.Contains(stderr, "walking storage") {
		t.Errorf("logs should go to stderr: %q", stderr)
	}
}

func TestExitCodes(t *testing.T) {
	root := sampleTree(t)
	cfg := filepath.Join(t.TempDir(), "config.yml")
	os.WriteFile(cfg, []byte("storage:\n  gcs:\n    bucket: x\n"), 0o600)
	cases := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"unknown flag", []string{"inventory", "--bogus"}, exitUsage, "unknown flag"},
		{"bad format", []string{"inventory", "--fs-root", root, "--format", "xml"}, exitUsage, "--format"},
		{"unsupported driver", []string{"inventory", "--registry-config", cfg}, exitUsage, `"gcs" is not supported`},
		{"missing root", []string{"inventory", "--fs-root", filepath.Join(root, "nope")}, exitStorage, "does not exist"},
		{"s3 without bucket", []string{"inventory", "--storage-driver", "s3"}, exitUsage, "bucket"},
		{"plan missing", []string{"sweep", "--fs-root", root}, exitUsage, "--plan"},
	}
	for _, c := range cases {
		_, stderr, code := run(t, c.args...)
		if code != c.code || !strings.Contains(stderr, c.msg) {
			t.Errorf("%s: exit %d (want %d), stderr %q (want %q)", c.name, code, c.code, stderr, c.msg)
		}
	}
}

func TestCorruptLinkIsNamedAndExits3(t *testing.T) {
	root := sampleTree(t)
	key, _ := layout.Path(layout.LayerLink{Repo: "broken/repo", Digest: digest.Digest("sha256:" + strings.Repeat("ab", 32))})
	p := filepath.Join(root, key)
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.WriteFile(p, []byte("not a digest"), 0o644)
	_, stderr, code := run(t, "inventory", "--fs-root", root)
	if code != exitFindings || !strings.Contains(stderr, key) {
		t.Fatalf("exit %d, stderr %s", code, stderr)
	}
	// gc refuses to sweep past a corrupt link, in a dry run too.
	_, stderr, code = run(t, "gc", "--fs-root", root, "--cache-dir", t.TempDir())
	if code != exitGuard || !strings.Contains(stderr, "corrupt_link") {
		t.Fatalf("gc: exit %d, stderr %s", code, stderr)
	}
}

func TestGCDryRunWritesNothing(t *testing.T) {
	root := sampleTree(t)
	before := snapshot(t, root)
	stdout, stderr, code := run(t, "gc", "--fs-root", root, "--grace", "0s", "--upload-grace", "0s", "--delete-untagged", "--max-delete-fraction", "0.9", "--cache-dir", t.TempDir(), "--format", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var doc struct {
		DryRun bool `json:"dry_run"`
		Plan   struct{ Blobs, Manifests, Uploads int }
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatal(err)
	}
	if !doc.DryRun || doc.Plan.Blobs == 0 || doc.Plan.Manifests == 0 || doc.Plan.Uploads != 1 {
		t.Errorf("plan: %+v", doc)
	}
	assertUnchanged(t, root, before, "a dry run changed the storage")
}

func TestGCDeleteThenNothingLeft(t *testing.T) {
	root := sampleTree(t)
	cache := t.TempDir()
	_, stderr, code := run(t, "gc", "--fs-root", root, "--grace", "0s", "--upload-grace", "0s", "--delete-untagged", "--max-delete-fraction", "0.9", "--delete", "--cache-dir", cache)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	stdout, stderr, code := run(t, "gc", "--fs-root", root, "--grace", "0s", "--upload-grace", "0s", "--delete-untagged", "--max-delete-fraction", "0.9", "--cache-dir", cache, "--format", "json")
	if code != 0 {
		t.Fatalf("second run: exit %d: %s", code, stderr)
	}
	var doc struct {
		Plan          map[string]int64 `json:"plan"`
		ManifestReads int64            `json:"manifest_reads"`
	}
	json.Unmarshal([]byte(stdout), &doc)
	for _, k := range []string{"blobs", "manifests", "layer_links", "uploads", "tag_index_links", "repositories"} {
		if doc.Plan[k] != 0 {
			t.Errorf("second run plans %d %s", doc.Plan[k], k)
		}
	}
	if doc.ManifestReads != 0 {
		t.Errorf("second run read %d manifests from storage despite the cache", doc.ManifestReads)
	}
	if _, err := os.Stat(filepath.Join(root, lock.Key)); !os.IsNotExist(err) {
		t.Errorf("lock left behind: %v", err)
	}
}

func TestLockHeldRefuses(t *testing.T) {
	root := sampleTree(t)
	info, _ := json.Marshal(lock.Info{Token: "x", Hostname: "elsewhere", PID: 1, StartedAt: time.Now(), RefreshedAt: time.Now()})
	os.MkdirAll(filepath.Join(root, "regsweep"), 0o755)
	os.WriteFile(filepath.Join(root, lock.Key), info, 0o644)
	before := snapshot(t, root)
	_, stderr, code := run(t, "gc", "--fs-root", root, "--grace", "0s", "--delete", "--cache-dir", t.TempDir())
	if code != exitLocked || !strings.Contains(stderr, "lock") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	assertUnchanged(t, root, before, "a refused run changed the storage")
	stdout, _, code := run(t, "unlock", "--fs-root", root, "--yes")
	if code != 0 || !strings.Contains(stdout, "lock removed") {
		t.Fatalf("unlock: %d %s", code, stdout)
	}
}

func TestPlanOutThenSweep(t *testing.T) {
	root := sampleTree(t)
	cache := t.TempDir()
	planFile := filepath.Join(t.TempDir(), "plan.json")
	_, stderr, code := run(t, "gc", "--fs-root", root, "--grace", "0s", "--upload-grace", "0s", "--delete-untagged", "--max-delete-fraction", "0.9", "--plan-out", planFile, "--cache-dir", cache)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	st, err := os.Stat(planFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("plan file: %v %v", st, err)
	}
	other := sampleTree(t)
	if _, stderr, code := run(t, "sweep", "--plan", planFile, "--fs-root", other, "--delete"); code != exitPlan || !strings.Contains(stderr, "is for") {
		t.Errorf("plan for another storage: exit %d, %s", code, stderr)
	}
	if _, stderr, code := run(t, "sweep", "--plan", planFile, "--fs-root", root, "--delete", "--max-plan-age", "1ns"); code != exitPlan {
		t.Errorf("expired plan: exit %d, %s", code, stderr)
	}
	// The fraction is judged by sweep's own flag (default 0.5), not the plan's.
	if _, stderr, code := run(t, "sweep", "--plan", planFile, "--fs-root", root, "--delete", "--cache-dir", cache); code != exitGuard || !strings.Contains(stderr, "delete_fraction") {
		t.Errorf("sweep without --max-delete-fraction: exit %d, %s", code, stderr)
	}
	stdout, stderr, code := run(t, "sweep", "--plan", planFile, "--fs-root", root, "--delete", "--cache-dir", cache, "--format", "json", "--max-delete-fraction", "0.9")
	if code != 0 {
		t.Fatalf("sweep: exit %d: %s", code, stderr)
	}
	var doc struct {
		Result struct {
			Deleted map[string]int `json:"deleted"`
		} `json:"result"`
	}
	json.Unmarshal([]byte(stdout), &doc)
	if doc.Result.Deleted["blob"] == 0 {
		t.Errorf("sweep deleted no blob: %s", stdout)
	}
	os.WriteFile(planFile, []byte(`{"version":1,"items":[{"kind":"everything","key":"/"}]}`), 0o600)
	if _, _, code := run(t, "sweep", "--plan", planFile, "--fs-root", root); code != exitPlan {
		t.Errorf("tampered plan: exit %d", code)
	}
}

// planFor makes a plan of root with gc --plan-out and returns it decoded
// as a JSON object, to edit.
func planFor(t *testing.T, root string, args ...string) (string, map[string]any) {
	t.Helper()
	planFile := filepath.Join(t.TempDir(), "plan.json")
	args = append([]string{"gc", "--fs-root", root, "--grace", "0s", "--upload-grace", "0s", "--delete-untagged", "--plan-out", planFile, "--cache-dir", ""}, args...)
	if _, stderr, code := run(t, args...); code != 0 && code != exitGuard {
		t.Fatalf("gc: exit %d: %s", code, stderr)
	}
	b, err := os.ReadFile(planFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	return planFile, doc
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// sweep --plan judges the guards again on the storage as it is (issue 15,
// item 5): a plan whose tripped guards were edited out still refuses.
// (A deleting run writes its lock outside docker/: the registry's data is
// what must not change.)
func TestSweepPlanRecomputesGuards(t *testing.T) {
	root := sampleTree(t)
	planFile, doc := planFor(t, root) // the default --max-delete-fraction trips
	if guards, _ := doc["guards"].([]any); len(guards) == 0 {
		t.Fatalf("scenario: the plan should carry a tripped guard: %v", doc["guards"])
	}
	doc["guards"] = []any{}
	writeJSON(t, planFile, doc)
	before := snapshot(t, filepath.Join(root, "docker"))
	_, stderr, code := run(t, "sweep", "--plan", planFile, "--fs-root", root, "--delete", "--cache-dir", "")
	if code != exitGuard || !strings.Contains(stderr, "delete_fraction") {
		t.Errorf("guards edited out of the plan: exit %d, %s", code, stderr)
	}
	assertUnchanged(t, filepath.Join(root, "docker"), before, "a refused sweep changed the storage")
	// The dry run says the same.
	if _, stderr, code := run(t, "sweep", "--plan", planFile, "--fs-root", root, "--cache-dir", ""); code != exitGuard {
		t.Errorf("dry run of the edited plan: exit %d, %s", code, stderr)
	}

	// GitLab's lockfile appearing after the plan.
	planFile, _ = planFor(t, root, "--max-delete-fraction", "0.9")
	lockfile := filepath.Join(root, filepath.FromSlash("docker/registry/lockfiles/database-in-use"))
	if err := os.MkdirAll(filepath.Dir(lockfile), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lockfile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	before = snapshot(t, filepath.Join(root, "docker"))
	_, stderr, code = run(t, "sweep", "--plan", planFile, "--fs-root", root, "--delete", "--cache-dir", "", "--max-delete-fraction", "0.9")
	if code != exitGuard || !strings.Contains(stderr, "database_in_use") {
		t.Errorf("GitLab's lockfile: exit %d, %s", code, stderr)
	}
	assertUnchanged(t, filepath.Join(root, "docker"), before, "a refused sweep changed the storage")
}

// A plan's header is sealed: an edited Harbor flag (or any option) is
// refused, and a filesystem plan is bound to its volume, not its path.
func TestSweepPlanRefusesEditedHeaderAndAnotherVolume(t *testing.T) {
	root := sampleTree(t)
	planFile, doc := planFor(t, root, "--max-delete-fraction", "0.9")
	orig, err := os.ReadFile(planFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, edit := range []struct {
		name  string
		apply func(map[string]any)
	}{
		{"harbor flag set", func(d map[string]any) { d["options"].(map[string]any)["harbor"] = true }},
		{"grace changed", func(d map[string]any) { d["options"].(map[string]any)["grace"] = "1h0m0s" }},
		{"volume changed", func(d map[string]any) { d["storage"].(map[string]any)["volume"] = "dev=1,ino=2" }},
	} {
		var d map[string]any
		if err := json.Unmarshal(orig, &d); err != nil {
			t.Fatal(err)
		}
		edit.apply(d)
		writeJSON(t, planFile, d)
		if _, stderr, code := run(t, "sweep", "--plan", planFile, "--fs-root", root, "--delete", "--cache-dir", ""); code != exitPlan || !strings.Contains(stderr, "edited") {
			t.Errorf("%s: exit %d, %s", edit.name, code, stderr)
		}
	}
	if vol, _ := doc["storage"].(map[string]any)["volume"].(string); !strings.HasPrefix(vol, "dev=") {
		t.Fatalf("a filesystem plan names no volume: %v", doc["storage"])
	}

	// Another volume at the same path: the tree is moved away and another
	// one put in its place.
	if err := os.WriteFile(planFile, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(root, root+".moved"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(sampleTree(t), root); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, filepath.Join(root, "docker"))
	if _, stderr, code := run(t, "sweep", "--plan", planFile, "--fs-root", root, "--delete", "--cache-dir", "", "--max-delete-fraction", "0.9"); code != exitPlan || !strings.Contains(stderr, "volume") {
		t.Errorf("another volume at the plan's path: exit %d, %s", code, stderr)
	}
	assertUnchanged(t, filepath.Join(root, "docker"), before, "a refused sweep changed the storage")
}

func TestCheckPlanAge(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		created time.Time
		ok      bool
	}{{now.Add(-time.Hour), true}, {now.Add(-25 * time.Hour), false}, {now.Add(time.Minute), true}, {now.Add(2 * time.Hour), false}} {
		err := checkPlanAge("p.json", c.created, now, 24*time.Hour)
		if (err == nil) != c.ok || (err != nil && exitCode(err) != exitPlan) {
			t.Errorf("plan made %s ago: %v", now.Sub(c.created), err)
		}
	}
}

// A key outside the registry's layout (not under blobs/ or repositories/)
// is reported by inventory and audit, and gc never deletes it (issue 15).
func TestKeysOutsideTheLayoutAreReportedNotDeleted(t *testing.T) {
	root := sampleTree(t)
	stray := filepath.Join(root, "docker", "registry", "v2", "stray", "x.txt")
	if err := os.MkdirAll(filepath.Dir(stray), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stray, []byte("notes"), 0o644); err != nil {
		t.Fatal(err)
	}
	const key = "docker/registry/v2/stray/x.txt"
	stdout, stderr, code := run(t, "inventory", "--fs-root", root)
	if code != exitFindings || !strings.Contains(stdout+stderr, key) {
		t.Errorf("inventory: exit %d, the stray key not named:\n%s%s", code, stdout, stderr)
	}
	stdout, stderr, code = run(t, "audit", "--fs-root", root, "--format", "json", "--cache-dir", "")
	if code != exitFindings || !strings.Contains(stdout, `"unknown_key"`) || !strings.Contains(stdout, key) {
		t.Errorf("audit: exit %d, no unknown_key finding for %s:\n%s", code, key, stderr)
	}
	if _, stderr, code := run(t, "gc", "--fs-root", root, "--delete", "--delete-untagged", "--grace", "0s", "--upload-grace", "0s",
		"--max-delete-fraction", "0.9", "--cache-dir", ""); code != 0 {
		t.Fatalf("gc --delete: exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(stray); err != nil {
		t.Errorf("gc deleted a key outside the layout: %v", err)
	}
}
