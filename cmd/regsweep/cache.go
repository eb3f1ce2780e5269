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

// closeManifestSource closes the source of mark.StorageSource, saving its
// cache, with the same warning.
func closeManifestSource(src *mark.BlobSource, log *slog.Logger) {
	if err := src.Close(); err != nil {
		log.Warn("the manifest cache was not saved", "err", err)
	}
}
