package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/internal/regtree"
	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/storage/filesystem"
)

// dirTree is sampleTree plus what gc --delete --delete-untagged empties
// whole: a repository with only an untagged image, alone under its
// parent (archive/legacy), and a stale upload.
func dirTree(t *testing.T) (root string, kept regtree.Descriptor) {
	t.Helper()
	root = sampleTree(t)
	d, err := filesystem.New(root, 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := regtree.NewWriter(d, 4)
	w.Image("archive/legacy", []byte(`{"os":"linux","n":1}`), []byte("legacy layer"))
	kept = w.Image("app", []byte(`{"os":"linux","n":2}`), []byte("app layer"))
	w.Tag("app", "v1", kept.Digest)
	w.Upload("app", "0000aaaa-0000-4000-8000-000000000001", time.Now().Add(-30*24*time.Hour), []byte("stale"))
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	return root, kept
}

// emptyDirs lists, relative to root and with a trailing slash, every
// directory under it that holds nothing (a symlink is not followed).
func emptyDirs(t *testing.T, root string) []string {
	t.Helper()
	var empty []string
	var visit func(rel string)
	visit = func(rel string) {
		entries, err := os.ReadDir(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) == 0 {
			empty = append(empty, rel)
		}
		for _, e := range entries {
			if e.IsDir() {
				visit(rel + e.Name() + "/")
			}
		}
	}
	visit("")
	slices.Sort(empty)
	return empty
}

// TestGCDeleteLeavesNoEmptyDirectory: after gc --delete --delete-untagged
// on a filesystem registry, no directory is left empty except the
// layout's fixed ones (and regsweep's lock directory): not an emptied
// repository's parent, nor _layers/sha256/<hex>/, revision, upload and
// blob directories. The summary says how many went. On main 20-odd
// empty directories stayed.
func TestGCDeleteLeavesNoEmptyDirectory(t *testing.T) {
	fixed := []string{"docker/", "docker/registry/", "docker/registry/v2/", layout.BlobsPrefix, layout.BlobsPrefix + "sha256/", layout.RepositoriesPrefix, "regsweep/"}
	args := func(root string, extra ...string) []string {
		return append([]string{"gc", "--fs-root", root, "--grace", "0s", "--upload-grace", "0s", "--delete-untagged", "--max-delete-fraction", "1", "--delete", "--cache-dir", t.TempDir()}, extra...)
	}
	root, kept := dirTree(t)
	stdout, stderr, code := run(t, args(root, "--format", "json")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var doc struct {
		Result struct {
			Deleted            map[string]int `json:"deleted"`
			RemovedDirectories int            `json:"removed_directories"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Result.Deleted["repository"] != 1 || doc.Result.Deleted["upload_file"] == 0 || doc.Result.RemovedDirectories == 0 {
		t.Errorf("result: %+v", doc.Result)
	}
	for _, dir := range emptyDirs(t, root) {
		if dir != "" && !slices.Contains(fixed, dir) {
			t.Errorf("empty directory left: %s", dir)
		}
	}
	for _, gone := range []string{layout.RepositoriesPrefix + "archive", layout.RepositoriesPrefix + "app/_uploads"} {
		if _, err := os.Lstat(filepath.Join(root, gone)); !os.IsNotExist(err) {
			t.Errorf("%s: %v", gone, err)
		}
	}
	key, _ := layout.Path(layout.BlobData{Digest: kept.Digest})
	if _, err := os.Stat(filepath.Join(root, key)); err != nil {
		t.Errorf("the tagged image's manifest: %v", err)
	}
	// Counted against the registry's tree walked before and after (the
	// run adds regsweep/ for its lock).
	root, _ = dirTree(t)
	before := countDirs(t, filepath.Join(root, "docker"))
	stdout, stderr, code = run(t, args(root)...)
	if code != 0 {
		t.Fatalf("text run: exit %d: %s", code, stderr)
	}
	m := regexp.MustCompile(`Directories: +(\d+) left empty and removed`).FindStringSubmatch(stdout)
	gone := before - countDirs(t, filepath.Join(root, "docker"))
	if m == nil || m[1] != strconv.Itoa(gone) {
		t.Errorf("summary %q; %d directories went", m, gone)
	}
}

func countDirs(t *testing.T, root string) int {
	n := 0
	filepath.WalkDir(root, func(_ string, e os.DirEntry, err error) error {
		if err == nil && e.IsDir() {
			n++
		}
		return err
	})
	return n
}

// TestGCDeleteKeepsASymlinkedRepository: a repository moved to another
// volume and linked back, and a blob shard directory that is a link, are
// walked through as the registry serves them: gc --delete keeps the
// repository's tagged image and its blobs, sweeps the garbage around it,
// and leaves the links in place. On main the linked repository was
// invisible and its images were deleted.
func TestGCDeleteKeepsASymlinkedRepository(t *testing.T) {
	root, volume := t.TempDir(), t.TempDir()
	d, err := filesystem.New(root, 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := regtree.NewWriter(d, 4)
	big := w.Image("team/big", []byte(`{"os":"linux","n":1}`), []byte("big layer one"), []byte("big layer two"))
	w.Tag("team/big", "v1", big.Digest)
	small := w.Image("small", []byte(`{"os":"linux","n":2}`), []byte("small layer"))
	w.Tag("small", "v1", small.Digest)
	orphan := w.Blob([]byte("orphan"))
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	move := func(rel, to string) {
		t.Helper()
		if err := os.Rename(filepath.Join(root, rel), to); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(to, filepath.Join(root, rel)); err != nil {
			t.Fatal(err)
		}
	}
	move(layout.RepositoriesPrefix+"team/big", filepath.Join(volume, "big"))
	bigKey, _ := layout.Path(layout.BlobData{Digest: big.Digest})
	shard := filepath.Dir(filepath.Dir(bigKey)) // blobs/sha256/<2 hex>
	move(shard, filepath.Join(volume, "shard"))

	_, stderr, code := run(t, "gc", "--fs-root", root, "--grace", "0s", "--upload-grace", "0s", "--delete-untagged", "--max-delete-fraction", "1", "--delete", "--cache-dir", t.TempDir())
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	stdout, stderr, code := run(t, "inventory", "--fs-root", root, "--format", "json")
	if code != 0 || !strings.Contains(stdout, "team/big") {
		t.Fatalf("inventory: exit %d, %s %s", code, stdout, stderr)
	}
	var missing []string
	err = filepath.WalkDir(filepath.Join(volume, "big"), func(p string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			b, _ := os.ReadFile(p)
			if ref := strings.TrimSpace(string(b)); strings.HasPrefix(ref, "sha256:") {
				k, _ := layout.Path(layout.BlobData{Digest: digest.Digest(ref)})
				if _, err := os.Stat(filepath.Join(root, k)); err != nil {
					missing = append(missing, k)
				}
			}
		}
		return err
	})
	if err != nil || len(missing) > 0 {
		t.Errorf("the linked repository lost blobs %v (%v)", missing, err)
	}
	if _, err := os.Stat(filepath.Join(root, bigKey)); err != nil {
		t.Errorf("the linked repository's manifest, in a linked shard: %v", err)
	}
	orphanKey, _ := layout.Path(layout.BlobData{Digest: orphan})
	if _, err := os.Stat(filepath.Join(root, orphanKey)); !os.IsNotExist(err) {
		t.Errorf("the orphan blob was not swept: %v", err)
	}
	for _, link := range []string{layout.RepositoriesPrefix + "team/big", shard} {
		if fi, err := os.Lstat(filepath.Join(root, link)); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("%s is no longer a symlink: %v", link, err)
		}
	}
}
