package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/internal/regtree"
	"github.com/regsweep/regsweep/layout"
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
	if after := snapshot(t, root); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Errorf("audit changed the storage")
	}
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
		// The injected one, and broken's link to the layer removed below.
		"dangling_layer_link":    2,
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
