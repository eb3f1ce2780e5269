package main

import (
	"log/slog"
	"os"
	"path/filepath"

	"github.com/regsweep/regsweep/mark"
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

// saveManifestCache writes what the run has read so far into the cache, so
// that a run killed later (in its sweep) does not read it again. A cache
// that cannot be written costs the next run its reads, never this run's
// result: it is a warning.
func saveManifestCache(src *mark.BlobSource, log *slog.Logger) {
	if err := src.SaveCache(); err != nil {
		log.Warn("the manifest cache was not saved", "err", err)
	}
}

// closeManifestSource closes the source of mark.StorageSource, saving its
// cache, with the same warning.
func closeManifestSource(src *mark.BlobSource, log *slog.Logger) {
	if err := src.Close(); err != nil {
		log.Warn("the manifest cache was not saved", "err", err)
	}
}
