package walker

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/blobindex"
	"github.com/regsweep/regsweep/finding"
	"github.com/regsweep/regsweep/storage"
)

// Tag is a tag's current link and its index.
type Tag struct {
	Current        digest.Digest // "" when the current link is missing or corrupt
	CurrentModTime int64
	CurrentCorrupt string
	HasCurrent     bool
	Index          *blobindex.Links
}

// Upload is one _uploads/<id> directory.
type Upload struct {
	ID        string
	StartedAt time.Time // zero when startedat is missing or unreadable
	Files     []storage.ObjectInfo
}

// Repository is everything stored under one repository name.
type Repository struct {
	Name       string
	Revisions  *blobindex.Links
	Signatures map[digest.Digest][]digest.Digest // revision -> schema1 signature links
	Tags       map[string]*Tag
	Layers     *blobindex.Links
	Uploads    map[string]*Upload
}

// Inventory is a whole walk, aggregated.
type Inventory struct {
	Blobs     *blobindex.Index
	BlobBytes int64
	// BlobSegments maps a Swift DLO blob to its segment prefix (empty
	// elsewhere).
	BlobSegments *blobindex.Map[string]
	Repositories map[string]*Repository
	// Corrupt holds links whose content is not the digest they should hold.
	Corrupt []Entry
	// Unknown holds keys under docker/registry/v2/ that fit no layout.
	Unknown []Entry
	// Multipart holds incomplete S3 multipart uploads.
	Multipart []Entry
	// Segments holds Swift segments grouped by their prefix.
	Segments map[string][]storage.ObjectInfo
	// Keys counts every key listed, for request-count comparisons.
	Keys int64
	// BlobsWalked says the walk listed the blobs: Blobs is what storage
	// held then. A walk of the repository tree only has none, or an
	// earlier walk's (Options.Blobs).
	BlobsWalked bool
	// Changing names the repositories the registry changed under the walk
	// (a link listed, then gone when read), with the first such key: gc
	// plans nothing in them this run.
	Changing map[string]string

	links *blobindex.LinkIndex // the blob index as the repositories' link maps use it
}

// NewInventory returns an empty inventory.
func NewInventory() *Inventory {
	inv := &Inventory{Blobs: blobindex.NewIndex(), BlobSegments: blobindex.NewMap[string](), Repositories: make(map[string]*Repository), Segments: make(map[string][]storage.ObjectInfo), Changing: map[string]string{}}
	inv.links = blobindex.NewLinkIndex(inv.Blobs)
	return inv
}

// BlobsListed says every blob is in: the blob index is compacted, and
// links added from now on to a listed blob are kept as its ID
// (blobindex.Links). No blob may be added after it.
func (inv *Inventory) BlobsListed() { inv.links.Freeze() }

// NewBlobSet returns an empty set over the inventory's blobs (see
// blobindex.NewSet).
func (inv *Inventory) NewBlobSet(dense bool) *blobindex.Set {
	return blobindex.NewSet(inv.Blobs, dense)
}

// Collect walks d and aggregates the result.
func Collect(ctx context.Context, d storage.Driver, opts Options) (*Inventory, error) {
	return CollectObserving(ctx, d, opts, nil)
}

// CollectObserving is Collect that also hands each entry, once added, to
// observe (when not nil) with the inventory as it stands, from the one
// goroutine that adds entries: gc starts reading manifests while the walk
// goes on. observe must not block for long; the listings wait for it.
func CollectObserving(ctx context.Context, d storage.Driver, opts Options, observe func(*Inventory, Entry)) (*Inventory, error) {
	inv := NewInventory()
	switch {
	case !opts.RepositoriesOnly:
		inv.BlobsWalked = true
	case opts.Blobs != nil:
		inv.Blobs = opts.Blobs
		inv.links = blobindex.NewLinkIndex(inv.Blobs)
		inv.links.Freeze()
	}
	opts.OnBlobsListed = inv.BlobsListed
	err := Walk(ctx, d, opts, func(e Entry) error {
		if e.Kind == KindBlob && inv.links.Frozen() {
			return fmt.Errorf("%w: blob %s reported after the blob listing ended", ErrWalk, e.Key)
		}
		inv.Add(e)
		if observe != nil {
			observe(inv, e)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	inv.Compact()
	return inv, nil
}

// Compact packs the inventory's maps once it is complete.
func (inv *Inventory) Compact() {
	inv.Blobs.Compact()
	inv.BlobSegments.Compact()
	for _, r := range inv.Repositories {
		r.Revisions.Compact()
		r.Layers.Compact()
		for _, t := range r.Tags {
			t.Index.Compact()
		}
	}
}

// Finding is the problem the entry shows, if it shows one: a corrupt
// link, or a key that fits no layout (a storage driver's temporary file
// says so: a write in flight, which gc ignores). The mark takes the
// corrupt links among its problems: it keeps what they may hide.
func (e Entry) Finding() (finding.Finding, bool) {
	switch {
	case e.Kind == KindUnknown && e.InFlightFor != "":
		return finding.Finding{Kind: finding.UnknownKey, Key: e.Key, Size: e.Size, Explanation: fmt.Sprintf(
			"a storage driver's temporary file for %s: a write in flight, or one a crash cut short (gc ignores it)", e.InFlightFor)}, true
	case e.Kind == KindUnknown:
		return finding.Finding{Kind: finding.UnknownKey, Key: e.Key, Size: e.Size, Explanation: "key under docker/registry/v2/ that fits no registry layout"}, true
	case e.Corrupt:
		return finding.Finding{Kind: finding.CorruptLink, Repo: e.Repo, Digest: e.Digest, Key: e.Key,
			Explanation: fmt.Sprintf("corrupt %s: %s", e.Kind, e.CorruptReason)}, true
	}
	return finding.Finding{}, false
}

// UnknownKeys are the findings of the keys that fit no layout.
func (inv *Inventory) UnknownKeys() []finding.Finding {
	out := make([]finding.Finding, 0, len(inv.Unknown))
	for _, e := range inv.Unknown {
		f, _ := e.Finding()
		out = append(out, f)
	}
	return out
}

// Repo returns the repository called name, creating it.
func (inv *Inventory) Repo(name string) *Repository {
	r := inv.Repositories[name]
	if r == nil {
		// Names from a listing are slices of a whole key: a copy keeps
		// the key from staying in memory with them.
		name = strings.Clone(name)
		r = &Repository{Name: name, Revisions: blobindex.NewLinks(inv.links), Signatures: map[digest.Digest][]digest.Digest{},
			Tags: map[string]*Tag{}, Layers: blobindex.NewLinks(inv.links), Uploads: map[string]*Upload{}}
		inv.Repositories[name] = r
	}
	return r
}

func (inv *Inventory) tag(r *Repository, name string) *Tag {
	t := r.Tags[name]
	if t == nil {
		t = &Tag{Index: blobindex.NewLinks(inv.links)}
		r.Tags[strings.Clone(name)] = t // see Repo
	}
	return t
}

// Add records one entry.
func (inv *Inventory) Add(e Entry) {
	if e.Kind != KindMultipartUpload {
		inv.Keys++
	}
	if e.Vanished {
		if _, seen := inv.Changing[e.Repo]; !seen {
			inv.Changing[e.Repo] = e.Key
		}
		inv.Repo(e.Repo)
		return
	}
	link := blobindex.Link{ModTime: e.ModTime.Unix()}
	if e.Corrupt {
		inv.Corrupt = append(inv.Corrupt, e)
	}
	switch e.Kind {
	case KindBlob:
		if inv.links.Frozen() {
			// IDs are in use: a blob now would shift them.
			panic("walker: a blob was added after BlobsListed")
		}
		inv.Blobs.Set(e.Digest, blobindex.Blob{Size: e.Size, ModTime: e.ModTime.Unix()})
		if e.SegmentPrefix != "" {
			inv.BlobSegments.Set(e.Digest, e.SegmentPrefix)
		}
		inv.BlobBytes += e.Size
	case KindRevisionLink:
		inv.Repo(e.Repo).Revisions.Set(e.Digest, link)
	case KindSignatureLink:
		r := inv.Repo(e.Repo)
		r.Signatures[e.Revision] = append(r.Signatures[e.Revision], e.Digest)
	case KindLayerLink:
		inv.Repo(e.Repo).Layers.Set(e.Digest, link)
	case KindTagIndexLink:
		inv.tag(inv.Repo(e.Repo), e.Tag).Index.Set(e.Digest, link)
	case KindTagCurrentLink:
		t := inv.tag(inv.Repo(e.Repo), e.Tag)
		t.HasCurrent, t.CurrentModTime, t.CurrentCorrupt = true, e.ModTime.Unix(), e.CorruptReason
		if !e.Corrupt {
			t.Current = e.Digest
		}
	case KindUploadFile:
		r := inv.Repo(e.Repo)
		u := r.Uploads[e.UploadID]
		if u == nil {
			u = &Upload{ID: e.UploadID}
			r.Uploads[e.UploadID] = u
		}
		if !e.StartedAt.IsZero() {
			u.StartedAt = e.StartedAt
		}
		u.Files = append(u.Files, storage.ObjectInfo{Key: e.Key, Size: e.Size, ModTime: e.ModTime})
	case KindMultipartUpload:
		inv.Multipart = append(inv.Multipart, e)
		if e.Repo != "" {
			inv.Repo(e.Repo)
		}
	case KindSegment:
		prefix := SegmentPrefixOf(e.Key)
		inv.Segments[prefix] = append(inv.Segments[prefix], storage.ObjectInfo{Key: e.Key, Size: e.Size, ModTime: e.ModTime})
	case KindUnknown:
		inv.Unknown = append(inv.Unknown, e)
	}
}

// SegmentPrefixOf is the prefix of a segment name: everything before its
// last "/" (segments are <prefix>/<16-digit number>).
func SegmentPrefixOf(name string) string {
	for i := len(name) - 1; i >= 0; i-- {
		if name[i] == '/' {
			return name[:i]
		}
	}
	return name
}

// RepositoryNames returns the names sorted.
func (inv *Inventory) RepositoryNames() []string {
	names := make([]string, 0, len(inv.Repositories))
	for n := range inv.Repositories {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// SegmentsOf is the segment prefix of a Swift DLO blob, "" for others.
func (inv *Inventory) SegmentsOf(d digest.Digest) string {
	s, _ := inv.BlobSegments.Get(d)
	return s
}
