package sweep_test

import (
	"context"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/regsweep/regsweep/internal/regtree"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/storage/filesystem"
	"github.com/regsweep/regsweep/sweep"
)

// fillingDriver writes a file into the directory of the first layer link
// it deletes, just after the delete: a push landing between the delete
// and the removal of the emptied directories.
type fillingDriver struct {
	storage.Driver
	root   string
	once   sync.Once
	filled string
}

// Capabilities passes the filesystem's on: its Delete is the only call
// this wrapper changes.
func (f *fillingDriver) Capabilities() storage.Capabilities { return storage.CapabilitiesOf(f.Driver) }

func (f *fillingDriver) Delete(ctx context.Context, keys []string) ([]storage.DeleteResult, error) {
	res, err := f.Driver.Delete(ctx, keys)
	for _, k := range keys {
		if strings.Contains(k, "/_layers/") {
			f.once.Do(func() {
				f.filled = path.Dir(k) + "/link"
				os.WriteFile(filepath.Join(f.root, f.filled), []byte("pushed just now"), 0o644)
			})
		}
	}
	return res, err
}

// TestExecuteRemovesEmptiedDirectoriesButNotRefilledOnes: through the
// executor, the directories a run empties go, and one a writer filled
// after the delete stays, with its parents and its file.
func TestExecuteRemovesEmptiedDirectoriesButNotRefilledOnes(t *testing.T) {
	root := t.TempDir()
	fs, err := filesystem.New(root, 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := regtree.Generate(context.Background(), fs, spec, 8); err != nil {
		t.Fatal(err)
	}
	d := &fillingDriver{Driver: fs, root: root}
	run := gc(t, d, true, 0, sweep.ExecOptions{})
	if run.err != nil {
		t.Fatal(run.err)
	}
	if d.filled == "" || run.result.RemovedDirectories == 0 {
		t.Fatalf("filled %q, removed %d directories", d.filled, run.result.RemovedDirectories)
	}
	if b, err := os.ReadFile(filepath.Join(root, d.filled)); err != nil || string(b) != "pushed just now" {
		t.Errorf("the file written after the delete: %q %v", b, err)
	}
}
