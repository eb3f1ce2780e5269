package main

import (
	"log/slog"
	"os"
	"path/filepath"

	"github.com/regsweep/regsweep/mark"
	"github.com/regsweep/regsweep/storage"
)

func defaultCacheDir() string {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "regsweep", "manifests")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".cache", "regsweep", "manifests")
	}
	return ""
}

// manifestSource reads a command's manifests from d through the cache in
// cacheDir ("" for none). closeManifestSource must follow.
func manifestSource(d storage.Driver, cacheDir string) *mark.BlobSource {
	return mark.StorageSource(d, cacheDir, 0)
}

// saveManifestCache writes what the run has read so far into the cache, so
// that a run killed later (in its sweep) does not read it again. A cache
// that cannot be written costs the next run its reads, never this run's
// result: it is a warning.
func saveManifestCache(src *mark.BlobSource, log *slog.Logger) {
	if err := src.SaveCache(); err != nil {
		log.Warn("the manifest cache was not saved", "err", err)
	}
}

func closeManifestSource(src *mark.BlobSource, log *slog.Logger) {
	if err := src.Close(); err != nil {
		log.Warn("the manifest cache was not saved", "err", err)
	}
}
