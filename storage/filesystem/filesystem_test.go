package filesystem_test

import (
	"testing"

	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/storage/filesystem"
	"github.com/regsweep/regsweep/storage/storagetest"
)

func TestFilesystemConformance(t *testing.T) {
	root := t.TempDir()
	storagetest.Run(t, func(t *testing.T) storage.Driver {
		d, err := filesystem.New(root, 8, nil)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}, storagetest.Options{PageSize: 1000})
}
