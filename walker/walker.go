// Package walker lists a registry's storage concurrently and streams what
// it finds as typed entries.
//
// Object stores are listed flat (no per-directory listing): blobs/ in
// shards by the first hex digit, repositories/ in one pass. Link files are
// only downloaded when the listing's ETag cannot prove their content, and
// tag current links are always read. A listing error fails the whole walk:
// a shorter result is never returned as if it were complete.
//
// It owns the entries and the inventory they add up to, and says what an
// entry shows wrong (Entry.Finding: a corrupt link, a key that fits no
// layout). It may not decide what is live or garbage (mark and sweep do),
// nor write to storage.
package walker

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/regsweep/regsweep/blobindex"
	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/storage"
)

// Kind is the type of an entry.
type Kind int

const (
	KindBlob            Kind = iota // blobs/.../data
	KindRevisionLink                // _manifests/revisions/.../link
	KindSignatureLink               // schema1 signature link under a revision
	KindTagCurrentLink              // _manifests/tags/<t>/current/link
	KindTagIndexLink                // _manifests/tags/<t>/index/.../link
	KindLayerLink                   // _layers/.../link
	KindUploadFile                  // any file under _uploads/<id>/
	KindMultipartUpload             // an incomplete S3 multipart upload
	KindSegment                     // a Swift large-object segment
	KindUnknown                     // under docker/registry/v2/ but fits no layout

	// kindBlobsListed marks the end of the blob entries inside Walk; no
	// entry of this kind reaches its caller.
	kindBlobsListed Kind = -1
)

var kindNames = [...]string{"blob", "revision_link", "signature_link", "tag_current_link", "tag_index_link",
	"layer_link", "upload_file", "multipart_upload", "segment", "unknown_key"}

func (k Kind) String() string { return kindNames[k] }

// Entry is one thing found in storage.
type Entry struct {
	Kind Kind
	Key  string // storage key (a segment name for KindSegment)
	Size int64
	// ModTime is the storage mtime (the initiation time for a multipart
	// upload).
	ModTime time.Time

	Repo string
	Tag  string
	// Digest is the digest the key names: the blob's, the link's
	// (from its path), or for a tag current link the digest it points to.
	Digest digest.Digest
	// Revision is the manifest a schema1 signature link belongs to.
	Revision digest.Digest
	// Corrupt is set on a link whose content is empty, not a digest, or a
	// digest other than the one its path names. CorruptReason says which.
	Corrupt       bool
	CorruptReason string

	// InFlightFor is set on a KindUnknown key that is a storage driver's
	// temporary file (layout.InFlightTemp): the key it becomes.
	InFlightFor string
	// Vanished is set on a link that was listed but was gone when read:
	// the registry deleted it (a tag or manifest delete) during the walk.
	// Its repository is changing under the walk; the entry says so and
	// carries nothing else.
	Vanished bool

	UploadID string
	// StartedAt is read from an upload's startedat file.
	StartedAt time.Time
	// SegmentPrefix is the segment prefix of a Swift DLO blob.
	SegmentPrefix string
	// MultipartID is the S3 upload ID of a KindMultipartUpload.
	MultipartID string
}

// Options tunes a walk.
type Options struct {
	// Concurrency is the number of listings and reads in flight.
	Concurrency int
	// TrustETags lets link files whose listing ETag equals md5(content in
	// path) go unread. Off when the store's ETags are not content MD5s
	// (SSE-KMS).
	TrustETags bool
	// MaxLinkSize bounds a link read; distribution's links are 71 bytes
	// for sha256.
	MaxLinkSize int64
	// RepositoriesOnly lists just the repository tree (links, tags and
	// uploads): the re-list before deleting.
	RepositoriesOnly bool
	// Blobs, with RepositoriesOnly, is the blob index of an earlier walk
	// of the same storage: Collect keeps links by its IDs, and a mark of
	// this walk can extend that walk's mark (mark.Result.Extend). It is
	// not a listing of the blobs now.
	Blobs *blobindex.Index
	// Parallel lists in parallel shards: blobs/sha256/ by the first hex
	// digit (digests are uniform; on a store that can start a listing
	// after a key, a shard larger than a page splits by the directories
	// below it, see listBlobs), the repository tree by its top-level
	// names (or the names below them, when there are few) when the store
	// lists one level in a request, else by the 36 characters a
	// repository name can start with. Much faster on a large
	// registry, for about one partly empty listing page per shard. gc and
	// audit set it (their requests are dominated by manifest reads);
	// inventory does not unless asked, for the fewest requests. Unsharded,
	// blobs/ and repositories/ are one pass each and every key under them
	// is listed; sharded, keys under blobs/ other than sha256/[0-9a-f],
	// sha384/ and sha512/, and repository names not starting with
	// [a-z0-9], are not (no valid key can be there).
	Parallel bool
	// OnBlobsListed, when set, is called from the goroutine that calls fn
	// once every blob entry has been handed to fn and before any
	// repository entry is: blobs are listed first. Collect uses it to keep
	// links as blob positions. A walk of the repositories only never calls it.
	OnBlobsListed func()
	// ProbeUploadsBefore, when set, asks the store for the multipart
	// upload of every upload that started before it, by exact key (two
	// listing requests each on MinIO, which after a restart answers
	// nothing else). gc sets it to its upload grace cutoff; an inventory
	// needs no probe.
	ProbeUploadsBefore time.Time
}

// DefaultOptions suit a registry on any backend.
func DefaultOptions() Options {
	return Options{Concurrency: 16, TrustETags: true, MaxLinkSize: 1024}
}

// ErrWalk wraps every error that ends a walk early.
var ErrWalk = errors.New("storage walk failed")

// Walk lists the registry and calls fn once per entry, from the calling
// goroutine only.
func Walk(ctx context.Context, d storage.Driver, opts Options, fn func(Entry) error) error {
	if opts.Concurrency < 1 {
		opts.Concurrency = 1
	}
	if opts.MaxLinkSize <= 0 {
		opts.MaxLinkSize = 1024
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// A short queue: entries waiting here hold their keys and digests,
	// and 4096 of them cost 3 MiB of peak RSS for no speed.
	out := make(chan Entry, 256)
	g, gctx := errgroup.WithContext(ctx)
	// Reads (links, DLO heads) go through their own bounded pool so a
	// listing never waits behind a read it produced.
	reads, rctx := errgroup.WithContext(gctx)
	reads.SetLimit(opts.Concurrency)
	w := &walk{d: d, opts: opts, out: out, reads: reads, rctx: rctx, uploadData: map[string]time.Time{}, multipartSeen: map[string]bool{}, tagIndex: map[string][]digest.Digest{}}
	w.largeObjects, _ = storage.LargeObjectsOf(d)
	if opts.Parallel {
		// A split takes the shard's later children from a delimiter
		// listing, so it needs both.
		if w.dirs, _ = storage.DirListerOf(d); w.dirs != nil {
			w.after, _ = storage.AfterWalkerOf(d)
		}
	}

	mp, hasMultipart := storage.MultipartOf(d)
	hasMultipart = hasMultipart && !opts.RepositoriesOnly
	// Listings are started from their own goroutine: starting one waits
	// for a free slot, and slots free only while this goroutine drains out.
	g.Go(func() error {
		listings, lctx := errgroup.WithContext(gctx)
		listings.SetLimit(opts.Concurrency)
		repoShards, err := w.repositoryShards(gctx, opts.Parallel)
		if err != nil {
			return err
		}
		if hasMultipart {
			listings.Go(func() error { return w.multipart(lctx, mp, layout.Root) })
		}
		if w.largeObjects != nil && !opts.RepositoriesOnly {
			listings.Go(func() error { return w.segments(lctx) })
		}
		// Blobs first, then the repositories, each phase in parallel
		// shards: links that arrive after the blobs can be kept as blob
		// positions.
		if shards := blobShards(opts.RepositoriesOnly, opts.Parallel); len(shards) > 0 {
			var blobs sync.WaitGroup
			// A listing that splits hands its new shards to spawn. They
			// are started from goroutines of their own: the listing holds
			// a slot, and starting one waits for a free slot.
			spawn := func(prefix string) {
				blobs.Add(1)
				go listings.Go(func() error {
					defer blobs.Done()
					return w.listAfter(lctx, prefix, "")
				})
			}
			for _, shard := range shards {
				blobs.Add(1)
				listings.Go(func() error {
					defer blobs.Done()
					return w.listBlobs(lctx, shard, spawn)
				})
			}
			blobs.Wait()
			w.blobReads.Wait() // Swift large-object stats emit their blobs
			if lctx.Err() == nil {
				if err := w.emit(lctx, Entry{Kind: kindBlobsListed}); err != nil {
					listings.Wait()
					return err
				}
			}
		}
		if lctx.Err() == nil { // a failed blob listing has ended the walk
			for _, shard := range repoShards {
				listings.Go(func() error { return w.list(lctx, shard) })
			}
			if !opts.RepositoriesOnly {
				listings.Go(func() error { return w.outsideLayout(lctx) })
			}
		}
		err = listings.Wait()
		if err == nil {
			err = w.resolveCurrent(gctx)
		}
		if err == nil && hasMultipart && !opts.ProbeUploadsBefore.IsZero() {
			err = w.multipartByKey(gctx, mp, opts.ProbeUploadsBefore)
		}
		// A failed read cancels the read pool, which then fails the
		// listing that queued the next read: the read's error is the cause.
		if rerr := reads.Wait(); rerr != nil {
			return rerr
		}
		return err
	})
	var walkErr error
	go func() {
		walkErr = g.Wait()
		close(out)
	}()
	var fnErr error
	for e := range out {
		if fnErr != nil {
			continue
		}
		if e.Kind == kindBlobsListed {
			if opts.OnBlobsListed != nil {
				opts.OnBlobsListed()
			}
			continue
		}
		if fnErr = fn(e); fnErr != nil {
			cancel()
		}
	}
	if fnErr != nil {
		return fnErr
	}
	if walkErr != nil {
		if ctx.Err() != nil && errors.Is(walkErr, context.Canceled) {
			return ctx.Err()
		}
		return fmt.Errorf("%w: %w", ErrWalk, walkErr)
	}
	// Cancelled after the listings ended: the entries handed out since were
	// not all wanted, so this is no complete walk either.
	return ctx.Err()
}

// blobShards splits blobs/ into prefixes listed in parallel (see
// Options.Parallel).
func blobShards(repositoriesOnly, parallel bool) []string {
	if repositoriesOnly {
		return nil
	}
	if !parallel {
		return []string{layout.BlobsPrefix}
	}
	var s []string
	for _, h := range "0123456789abcdef" {
		s = append(s, layout.BlobsPrefix+"sha256/"+string(h))
	}
	return append(s, layout.BlobsPrefix+"sha384/", layout.BlobsPrefix+"sha512/")
}

// maxRepositoryShards bounds the parallel listings of the repository tree:
// every shard ends in a partly empty page.
const maxRepositoryShards = 1024

// repositoryShards splits repositories/. Unsharded it is one pass, the
// fewest requests. Sharded, on a store that lists one level in a request,
// the shards are the directories one level down, and, while there are
// fewer of them than listings may run at once, one more level down (a
// registry whose repositories sit under a handful of team names would
// otherwise list each team in one long sequence of pages); objects met on
// the way are classified from those listings. Elsewhere, or with too many
// top-level names, the shards are the 36 first characters a repository
// name can start with.
func (w *walk) repositoryShards(ctx context.Context, shard bool) ([]string, error) {
	if !shard {
		return []string{layout.RepositoriesPrefix}, nil
	}
	byChar := func() []string {
		var s []string
		for _, c := range "0123456789abcdefghijklmnopqrstuvwxyz" {
			s = append(s, layout.RepositoriesPrefix+string(c))
		}
		return s
	}
	dl := w.dirs
	if dl == nil {
		return byChar(), nil
	}
	dirs, objects, err := listDirs(ctx, dl, []string{layout.RepositoriesPrefix}, w.opts.Concurrency)
	if err != nil {
		return nil, err
	}
	if len(dirs) > maxRepositoryShards {
		return byChar(), nil
	}
	for depth := 1; depth < maxShardDepth && len(dirs) > 0 && len(dirs) < w.opts.Concurrency; depth++ {
		below, more, err := listDirs(ctx, dl, dirs, w.opts.Concurrency)
		if err != nil {
			return nil, err
		}
		if len(below) > maxRepositoryShards {
			break
		}
		dirs, objects = below, append(objects, more...)
	}
	for _, oi := range objects {
		if err := w.classify(ctx, oi); err != nil {
			return nil, err
		}
	}
	return dirs, nil
}

// maxShardDepth bounds how far below repositories/ the shards go: each
// level costs a listing request per directory.
const maxShardDepth = 3

// listDirs lists one level below each prefix, in parallel, and returns the
// directories found in order and the objects.
func listDirs(ctx context.Context, dl storage.DirLister, prefixes []string, concurrency int) (dirs []string, objects []storage.ObjectInfo, err error) {
	found := make([][]string, len(prefixes))
	objs := make([][]storage.ObjectInfo, len(prefixes))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(concurrency)
	for i, p := range prefixes {
		g.Go(func() error {
			return dl.ListDir(gctx, p, func(oi storage.ObjectInfo, dir bool) error {
				if dir {
					found[i] = append(found[i], oi.Key)
				} else {
					objs[i] = append(objs[i], oi)
				}
				return nil
			})
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	for i := range prefixes {
		dirs = append(dirs, found[i]...)
		objects = append(objects, objs[i]...)
	}
	return dirs, objects, nil
}

type walk struct {
	mu sync.Mutex
	// uploadData are the data keys of uploads seen in the listing with
	// the earliest mtime seen, and multipartSeen the multipart uploads
	// already reported.
	uploadData    map[string]time.Time
	multipartSeen map[string]bool
	// tagIndex holds each tag's index entries, and pendingCurrent the
	// current links whose ETag may name one of them.
	tagIndex       map[string][]digest.Digest
	pendingCurrent []pendingCurrent

	d            storage.Driver
	opts         Options
	out          chan<- Entry
	reads        *errgroup.Group
	rctx         context.Context
	largeObjects storage.LargeObjects
	blobReads    sync.WaitGroup      // large-object stats in flight
	dirs         storage.DirLister   // nil unless sharded, on a store that lists one level
	after        storage.AfterWalker // nil: blob shards do not split
	// children of blobs/sha256/, listed once when a shard first splits
	childrenOnce sync.Once
	children     []storage.ObjectInfo
	childrenErr  error
}

func (w *walk) emit(ctx context.Context, e Entry) error {
	select {
	case w.out <- e:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// splitAfter is how many keys a blob shard lists before it splits: one
// listing page, so that a shard of fewer keys stays one request.
const splitAfter = 1000

var errSplit = errors.New("split the listing")

// listBlobs lists a blob shard. On a store that can start a listing after
// a key, a one-digit sha256 shard (blobs/sha256/<hex>) that lists a page's
// worth of keys splits at the key it reached: the rest of that key's
// directory (blobs/sha256/<xx>/) goes on here, after the key, and each
// later child of blobs/sha256/ under the shard, as one delimiter listing
// found them, is a listing of its own (a directory, started through spawn)
// or classified from that listing (an object). So no key is listed twice
// or missed, whatever its name, and a shard of a small store is still one
// request.
func (w *walk) listBlobs(ctx context.Context, shard string, spawn func(prefix string)) error {
	if w.after == nil || len(shard) != len(layout.BlobsPrefix+"sha256/")+1 || !strings.HasPrefix(shard, layout.BlobsPrefix+"sha256/") {
		return w.list(ctx, shard)
	}
	n := 0
	split := ""
	err := w.after.WalkAfter(ctx, shard, "", func(oi storage.ObjectInfo) error {
		if err := w.classify(ctx, oi); err != nil {
			return err
		}
		if n++; n == splitAfter {
			split = oi.Key
			return errSplit
		}
		return nil
	})
	switch {
	case split == "":
		return err
	case !errors.Is(err, errSplit):
		// The listing stopped at the split, yet says something else: it
		// cannot be taken for complete.
		return fmt.Errorf("listing %s: stopped to split at %s, then: %w", shard, split, err)
	}
	children, err := w.sha256Children(ctx)
	if err != nil {
		return err
	}
	rest := ""
	if i := strings.IndexByte(split[len(shard):], '/'); i >= 0 {
		rest = split[:len(shard)+i+1] // the directory the split key is in
	}
	for _, c := range children {
		if !strings.HasPrefix(c.Key, shard) || c.Key <= split || c.Key == rest {
			continue // listed already, or what rest goes on with
		}
		if strings.HasSuffix(c.Key, "/") {
			spawn(c.Key)
		} else if err := w.classify(ctx, c); err != nil {
			return err
		}
	}
	if rest == "" {
		return nil
	}
	return w.listAfter(ctx, rest, split)
}

// sha256Children lists blobs/sha256/ one level down, once, for the shards
// that split: a directory's key ends in "/", an object's info is complete.
func (w *walk) sha256Children(ctx context.Context) ([]storage.ObjectInfo, error) {
	w.childrenOnce.Do(func() {
		w.childrenErr = w.dirs.ListDir(ctx, layout.BlobsPrefix+"sha256/", func(oi storage.ObjectInfo, _ bool) error {
			w.children = append(w.children, oi)
			return nil
		})
	})
	return w.children, w.childrenErr
}

// outsideLayout lists everything under the registry root but blobs/ and
// repositories/: distribution writes nothing else there, so every key
// found is reported (KindUnknown), never skipped. On a store that lists
// one level in a request, only the other top-level names are listed; a
// store that cannot lists the whole root and passes over the two trees
// listed already.
func (w *walk) outsideLayout(ctx context.Context) error {
	listed := func(key string) bool {
		return strings.HasPrefix(key, layout.BlobsPrefix) || strings.HasPrefix(key, layout.RepositoriesPrefix)
	}
	dl, ok := storage.DirListerOf(w.d)
	if !ok {
		return w.d.Walk(ctx, layout.Root, func(oi storage.ObjectInfo) error {
			if listed(oi.Key) {
				return nil
			}
			return w.classify(ctx, oi)
		})
	}
	var dirs []string
	err := dl.ListDir(ctx, layout.Root, func(oi storage.ObjectInfo, dir bool) error {
		switch {
		case listed(oi.Key):
		case dir:
			dirs = append(dirs, oi.Key)
		default:
			return w.classify(ctx, oi)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, dir := range dirs {
		if err := w.list(ctx, dir); err != nil {
			return err
		}
	}
	return nil
}

func (w *walk) list(ctx context.Context, prefix string) error {
	return w.d.Walk(ctx, prefix, func(oi storage.ObjectInfo) error {
		return w.classify(ctx, oi)
	})
}

// listAfter is list from the first key after startAfter.
func (w *walk) listAfter(ctx context.Context, prefix, startAfter string) error {
	return w.after.WalkAfter(ctx, prefix, startAfter, func(oi storage.ObjectInfo) error {
		return w.classify(ctx, oi)
	})
}

func (w *walk) classify(ctx context.Context, oi storage.ObjectInfo) error {
	e := Entry{Key: oi.Key, Size: oi.Size, ModTime: oi.ModTime}
	spec, err := layout.Parse(oi.Key)
	if err != nil {
		e.Kind = KindUnknown
		e.InFlightFor, _ = layout.InFlightTemp(oi.Key)
		return w.emit(ctx, e)
	}
	e.Repo = layout.Repo(spec)
	switch s := spec.(type) {
	case layout.BlobData:
		e.Kind, e.Digest = KindBlob, s.Digest
		if w.largeObjects != nil {
			return w.readLargeObject(e)
		}
		return w.emit(ctx, e)
	case layout.RevisionLink:
		e.Kind, e.Digest = KindRevisionLink, s.Digest
		return w.verifyLink(ctx, e, oi.ETag)
	case layout.SignatureLink:
		e.Kind, e.Digest, e.Revision = KindSignatureLink, s.Signature, s.Digest
		return w.verifyLink(ctx, e, oi.ETag)
	case layout.TagIndexLink:
		e.Kind, e.Tag, e.Digest = KindTagIndexLink, s.Tag, s.Digest
		w.noteTagIndex(e.Repo, e.Tag, e.Digest)
		return w.verifyLink(ctx, e, oi.ETag)
	case layout.LayerLink:
		e.Kind, e.Digest = KindLayerLink, s.Digest
		return w.verifyLink(ctx, e, oi.ETag)
	case layout.TagCurrentLink:
		e.Kind, e.Tag = KindTagCurrentLink, s.Tag
		if w.opts.TrustETags && oi.ETag != "" {
			// Resolved after the listing, when the tag's index is known: a
			// current link holds one of its index entries, and its ETag
			// says which.
			w.mu.Lock()
			w.pendingCurrent = append(w.pendingCurrent, pendingCurrent{e, oi.ETag})
			w.mu.Unlock()
			return nil
		}
		return w.readLater(e, w.readCurrent)
	case layout.UploadData:
		e.Kind, e.UploadID = KindUploadFile, s.ID
	case layout.UploadHashState:
		e.Kind, e.UploadID = KindUploadFile, s.ID
		w.noteUpload(s.Repo, s.ID, oi.ModTime)
	case layout.UploadStartedAt:
		e.Kind, e.UploadID = KindUploadFile, s.ID
		w.noteUpload(s.Repo, s.ID, oi.ModTime)
		return w.readLater(e, w.readStartedAt)
	}
	return w.emit(ctx, e)
}

// readLater has read(ctx, e) run in the read pool. The reads' closures
// live in their own functions: an entry a closure captures is moved to the
// heap where it is declared, and classify's entries would all be.
func (w *walk) readLater(e Entry, read func(context.Context, Entry) error) error {
	return w.read(func(ctx context.Context) error { return read(ctx, e) })
}

// readLargeObject has a blob's large-object manifest stated in the read
// pool; the blob is emitted from there.
func (w *walk) readLargeObject(e Entry) error {
	w.blobReads.Add(1)
	err := w.read(func(ctx context.Context) error {
		defer w.blobReads.Done()
		return w.statLargeObject(ctx, e)
	})
	if err != nil { // not started
		w.blobReads.Done()
	}
	return err
}

// read runs a GET or HEAD in the read pool.
func (w *walk) read(fn func(ctx context.Context) error) error {
	if err := w.rctx.Err(); err != nil {
		return err
	}
	w.reads.Go(func() error { return fn(w.rctx) })
	return nil
}

// LinkETag is the ETag a store gives a link file holding d written in one
// PUT: the MD5 of its content.
func LinkETag(d digest.Digest) string {
	sum := md5.Sum([]byte(d.String()))
	return hex.EncodeToString(sum[:])
}

// linkETagMatches is strings.EqualFold(etag, LinkETag(d)) without the
// strings: it runs for every link listed. (hex.Decode takes either case.)
func linkETagMatches(etag string, d digest.Digest) bool {
	var got [md5.Size]byte
	if len(etag) != 2*md5.Size {
		return false
	}
	if _, err := hex.Decode(got[:], []byte(etag)); err != nil {
		return false
	}
	var buf [7 + 128]byte // "sha512:" and 128 hex digits
	if len(d) > len(buf) {
		return false
	}
	return md5.Sum(append(buf[:0], d...)) == got
}

func (w *walk) verifyLink(ctx context.Context, e Entry, etag string) error {
	if w.opts.TrustETags && etag != "" && linkETagMatches(etag, e.Digest) {
		return w.emit(ctx, e)
	}
	return w.readLater(e, w.readAndVerifyLink)
}

// readAndVerifyLink reads a link whose ETag did not prove its content.
func (w *walk) readAndVerifyLink(ctx context.Context, e Entry) error {
	target, reason, found, err := w.readLink(ctx, e.Key)
	if err != nil {
		return err
	}
	if !found {
		return w.emit(ctx, vanished(e))
	}
	if reason == "" && target != e.Digest {
		reason = fmt.Sprintf("link holds %s but its path names %s", target, e.Digest)
	}
	if reason != "" {
		e.Corrupt, e.CorruptReason = true, reason
	}
	return w.emit(ctx, e)
}

func (w *walk) readCurrent(ctx context.Context, e Entry) error {
	target, reason, found, err := w.readLink(ctx, e.Key)
	if err != nil {
		return err
	}
	if !found {
		return w.emit(ctx, vanished(e))
	}
	e.Digest = target
	if reason != "" {
		e.Corrupt, e.CorruptReason = true, reason
	}
	return w.emit(ctx, e)
}

// ErrVanished means a listed blob was not found when read: only a
// collector deletes blobs, so storage changed under the walk in a way it
// cannot account for, or the store lags. The walk is not a snapshot to
// decide anything from.
var ErrVanished = errors.New("listed but not found when read (storage changed during the walk, or the store lags): re-run")

// vanished is e as a link gone since it was listed.
func vanished(e Entry) Entry {
	return Entry{Kind: e.Kind, Key: e.Key, Repo: e.Repo, Tag: e.Tag, ModTime: e.ModTime, Vanished: true}
}

// readLink reads a link file. A link gone since it was listed is not
// found: the registry deletes links (a tag or a manifest delete), and the
// caller marks its repository as changing. Any other read failure is an
// error of the walk, because an unread link could be the only thing
// keeping a blob.
func (w *walk) readLink(ctx context.Context, key string) (target digest.Digest, corruptReason string, found bool, err error) {
	b, err := w.d.Get(ctx, key, w.opts.MaxLinkSize)
	switch {
	case storage.IsNotFound(err):
		return "", "", false, nil
	case errors.Is(err, storage.ErrTooLarge):
		return "", fmt.Sprintf("link is larger than %d bytes", w.opts.MaxLinkSize), true, nil
	case err != nil:
		return "", "", false, err
	}
	target, reason := ParseLink(b)
	return target, reason, true, nil
}

// ParseLink parses a link file's content. reason is non-empty when the
// content is not exactly one valid digest.
func ParseLink(b []byte) (digest.Digest, string) {
	if len(b) == 0 {
		return "", "link is empty"
	}
	d, err := digest.Parse(string(b))
	if err != nil {
		return "", fmt.Sprintf("link content is not a digest (%q)", truncate(b, 80))
	}
	return d, ""
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

func (w *walk) readStartedAt(ctx context.Context, e Entry) error {
	b, err := w.d.Get(ctx, e.Key, 256)
	switch {
	case storage.IsNotFound(err):
		// The upload finished or was cancelled since it was listed: the
		// registry removes uploads as they complete. What else of it was
		// listed is judged by its own mtimes, as an upload without a
		// start time is.
		return nil
	case err == nil:
		if t, perr := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b))); perr == nil {
			e.StartedAt = t
		}
	case !errors.Is(err, storage.ErrTooLarge):
		return err
	}
	// An unreadable start time leaves StartedAt zero: callers fall back to
	// the storage mtime.
	return w.emit(ctx, e)
}

func (w *walk) statLargeObject(ctx context.Context, e Entry) error {
	info, prefix, err := w.largeObjects.LargeObject(ctx, e.Key)
	switch {
	case storage.IsNotFound(err):
		return fmt.Errorf("%s: %w", e.Key, ErrVanished)
	case err != nil:
		return err
	}
	e.Size, e.SegmentPrefix = info.Size, prefix
	return w.emit(ctx, e)
}

type pendingCurrent struct {
	e    Entry
	etag string
}

func (w *walk) noteTagIndex(repo, tag string, d digest.Digest) {
	w.mu.Lock()
	w.tagIndex[repo+"\x00"+tag] = append(w.tagIndex[repo+"\x00"+tag], d)
	w.mu.Unlock()
}

// resolveCurrent settles the current links held back during the listing:
// one whose ETag is the MD5 of exactly one of its tag's index entries holds
// that digest (a link is written in one PUT, so its ETag is its content's
// MD5); any other is read.
func (w *walk) resolveCurrent(ctx context.Context) error {
	w.mu.Lock()
	pending := w.pendingCurrent
	w.pendingCurrent = nil
	w.mu.Unlock()
	for _, pc := range pending {
		var match digest.Digest
		matches := 0
		for _, d := range w.tagIndex[pc.e.Repo+"\x00"+pc.e.Tag] {
			if linkETagMatches(pc.etag, d) {
				match, matches = d, matches+1
			}
		}
		if matches == 1 {
			e := pc.e
			e.Digest = match
			if err := w.emit(ctx, e); err != nil {
				return err
			}
			continue
		}
		e := pc.e
		if err := w.read(func(ctx context.Context) error { return w.readCurrent(ctx, e) }); err != nil {
			return err
		}
	}
	return nil
}

// noteUpload records an upload seen in the listing: on S3 its body is an
// incomplete multipart upload at its data key.
func (w *walk) noteUpload(repo, id string, mtime time.Time) {
	if key, err := layout.Path(layout.UploadData{Repo: repo, ID: id}); err == nil {
		w.mu.Lock()
		if seen, ok := w.uploadData[key]; !ok || mtime.Before(seen) {
			w.uploadData[key] = mtime
		}
		w.mu.Unlock()
	}
}

// multipartByKey asks for the multipart uploads of every upload the
// listing showed that the prefix listing did not report: some stores
// (MinIO after a restart) answer only an exact key.
func (w *walk) multipartByKey(ctx context.Context, mp storage.MultipartUploads, before time.Time) error {
	w.mu.Lock()
	var keys []string
	for k, started := range w.uploadData {
		if !w.multipartSeen[k] && started.Before(before) {
			keys = append(keys, k)
		}
	}
	w.mu.Unlock()
	sort.Strings(keys)
	for _, k := range keys {
		if err := w.multipart(ctx, mp, k); err != nil {
			return err
		}
	}
	return nil
}

func (w *walk) multipart(ctx context.Context, mp storage.MultipartUploads, prefix string) error {
	return mp.WalkMultipartUploads(ctx, prefix, func(u storage.MultipartUpload) error {
		w.mu.Lock()
		dup := w.multipartSeen[u.Key+"\x00"+u.UploadID]
		w.multipartSeen[u.Key+"\x00"+u.UploadID] = true
		w.multipartSeen[u.Key] = true
		w.mu.Unlock()
		if dup {
			return nil
		}
		e := Entry{Kind: KindMultipartUpload, Key: u.Key, ModTime: u.Initiated, MultipartID: u.UploadID}
		if spec, err := layout.Parse(u.Key); err == nil {
			e.Repo = layout.Repo(spec)
			if s, ok := spec.(layout.UploadData); ok {
				e.UploadID = s.ID
			}
		}
		return w.emit(ctx, e)
	})
}

func (w *walk) segments(ctx context.Context) error {
	return w.largeObjects.WalkSegments(ctx, func(oi storage.ObjectInfo) error {
		return w.emit(ctx, Entry{Kind: KindSegment, Key: oi.Key, Size: oi.Size, ModTime: oi.ModTime})
	})
}
