package filesystem_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// keepLayout keeps what sweep's keepDir keeps: everything outside the
// repository and blob trees, repositories/ itself, and blobs/<algorithm>/.
func keepLayout(dir string) bool {
	if rest, ok := strings.CutPrefix(dir, "docker/registry/v2/blobs/"); ok {
		return strings.Count(rest, "/") <= 1
	}
	return dir == repos || !strings.HasPrefix(dir, repos)
}

// dirsUnder lists every directory below root, relative, with a trailing
// slash; a symlink is listed with "@" and not followed.
func dirsUnder(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	var visit func(rel string)
	visit = func(rel string) {
		entries, err := os.ReadDir(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			switch {
			case e.Type()&os.ModeSymlink != 0:
				out = append(out, rel+e.Name()+"@")
			case e.IsDir():
				out = append(out, rel+e.Name()+"/")
				visit(rel + e.Name() + "/")
			}
		}
	}
	visit("")
	slices.Sort(out)
	return out
}

// TestRemoveEmptyDirsBottomUp: the directories deleted keys leave empty
// go, bottom up, up to the layout's fixed directories; an emptied
// repository's parent goes too, and so do the empty subdirectories of a
// directory given (an upload's empty hashstates); a directory that still
// holds a file stays, and a symlink stays whatever its target holds.
func TestRemoveEmptyDirsBottomUp(t *testing.T) {
	root, other := t.TempDir(), t.TempDir()
	files := map[string]string{
		repos + "archive/legacy/_layers/sha256/aa/link":              "sha256:aa",
		repos + "archive/legacy/_manifests/revisions/sha256/bb/link": "sha256:bb",
		repos + "archive/legacy/_uploads/u1/data":                    "x",
		repos + "app/_layers/sha256/cc/link":                         "sha256:cc",
		repos + "app/_layers/sha256/dd/link":                         "sha256:dd",
		"docker/registry/v2/blobs/sha256/ab/abcd/data":               "blob",
		"docker/registry/v2/blobs/sha256/ef/ef01/data":               "blob",
		"docker/registry/v2/blobs/sha256/ef/ef02/data":               "blob",
	}
	for k, v := range files {
		write(t, filepath.Join(root, k), v)
	}
	os.MkdirAll(filepath.Join(root, repos+"archive/legacy/_uploads/u1/hashstates/sha256"), 0o755)
	os.MkdirAll(filepath.Join(other, "moved/_layers/sha256/ee"), 0o755)
	symlink(t, filepath.Join(other, "moved"), filepath.Join(root, repos+"moved"))
	d := open(t, root)
	ctx := context.Background()
	deleted := []string{
		repos + "archive/legacy/_layers/sha256/aa/link",
		repos + "archive/legacy/_manifests/revisions/sha256/bb/link",
		repos + "archive/legacy/_uploads/u1/data",
		repos + "app/_layers/sha256/cc/link",
		"docker/registry/v2/blobs/sha256/ab/abcd/data",
		"docker/registry/v2/blobs/sha256/ef/ef01/data",
	}
	if res, err := d.Delete(ctx, deleted); err != nil || len(res) != 0 {
		t.Fatal(res, err)
	}
	n, err := d.RemoveEmptyDirs(ctx, append(deleted, repos+"archive/legacy/", repos+"moved/", repos+"moved/_layers/sha256/ee/x"), keepLayout)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"docker/", "docker/registry/", "docker/registry/v2/",
		"docker/registry/v2/blobs/", "docker/registry/v2/blobs/sha256/", "docker/registry/v2/blobs/sha256/ef/", "docker/registry/v2/blobs/sha256/ef/ef02/",
		repos, repos + "app/", repos + "app/_layers/", repos + "app/_layers/sha256/", repos + "app/_layers/sha256/dd/",
		repos + "moved@",
	}
	if got := dirsUnder(t, root); !slices.Equal(got, want) {
		t.Errorf("directories left:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// archive/, legacy/, its _layers/sha256/aa/ (3 with _layers and
	// sha256), _manifests/revisions/sha256/bb/ (4), _uploads/u1/hashstates/sha256/
	// (4), app's cc/, blobs' ab/abcd/ (2) and ef/ef01/, and behind the
	// link (through it, as the registry sees the repository) ee/ and its
	// parents up to the link, which stays, with its target.
	if n != 2+3+4+4+1+2+1+3 {
		t.Errorf("removed %d directories", n)
	}
	if entries, err := os.ReadDir(filepath.Join(other, "moved")); err != nil || len(entries) != 0 {
		t.Errorf("the link's target: %v %v, want it there and empty", entries, err)
	}
}

// TestRemoveEmptyDirsKeepsWhatAWriterFilled: a file written between a
// key's delete and the removal of its directory keeps the directory and
// every parent.
func TestRemoveEmptyDirsKeepsWhatAWriterFilled(t *testing.T) {
	root := t.TempDir()
	key := repos + "app/_layers/sha256/aa/link"
	write(t, filepath.Join(root, key), "sha256:aa")
	d := open(t, root)
	ctx := context.Background()
	if res, err := d.Delete(ctx, []string{key}); err != nil || len(res) != 0 {
		t.Fatal(res, err)
	}
	write(t, filepath.Join(root, repos+"app/_layers/sha256/aa/link.new.tmp"), "sha256:aa") // a push, just now
	n, err := d.RemoveEmptyDirs(ctx, []string{key, repos + "app/"}, keepLayout)
	if err != nil || n != 0 {
		t.Fatalf("removed %d, %v", n, err)
	}
	if _, err := os.Stat(filepath.Join(root, repos+"app/_layers/sha256/aa/link.new.tmp")); err != nil {
		t.Fatal(err)
	}
}
