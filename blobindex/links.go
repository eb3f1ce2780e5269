package blobindex

import (
	"iter"
	"math"
	"slices"

	"github.com/opencontainers/go-digest"
)

// Links holds one repository's links of a kind (revisions, layers) by the
// digest each names. Once every blob is listed (LinkIndex.Freeze), a link
// to a listed blob is stored as the blob's ID and the link's mtime, 8
// bytes where a digest key takes 40: a registry has about one layer link
// per blob, so this is a quarter of a collector's memory. Other links (to
// a blob storage lacks, or added before the blobs were all listed) are
// stored by digest.
//
// It is built by one writer and then Compacted, after which it is safe for
// concurrent readers. Reading an uncompacted map that holds IDs panics, as
// does reading after the index moved its IDs.
type Links struct {
	index   *LinkIndex
	shape   Shape    // the index's, when pos was taken
	pos     []ID     // blob IDs; ascending and distinct once compact
	mtimes  []uint32 // the links' mtimes (unix seconds), by pos
	compact bool
	other   *Map[Link] // nil until needed: most maps never need it
}

// LinkIndex is a blob index as link maps see it: usable for IDs once
// frozen.
type LinkIndex struct {
	blobs  *Index
	frozen bool
}

// NewLinkIndex is blobs for link maps; they keep links by digest until it
// is frozen.
func NewLinkIndex(blobs *Index) *LinkIndex { return &LinkIndex{blobs: blobs} }

// Freeze says every blob is in: blobs is compacted, and links added from
// now on to a listed blob are kept as its ID. No blob may be added after.
func (x *LinkIndex) Freeze() {
	x.blobs.Compact()
	x.frozen = true
}

// Frozen says whether Freeze was called.
func (x *LinkIndex) Frozen() bool { return x.frozen }

// NewLinks returns an empty link map over index.
func NewLinks(index *LinkIndex) *Links {
	return &Links{index: index, compact: true}
}

// Set stores l under d.
func (m *Links) Set(d digest.Digest, l Link) {
	if m.index != nil && m.index.frozen {
		if p, ok := m.index.blobs.ID(d); ok {
			if len(m.pos) == 0 {
				m.shape = m.index.blobs.Shape()
			}
			m.index.blobs.KeepsIDs(m.shape)
			if n := len(m.pos); n > 0 && m.pos[n-1] >= p {
				m.compact = false
			}
			m.pos = append(m.pos, p)
			m.mtimes = append(m.mtimes, clampMTime(l.ModTime))
			if m.other != nil {
				m.other.Delete(d)
			}
			return
		}
	}
	if m.other == nil {
		m.other = NewMap[Link]()
	}
	m.other.Set(d, l)
}

// Compact sorts the positions (a later Set of the same link wins) and
// drops the slack of growing. Call it when the map is built.
func (m *Links) Compact() {
	if m.other != nil {
		m.other.Compact()
	}
	if !m.compact {
		order := make([]int, len(m.pos))
		for i := range order {
			order[i] = i
		}
		slices.SortStableFunc(order, func(a, b int) int { return int(m.pos[a]) - int(m.pos[b]) })
		pos, mtimes := make([]ID, 0, len(m.pos)), make([]uint32, 0, len(m.pos))
		for _, i := range order {
			if n := len(pos); n > 0 && pos[n-1] == m.pos[i] {
				mtimes[n-1] = m.mtimes[i]
				continue
			}
			pos, mtimes = append(pos, m.pos[i]), append(mtimes, m.mtimes[i])
		}
		m.pos, m.mtimes, m.compact = pos, mtimes, true
	}
	if cap(m.pos)-len(m.pos) > len(m.pos)/4 {
		m.pos, m.mtimes = slices.Clip(slices.Clone(m.pos)), slices.Clip(slices.Clone(m.mtimes))
	}
}

// readable panics unless positions can be read: sorted, and naming the
// blobs they named when taken.
func (m *Links) readable() {
	if len(m.pos) == 0 {
		return
	}
	if !m.compact {
		panic("blobindex: a Links was read before Compact")
	}
	m.index.blobs.KeepsIDs(m.shape)
}

// Get returns the link for d.
func (m *Links) Get(d digest.Digest) (Link, bool) {
	m.readable()
	if len(m.pos) > 0 {
		if p, ok := m.index.blobs.ID(d); ok {
			if i, found := slices.BinarySearch(m.pos, p); found {
				return Link{ModTime: int64(m.mtimes[i])}, true
			}
		}
	}
	// Links added before the blobs were all listed are here even when
	// their blob has a position.
	if m.other == nil {
		return Link{}, false
	}
	return m.other.Get(d)
}

// Has reports whether there is a link for d.
func (m *Links) Has(d digest.Digest) bool {
	_, ok := m.Get(d)
	return ok
}

// Len is the number of links.
func (m *Links) Len() int {
	m.readable()
	return len(m.pos) + m.others()
}

// All yields every link and the digest it names, in no particular order.
func (m *Links) All() iter.Seq2[digest.Digest, Link] {
	return func(yield func(digest.Digest, Link) bool) {
		m.readable()
		for i, p := range m.pos {
			if !yield(m.index.blobs.Digest(p), Link{ModTime: int64(m.mtimes[i])}) {
				return
			}
		}
		if m.other == nil {
			return
		}
		for d, l := range m.other.All() {
			if !yield(d, l) {
				return
			}
		}
	}
}

// IDs yields the links to blobs of the index, by ID: All without a
// digest made per link. With Unindexed, every link.
func (m *Links) IDs() iter.Seq[ID] {
	return func(yield func(ID) bool) {
		m.readable()
		for _, p := range m.pos {
			if !yield(p) {
				return
			}
		}
	}
}

// Unindexed yields the links kept by digest (to a blob the index lacks,
// or added before it was frozen) and their digests.
func (m *Links) Unindexed() iter.Seq[digest.Digest] {
	return func(yield func(digest.Digest) bool) {
		m.readable()
		if m.other == nil {
			return
		}
		for d := range m.other.All() {
			if !yield(d) {
				return
			}
		}
	}
}

// Index is the blob index the map's IDs are in.
func (m *Links) Index() *Index { return m.index.blobs }

// others is the number of links kept by digest.
func (m *Links) others() int {
	if m.other == nil {
		return 0
	}
	return m.other.Len()
}

// clampMTime fits an mtime in 32 bits, clamping it to 1970..2106: a
// clamped time falls on the same side of any grace cutoff in that range.
// A recheck that reads such a link unclamped (by digest) sees it changed,
// and the link stays.
func clampMTime(t int64) uint32 {
	return uint32(min(max(t, 0), math.MaxUint32))
}
