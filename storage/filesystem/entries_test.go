package filesystem_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/storage/filesystem"
)

func write(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func open(t *testing.T, root string) *filesystem.Driver {
	t.Helper()
	d, err := filesystem.New(root, 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func walk(d storage.Driver, prefix string) ([]string, error) {
	var keys []string
	err := d.Walk(context.Background(), prefix, func(oi storage.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	})
	slices.Sort(keys)
	return keys, err
}

const repos = "docker/registry/v2/repositories/"

// TestSymlinksAreWalkedThrough: a repository directory moved to another
// volume and linked back, a blob shard directory that is a link, and a
// link file that is a symlink are seen as the registry sees them (it
// stats through links): listed under the link's path, and Stat, Get and
// Delete work through them. On main the walk skipped every symlink, and
// gc deleted the linked repository's images.
func TestSymlinksAreWalkedThrough(t *testing.T) {
	root, other := t.TempDir(), t.TempDir()
	write(t, filepath.Join(other, "big/_manifests/tags/v1/current/link"), "sha256:aa")
	symlink(t, filepath.Join(other, "big"), filepath.Join(root, repos+"team/big"))
	write(t, filepath.Join(root, repos+"small/_layers/sha256/bb/link"), "sha256:bb")
	write(t, filepath.Join(other, "shard/cc/data"), "blob")
	symlink(t, filepath.Join(other, "shard"), filepath.Join(root, "docker/registry/v2/blobs/sha256/cc"))
	write(t, filepath.Join(other, "a-link-file"), "sha256:dd")
	symlink(t, filepath.Join(other, "a-link-file"), filepath.Join(root, repos+"small/_layers/sha256/dd/link"))
	d := open(t, root)

	keys, err := walk(d, "docker/")
	want := []string{
		"docker/registry/v2/blobs/sha256/cc/cc/data",
		repos + "small/_layers/sha256/bb/link",
		repos + "small/_layers/sha256/dd/link",
		repos + "team/big/_manifests/tags/v1/current/link",
	}
	if err != nil || !slices.Equal(keys, want) {
		t.Fatalf("Walk: %v, %v\nwant %v", keys, err, want)
	}
	// A walk that starts inside a linked directory, as the walker's
	// per-repository listings do.
	if keys, err := walk(d, repos+"team/big/"); err != nil || len(keys) != 1 {
		t.Errorf("Walk of the linked repository: %v, %v", keys, err)
	}
	ctx := context.Background()
	big := repos + "team/big/_manifests/tags/v1/current/link"
	if oi, err := d.Stat(ctx, big); err != nil || oi.Size != int64(len("sha256:aa")) {
		t.Errorf("Stat through the link: %+v %v", oi, err)
	}
	if b, err := d.Get(ctx, repos+"small/_layers/sha256/dd/link", 100); err != nil || string(b) != "sha256:dd" {
		t.Errorf("Get of a symlinked file: %q %v", b, err)
	}
	if res, err := d.Delete(ctx, []string{big, repos + "small/_layers/sha256/dd/link"}); err != nil || len(res) != 0 {
		t.Fatalf("Delete through links: %v %v", res, err)
	}
	if _, err := os.Stat(filepath.Join(other, "big/_manifests/tags/v1/current/link")); !os.IsNotExist(err) {
		t.Errorf("the file behind the linked directory is still there: %v", err)
	}
	// A symlinked file's key is the link: deleting it removes the link,
	// as the registry's own delete does, and leaves what it pointed to.
	if _, err := os.Stat(filepath.Join(other, "a-link-file")); err != nil {
		t.Errorf("the target of a deleted symlinked file: %v", err)
	}
}

// TestEntriesTheWalkCannotClassify: a symlink loop, a dangling link, a
// fifo and a socket end the walk with an error naming the key, never a
// skipped entry (docs/bad-input.md). On main each was skipped silently.
func TestEntriesTheWalkCannotClassify(t *testing.T) {
	cases := []struct {
		name string
		make func(t *testing.T, root string) string // returns the key the error must name
		want string
	}{
		{"link to a directory above it", func(t *testing.T, root string) string {
			symlink(t, "..", filepath.Join(root, repos+"app/loop"))
			return repos + "app/loop"
		}, "leads back to \"docker/registry/v2/repositories\", a directory above it"},
		{"link to the root", func(t *testing.T, root string) string {
			symlink(t, root, filepath.Join(root, repos+"app/root"))
			return repos + "app/root"
		}, "leads back to the storage root"},
		{"two links to each other's directories", func(t *testing.T, root string) string {
			symlink(t, filepath.Join(root, repos+"b"), filepath.Join(root, repos+"a/to-b"))
			symlink(t, filepath.Join(root, repos+"a"), filepath.Join(root, repos+"b/to-a"))
			return "/to-"
		}, "symlink loop"},
		{"links that resolve to each other", func(t *testing.T, root string) string {
			symlink(t, "y", filepath.Join(root, repos+"app/x"))
			symlink(t, "x", filepath.Join(root, repos+"app/y"))
			return repos + "app/"
		}, "symlink loop"},
		{"dangling link", func(t *testing.T, root string) string {
			symlink(t, "/nonexistent/regsweep-volume/repo", filepath.Join(root, repos+"moved"))
			return repos + "moved"
		}, `dangling symlink: its target "/nonexistent/regsweep-volume/repo" does not exist`},
		{"fifo", func(t *testing.T, root string) string {
			p := filepath.Join(root, repos+"app/_layers/sha256/ab/link")
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
			return repos + "app/_layers/sha256/ab/link"
		}, "a named pipe (fifo), not a regular file"},
		{"socket", func(t *testing.T, root string) string {
			dir := filepath.Join(root, repos+"app")
			os.MkdirAll(dir, 0o755)
			l, err := net.Listen("unix", filepath.Join(dir, "s"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			return repos + "app/s"
		}, "a socket, not a regular file"},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			root := t.TempDir()
			write(t, filepath.Join(root, repos+"app/_manifests/tags/v1/current/link"), "sha256:aa")
			key := c.make(t, root)
			done := make(chan struct{})
			var keys []string
			var err error
			go func() {
				defer close(done)
				keys, err = walk(open(t, root), "docker/")
			}()
			select {
			case <-done:
			case <-time.After(time.Minute):
				t.Fatal("the walk did not end")
			}
			var pe *storage.PathError
			if !errors.As(err, &pe) || !strings.Contains(pe.Key, key) || !strings.Contains(err.Error(), c.want) || storage.IsNotFound(err) {
				t.Fatalf("Walk: %v after %d keys; want an error naming %q and saying %q", err, len(keys), key, c.want)
			}
		})
	}
	// A walk that starts at a dangling link (the walker lists each
	// repository on its own) is no empty listing either.
	root := t.TempDir()
	symlink(t, "/nonexistent/regsweep-volume/repo", filepath.Join(root, repos+"moved"))
	if keys, err := walk(open(t, root), repos+"moved/"); err == nil || !strings.Contains(err.Error(), "dangling symlink") {
		t.Errorf("Walk from a dangling link: %v, %v", keys, err)
	}
}

// TestSpecialFilesAreNotRead: Stat, Get and Open of a fifo fail at once
// naming the key (a plain open would wait for a writer forever).
func TestSpecialFilesAreNotRead(t *testing.T) {
	root := t.TempDir()
	key := repos + "app/_layers/sha256/ab/link"
	os.MkdirAll(filepath.Dir(filepath.Join(root, key)), 0o755)
	if err := syscall.Mkfifo(filepath.Join(root, key), 0o644); err != nil {
		t.Fatal(err)
	}
	d := open(t, root)
	ctx := context.Background()
	done := make(chan []error)
	go func() {
		_, e1 := d.Stat(ctx, key)
		_, e2 := d.Get(ctx, key, 100)
		_, e3 := d.Open(ctx, key)
		done <- []error{e1, e2, e3}
	}()
	select {
	case errs := <-done:
		for i, err := range errs {
			if err == nil || storage.IsNotFound(err) || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "fifo") {
				t.Errorf("call %d: %v", i, err)
			}
		}
	case <-time.After(time.Minute):
		t.Fatal("reading a fifo blocked")
	}
	if _, err := d.Get(ctx, repos+"app", 100); !storage.IsNotFound(err) {
		t.Errorf("Get of a directory: %v, want not found", err)
	}
}
