package mark

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/manifestcache"
	"github.com/regsweep/regsweep/storage"
)

// Source reads manifest blobs. It must be safe for concurrent use.
//
// Manifest returns the content of the manifest blob d. A missing blob is an
// error for which errors.Is(err, storage.ErrNotFound) holds. A blob whose
// content is not d (*DigestMismatchError) or is too large to be a manifest
// (storage.ErrTooLarge) is reported by Run as an unparseable manifest; any
// other error ends Run.
type Source interface {
	Manifest(ctx context.Context, d digest.Digest) ([]byte, error)
}

// DefaultMaxManifestSize is the read cap of StorageSource: distribution
// refuses manifests larger than 4 MiB.
const DefaultMaxManifestSize = 4 << 20

// DigestMismatchError is a stored blob whose content does not hash to the
// digest its key names.
type DigestMismatchError struct {
	Digest digest.Digest // the digest the key names
	Key    string
	Actual digest.Digest // the digest of the content
}

func (e *DigestMismatchError) Error() string {
	return fmt.Sprintf("manifest blob %s at %q has content with digest %s", e.Digest, e.Key, e.Actual)
}

// BlobSource reads manifests from a registry's blob store, verifies their
// digest and keeps verified ones in a local cache: manifests are
// content-addressed, so a cached one never goes stale.
type BlobSource struct {
	d        storage.Driver
	cacheDir string
	maxSize  int64

	openCache sync.Once
	cache     *manifestcache.Cache // nil without a cache, or if it would not open

	reads, hits, cacheErrors atomic.Int64
}

var _ Source = (*BlobSource)(nil)

// StorageSource reads manifests from d with Get(blob data key, maxSize)
// (DefaultMaxManifestSize when maxSize <= 0). With cacheDir != "" verified
// manifests are kept in a manifestcache there and read from it first; a
// cached one whose digest does not verify is ignored and read again. Close
// writes what the run added to the cache.
func StorageSource(d storage.Driver, cacheDir string, maxSize int64) *BlobSource {
	if maxSize <= 0 {
		maxSize = DefaultMaxManifestSize
	}
	return &BlobSource{d: d, cacheDir: cacheDir, maxSize: maxSize}
}

// Reads is the number of manifests read from storage.
func (s *BlobSource) Reads() int64 { return s.reads.Load() }

// CacheHits is the number of manifests served from the local cache.
func (s *BlobSource) CacheHits() int64 { return s.hits.Load() }

// CacheErrors is the number of manifests that could not be written to the
// cache (they were still returned).
func (s *BlobSource) CacheErrors() int64 { return s.cacheErrors.Load() }

// cached returns the cache, opening it on first use. A cache that will not
// open (an unwritable directory) is counted as a cache error and the run
// goes on without it.
func (s *BlobSource) cached() *manifestcache.Cache {
	if s.cacheDir == "" {
		return nil
	}
	s.openCache.Do(func() {
		c, err := manifestcache.Open(s.cacheDir)
		if err != nil {
			s.cacheErrors.Add(1)
			return
		}
		s.cache = c
	})
	return s.cache
}

// SaveCache writes the manifests read so far into the cache directory, so
// that a run killed later keeps them.
func (s *BlobSource) SaveCache() error {
	if c := s.opened(); c != nil {
		return c.Commit()
	}
	return nil
}

// Close saves the cache and closes it; the source then reads from storage
// only.
func (s *BlobSource) Close() error {
	if c := s.opened(); c != nil {
		return c.Close()
	}
	return nil
}

// opened is the cache if a read has opened it. One that was not is not
// opened now: that would index every pack only to close them.
func (s *BlobSource) opened() *manifestcache.Cache {
	s.openCache.Do(func() {}) // for the memory order of s.cache; a later read opens nothing
	return s.cache
}

// Manifest implements Source.
func (s *BlobSource) Manifest(ctx context.Context, d digest.Digest) ([]byte, error) {
	key, err := layout.Path(layout.BlobData{Digest: d})
	if err != nil {
		return nil, fmt.Errorf("manifest %q: %w", d, err)
	}
	if cache := s.cached(); cache != nil {
		if b, ok := cache.Get(d, s.maxSize); ok {
			s.hits.Add(1)
			return b, nil
		}
	}
	return s.read(ctx, d, key)
}

// read reads manifest d from storage at key, verifies it and adds it to
// the cache: the mark's reads and the prefetch's alike.
func (s *BlobSource) read(ctx context.Context, d digest.Digest, key string) ([]byte, error) {
	s.reads.Add(1)
	b, err := s.d.Get(ctx, key, s.maxSize)
	if err != nil {
		return nil, err
	}
	if actual := d.Algorithm().FromBytes(b); actual != d {
		return nil, &DigestMismatchError{Digest: d, Key: key, Actual: actual}
	}
	if cache := s.cached(); cache != nil {
		if err := cache.Put(d, b); err != nil {
			s.cacheErrors.Add(1)
		}
	}
	return b, nil
}
