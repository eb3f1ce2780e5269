// Package storage is the one small interface regsweep reads and deletes
// registry storage through, plus the wrappers that add behaviour to it.
//
// Keys are logical: "docker/registry/v2/blobs/sha256/ab/<hex>/data", never
// prefixed by a root directory, an S3 rootdirectory or Swift's "files/"; each
// driver maps them to its own namespace.
//
// It owns the interface, the optional capabilities and how every wrapper
// passes them on (capabilities.go). It may not know the registry's layout
// (layout does) or decide what a key is worth keeping.
package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"time"
)

// ObjectInfo describes one stored object as a listing or a stat sees it.
type ObjectInfo struct {
	Key     string
	Size    int64
	ModTime time.Time
	// ETag is the store's entity tag without quotes; empty where the store
	// has none (filesystem, memory).
	ETag string
}

// DeleteResult is the outcome for one key of a batched delete.
// Err is nil when the key was deleted, ErrNotFound when it was already gone
// (where the store can tell), anything else when it failed.
type DeleteResult struct {
	Key string
	Err error
}

// Driver is what every backend implements.
//
// Walk lists every object whose key starts with prefix, recursively and
// flat, calling fn once per object in the goroutine that called Walk. It
// returns fn's error, ctx.Err(), or a listing error; a listing error is
// never turned into a shorter listing. A prefix ending in "/" never matches
// a sibling that merely shares its first letters ("a/" does not match
// "ab/x"). Order is not specified.
//
// Get returns at most max bytes; an object larger than max is ErrTooLarge,
// so a corrupt key can never make the process read a huge body.
//
// Delete removes exactly the keys given (never recursively), in batches
// that suit the store, and returns one result per failed or missing key.
// Deleting a missing key is not a failure. The error return is for the
// call as a whole (cancelled, refused, unreachable).
type Driver interface {
	// Name is the driver's kind: "filesystem", "s3", "swift", "memory".
	Name() string
	// Location identifies the storage: what a plan is bound to.
	Location() string
	Walk(ctx context.Context, prefix string, fn func(ObjectInfo) error) error
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	Get(ctx context.Context, key string, max int64) ([]byte, error)
	Put(ctx context.Context, key string, data []byte) error
	Delete(ctx context.Context, keys []string) ([]DeleteResult, error)
}

// Sentinel errors. Drivers wrap them in *PathError; callers use errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrTooLarge = errors.New("object larger than the read limit")
	ErrReadOnly = errors.New("storage is opened read-only")
	// ErrAccessDenied means the store refused the credentials or the operation.
	ErrAccessDenied = errors.New("access denied: the storage refused the credentials")
	// ErrExists means a conditional create (Creator) found the key there.
	ErrExists = errors.New("already exists")
)

// PathError records the operation and key that failed.
type PathError struct {
	Op     string
	Driver string
	Key    string
	Err    error
}

func (e *PathError) Error() string {
	if e.Key == "" {
		return fmt.Sprintf("%s %s: %v", e.Driver, e.Op, e.Err)
	}
	return fmt.Sprintf("%s %s %q: %v", e.Driver, e.Op, e.Key, e.Err)
}

func (e *PathError) Unwrap() error { return e.Err }

// IsNotFound reports whether err means the object does not exist.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// Optional capabilities: what a store can do besides Driver. Which ones a
// driver offers is CapabilitiesOf(d) (capabilities.go); every wrapper
// passes each one on through what it does to a call.

// MultipartUpload is an incomplete S3 multipart upload.
type MultipartUpload struct {
	Key       string
	UploadID  string
	Initiated time.Time
}

// MultipartUploads is implemented by stores with incomplete multipart
// uploads that a listing does not show (S3).
type MultipartUploads interface {
	WalkMultipartUploads(ctx context.Context, prefix string, fn func(MultipartUpload) error) error
	AbortMultipartUpload(ctx context.Context, key, uploadID string) error
}

// LargeObjects is implemented by stores that keep big objects as a
// manifest object plus segments stored elsewhere (Swift DLOs). On such a
// store a listing shows a manifest object with size 0.
type LargeObjects interface {
	// LargeObject stats key with one request and reports its real size and
	// the segment prefix its manifest points to ("" for a plain object).
	// Segment prefixes and segment names are relative to the container.
	LargeObject(ctx context.Context, key string) (info ObjectInfo, segmentPrefix string, err error)
	// WalkSegments lists every segment object; keys are segment names.
	WalkSegments(ctx context.Context, fn func(ObjectInfo) error) error
	DeleteSegments(ctx context.Context, names []string) ([]DeleteResult, error)
}

// DirRemover is implemented by stores with real directories, which stay
// behind when the last key under them is deleted (filesystem).
type DirRemover interface {
	// RemoveEmptyDirs removes the directories that deleting keys left
	// empty: each key's directory (a key ending in "/" is a directory,
	// whose empty subdirectories go too, and so does a key's directory
	// when it holds only empty ones) and then its parents while they are
	// empty, bottom up. A directory is removed only if it is empty at
	// that instant, so one a writer has just filled stays; a symlink is
	// neither removed nor followed; the walk up from a key stops at the
	// first directory keep reports (a key ending in "/"), and never
	// reaches the root. It returns how many directories it removed.
	RemoveEmptyDirs(ctx context.Context, keys []string, keep func(dir string) bool) (removed int, err error)
}

// Volumer is implemented by stores whose Location (a path) does not say
// which storage it is: a filesystem root names a mount point, and another
// volume can be mounted there.
type Volumer interface {
	// Volume identifies the storage behind Location (device and inode of
	// a filesystem root).
	Volume() (string, error)
}

// Streamer is implemented by stores that can stream an object of any size
// (audit --verify hashes whole blobs).
type Streamer interface {
	Open(ctx context.Context, key string) (io.ReadCloser, error)
}

// DirLister is implemented by stores that can list one level below a
// prefix in one request (an S3 delimiter listing): the walker uses it to
// split a large tree into parallel listings.
type DirLister interface {
	// ListDir calls fn for each direct child of prefix (which ends in
	// "/"): dir is true for a child with keys below it (its key then ends
	// in "/"), false for an object, whose info is complete.
	ListDir(ctx context.Context, prefix string, fn func(child ObjectInfo, dir bool) error) error
}

// AfterWalker is implemented by stores that can start a listing after a
// given key (S3's start-after): the walker uses it to split a listing that
// turns out large into parallel ones without listing a key twice.
type AfterWalker interface {
	// WalkAfter is Walk over the keys under prefix that sort after
	// startAfter (all of them when it is empty), in byte order as Walk: a
	// listing split at a key relies on both.
	WalkAfter(ctx context.Context, prefix, startAfter string, fn func(ObjectInfo) error) error
}

// Creator is implemented by stores that can write a key only if it is
// absent, in one atomic request (S3 and Swift `If-None-Match: *`, a hard
// link on a filesystem). The lock is taken with it, so two runs that
// start at the same instant cannot both write a free lock.
type Creator interface {
	// Create writes key unless it exists, when it fails with ErrExists and
	// leaves it unchanged. A store that ignores the condition (an old S3
	// clone) overwrites instead: callers read back what they created.
	Create(ctx context.Context, key string, data []byte) error
}

// Unwrapper is implemented by wrappers.
type Unwrapper interface {
	Unwrap() Driver
}

// ReadAtMost reads r to its end if it holds at most limit bytes, and fails
// with ErrTooLarge otherwise: a driver's Get. size is the length the
// store gave (-1 if none); within limit, the bytes go into a buffer of that
// size (io.ReadAll's doubling allocated about twice what a first gc read),
// and a body longer than it said is still read and caught (the limit
// reads one byte more than allowed).
func ReadAtMost(r io.Reader, size, limit int64) ([]byte, error) {
	limit = max(limit, 0)
	lr := io.LimitReader(r, min(limit, math.MaxInt64-1)+1)
	var buf bytes.Buffer
	if size >= 0 && size <= limit {
		// ReadFrom grows the buffer unless MinRead bytes are free: with
		// them, a body of the size said fits in this one allocation.
		buf.Grow(int(size) + bytes.MinRead)
	}
	if _, err := buf.ReadFrom(lr); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: over %d bytes", ErrTooLarge, limit)
	}
	return b, nil
}
