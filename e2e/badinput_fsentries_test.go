package e2e

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"unicode/utf8"

	"github.com/regsweep/regsweep/internal/testenv"
	"github.com/regsweep/regsweep/layout"
)

// entriesOf names every entry under root with its type, reading no file
// (a fifo would block a read): what a refusal must leave as it was.
func entriesOf(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, de os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		out = append(out, strings.TrimPrefix(p, root)+" "+de.Type().String())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// TestBadInputFilesystemEntries: an entry the filesystem walk cannot
// classify ends the walk (exit 5) with its key and the cause named, and
// gc --delete deletes nothing (docs/bad-input.md). Before, each was
// skipped silently.
func TestBadInputFilesystemEntries(t *testing.T) {
	const repos = layout.RepositoriesPrefix
	cases := []struct {
		name string
		make func(t *testing.T, root string) []string // the strings the message must hold
	}{
		{"symlink to a directory above it", func(t *testing.T, root string) []string {
			if err := os.Symlink("../..", filepath.Join(root, repos+"app/_manifests/up")); err != nil {
				t.Fatal(err)
			}
			return []string{repos + "app/_manifests/up", "symlink loop", "a directory above it"}
		}},
		{"symlinks that resolve to each other", func(t *testing.T, root string) []string {
			os.Symlink("y", filepath.Join(root, repos+"app/x"))
			os.Symlink("x", filepath.Join(root, repos+"app/y"))
			return []string{repos + "app/", "symlink loop", "too many levels of symbolic links"}
		}},
		{"dangling symlink", func(t *testing.T, root string) []string {
			os.Symlink("/mnt/regsweep-unmounted-volume/big", filepath.Join(root, repos+"big"))
			return []string{repos + "big", `dangling symlink: its target "/mnt/regsweep-unmounted-volume/big" does not exist`}
		}},
		{"fifo", func(t *testing.T, root string) []string {
			k := repos + "app/_layers/sha256/" + strings.Repeat("ab", 32) + "/link"
			os.MkdirAll(filepath.Dir(filepath.Join(root, k)), 0o755)
			if err := syscall.Mkfifo(filepath.Join(root, k), 0o644); err != nil {
				t.Fatal(err)
			}
			return []string{k, "a named pipe (fifo), not a regular file, a directory or a symlink to one"}
		}},
		{"socket", func(t *testing.T, root string) []string {
			l, err := net.Listen("unix", filepath.Join(root, repos+"app/s"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			return []string{repos + "app/s", "a socket, not a regular file"}
		}},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			b := newBadTree(t)
			b.flush(t)
			want := c.make(t, b.root)
			before := entriesOf(t, b.root)
			out, code := runCLI(t, nil, gcDeleteArgs(b.root)...)
			if code != 5 {
				t.Errorf("exit %d, want 5:\n%s", code, out)
			}
			for _, w := range want {
				if !strings.Contains(out, w) {
					t.Errorf("output does not name %q:\n%s", w, out)
				}
			}
			if !utf8.ValidString(out) {
				t.Errorf("output is not valid UTF-8: %q", out)
			}
			after := entriesOf(t, b.root)
			for _, e := range before {
				if !slices.Contains(after, e) && !strings.HasPrefix(e, "/regsweep") {
					t.Errorf("%s is gone", e)
				}
			}
		})
	}
}

// TestBadInputSymlinkedRepository: a repository moved to another volume
// and linked back, served by the real registry through the link: gc
// --delete --delete-untagged keeps its images (every one still pulls),
// sweeps the garbage beside it, and leaves the link in place. Before, the
// linked repository was invisible to the walk and its images were
// deleted.
func TestBadInputSymlinkedRepository(t *testing.T) {
	b := filesystemBackend(t)
	testenv.PushRandomImage(t, b.reg, "team/big:v1")
	testenv.PushRandomImage(t, b.reg, "small:v1")
	testenv.PushRandomImage(t, b.reg, "small:v2")
	b.reg.Crane(t, "tag", b.reg.Ref("small:v2"), "v1") // v2's first image is now untagged garbage
	repo := filepath.Join(b.fsRoot, layout.RepositoriesPrefix+"team/big")
	volume := filepath.Join(t.TempDir(), "big")
	if err := os.Rename(repo, volume); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(volume, repo); err != nil {
		t.Fatal(err)
	}
	b.reg.Crane(t, "validate", "--remote", b.reg.Ref("team/big:v1")) // the registry serves it through the link
	out, code := runCLI(t, nil, gcDeleteArgs(b.fsRoot, "--delete-untagged")...)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if !strings.Contains(out, "Deleted:") || strings.Contains(out, "Deleted:           0 objects") {
		t.Errorf("gc swept nothing:\n%s", out)
	}
	for _, ref := range []string{"team/big:v1", "small:v1", "small:v2"} {
		b.reg.Crane(t, "validate", "--remote", b.reg.Ref(ref))
	}
	if fi, err := os.Lstat(repo); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the repository link: %v %v", fi, err)
	}
}
