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

	prefetch atomic.Pointer[Prefetch] // the prefetch filling the cache in this run, if any

	// reads and prefetched are reads from storage, by Manifest and by the
	// prefetch; hits and prefetchHits are Manifest's cache hits on what
	// earlier runs and this run's prefetch put there.
	reads, prefetched, hits, prefetchHits, cacheErrors atomic.Int64
}

// Origin says where Manifest found a manifest.
type Origin int

const (
	// FromStorage: read from storage when asked.
	FromStorage Origin = iota
	// FromCache: from the local cache, kept there by an earlier run.
	FromCache
	// FromPrefetch: from the local cache, read into it by this run's
	// prefetch during the walk.
	FromPrefetch
)

// SourceCounts say where the manifests of a run came from, so that a
// summary can tell a first run's prefetch from an earlier run's cache.
type SourceCounts struct {
	// Read is manifests read from storage when the mark (or a recheck)
	// asked for them: cache misses.
	Read int64
	// Prefetched is manifests the prefetch read from storage during the
	// walk; PrefetchHits of them were then served from the cache.
	Prefetched, PrefetchHits int64
	// Cached is manifests served from the cache that earlier runs filled.
	Cached int64
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

// Reads is the number of manifests read from storage, by Manifest and by
// the prefetch.
func (s *BlobSource) Reads() int64 { return s.reads.Load() + s.prefetched.Load() }

// CacheHits is the number of manifests Manifest served from the local
// cache, whoever put them there.
func (s *BlobSource) CacheHits() int64 { return s.hits.Load() + s.prefetchHits.Load() }

// Counts splits Reads and CacheHits by who read the manifest and when.
func (s *BlobSource) Counts() SourceCounts {
	return SourceCounts{Read: s.reads.Load(), Prefetched: s.prefetched.Load(), PrefetchHits: s.prefetchHits.Load(), Cached: s.hits.Load()}
}

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
	b, _, err := s.ManifestFrom(ctx, d)
	return b, err
}

// ManifestFrom is Manifest, and says where the manifest came from.
func (s *BlobSource) ManifestFrom(ctx context.Context, d digest.Digest) ([]byte, Origin, error) {
	key, err := layout.Path(layout.BlobData{Digest: d})
	if err != nil {
		return nil, FromStorage, fmt.Errorf("manifest %q: %w", d, err)
	}
	if cache := s.cached(); cache != nil {
		if b, ok := cache.Get(d, s.maxSize); ok {
			if p := s.prefetch.Load(); p != nil && p.fetched(d) {
				s.prefetchHits.Add(1)
				return b, FromPrefetch, nil
			}
			s.hits.Add(1)
			return b, FromCache, nil
		}
	}
	s.reads.Add(1)
	b, err := s.read(ctx, d, key)
	return b, FromStorage, err
}

// read reads manifest d from storage at key, verifies it and adds it to
// the cache: the mark's reads and the prefetch's alike (each counts its
// own).
func (s *BlobSource) read(ctx context.Context, d digest.Digest, key string) ([]byte, error) {
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
