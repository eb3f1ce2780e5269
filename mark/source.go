package mark

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/layout"
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

	reads, hits, cacheErrors atomic.Int64
}

var _ Source = (*BlobSource)(nil)

// StorageSource reads manifests from d with Get(blob data key, maxSize)
// (DefaultMaxManifestSize when maxSize <= 0). With cacheDir != "" verified
// manifests are kept under cacheDir/<alg>/<hex[:2]>/<hex> (directories 0700,
// files 0600, written with a temporary file and a rename) and read from
// there first; a cached file whose digest does not verify is ignored and
// replaced.
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

// Manifest implements Source.
func (s *BlobSource) Manifest(ctx context.Context, d digest.Digest) ([]byte, error) {
	key, err := layout.Path(layout.BlobData{Digest: d})
	if err != nil {
		return nil, fmt.Errorf("manifest %q: %w", d, err)
	}
	if s.cacheDir != "" {
		if b, ok := s.readCache(d); ok {
			s.hits.Add(1)
			return b, nil
		}
	}
	s.reads.Add(1)
	b, err := s.d.Get(ctx, key, s.maxSize)
	if err != nil {
		return nil, err
	}
	if actual := d.Algorithm().FromBytes(b); actual != d {
		return nil, &DigestMismatchError{Digest: d, Key: key, Actual: actual}
	}
	if s.cacheDir != "" {
		if err := s.writeCache(d, b); err != nil {
			s.cacheErrors.Add(1)
		}
	}
	return b, nil
}

func (s *BlobSource) cachePath(d digest.Digest) string {
	hex := d.Encoded()
	return filepath.Join(s.cacheDir, d.Algorithm().String(), hex[:2], hex)
}

// readCache returns the cached content of d if it is there and verifies.
func (s *BlobSource) readCache(d digest.Digest) ([]byte, bool) {
	f, err := os.Open(s.cachePath(d))
	if err != nil {
		return nil, false
	}
	defer f.Close()
	// Sized from a stat: io.ReadAll's doubling allocated about three times
	// each manifest, for every manifest of every run.
	fi, err := f.Stat()
	if err != nil || fi.Size() > s.maxSize {
		return nil, false
	}
	b := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, b); err != nil || d.Algorithm().FromBytes(b) != d {
		return nil, false
	}
	return b, true
}

func (s *BlobSource) writeCache(d digest.Digest, b []byte) (err error) {
	p := s.cachePath(d)
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// Temporary names start with a dot and never equal a digest's hex, so
	// a reader never opens a half-written file.
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.Remove(f.Name())
		}
	}()
	_, werr := f.Write(b)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), 0o600); err != nil {
		return err
	}
	return os.Rename(f.Name(), p)
}
