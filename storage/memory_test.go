package storage_test

import (
	"testing"

	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/storage/storagetest"
)

func TestMemoryConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Driver { return storage.NewMemory(nil, nil) }, storagetest.Options{PageSize: 1000})
}
