package walker

import (
	"iter"
	"math"
	"slices"

	"github.com/opencontainers/go-digest"
)

// LinkMap holds one repository's links of a kind (revisions, layers) by
// the digest each names. Once every blob is listed (Inventory.BlobsListed),
// a link to a listed blob is stored as the blob's position and the link's
// mtime, 8 bytes where a digest key takes 40: a registry has about one
// layer link per blob, so this is a quarter of a collector's memory. Other
// links (to a blob storage lacks, or added before the blobs were all
// listed) are stored by digest.
//
// It is built by one writer and then Compacted, after which it is safe for
// concurrent readers. Reading an uncompacted map that holds positions
// panics, as does reading after the blob map moved its positions.
type LinkMap struct {
	index   *linkIndex
	shape   Shape    // the blob map's, when pos was taken
	pos     []uint32 // blob positions; ascending and distinct once compact
	mtimes  []uint32 // the links' mtimes (unix seconds), by pos
	compact bool
	other   *DigestMap[Link] // nil until needed: most maps never need it
}

// linkIndex is the inventory's blob map as link maps see it: usable for
// positions once frozen.
type linkIndex struct {
	blobs  *DigestMap[Blob]
	frozen bool
}

func newLinkMap(index *linkIndex) *LinkMap {
	return &LinkMap{index: index, compact: true}
}

// Set stores l under d.
func (m *LinkMap) Set(d digest.Digest, l Link) {
	if m.index != nil && m.index.frozen {
		if p, ok := m.index.blobs.Position(d); ok {
			if len(m.pos) == 0 {
				m.shape = m.index.blobs.Shape()
			}
			m.index.blobs.KeepsPositions(m.shape)
			if n := len(m.pos); n > 0 && m.pos[n-1] >= uint32(p) {
				m.compact = false
			}
			m.pos = append(m.pos, uint32(p))
			m.mtimes = append(m.mtimes, clampMTime(l.ModTime))
			if m.other != nil {
				m.other.Delete(d)
			}
			return
		}
	}
	if m.other == nil {
		m.other = NewDigestMap[Link]()
	}
	m.other.Set(d, l)
}

// Compact sorts the positions (a later Set of the same link wins) and
// drops the slack of growing. Call it when the map is built.
func (m *LinkMap) Compact() {
	if m.other != nil {
		m.other.Compact()
	}
	if !m.compact {
		order := make([]int, len(m.pos))
		for i := range order {
			order[i] = i
		}
		slices.SortStableFunc(order, func(a, b int) int { return int(m.pos[a]) - int(m.pos[b]) })
		pos, mtimes := make([]uint32, 0, len(m.pos)), make([]uint32, 0, len(m.pos))
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
func (m *LinkMap) readable() {
	if len(m.pos) == 0 {
		return
	}
	if !m.compact {
		panic("walker: a LinkMap was read before Compact")
	}
	m.index.blobs.KeepsPositions(m.shape)
}

// Get returns the link for d.
func (m *LinkMap) Get(d digest.Digest) (Link, bool) {
	m.readable()
	if len(m.pos) > 0 {
		if p, ok := m.index.blobs.Position(d); ok {
			if i, found := slices.BinarySearch(m.pos, uint32(p)); found {
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
func (m *LinkMap) Has(d digest.Digest) bool {
	_, ok := m.Get(d)
	return ok
}

// Len is the number of links.
func (m *LinkMap) Len() int {
	m.readable()
	return len(m.pos) + m.others()
}

// All yields every link and the digest it names, in no particular order.
func (m *LinkMap) All() iter.Seq2[digest.Digest, Link] {
	return func(yield func(digest.Digest, Link) bool) {
		m.readable()
		for i, p := range m.pos {
			if !yield(m.index.blobs.DigestAt(int(p)), Link{ModTime: int64(m.mtimes[i])}) {
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

// Each yields every link as DigestSet.Each does: a link to a listed blob
// as the blob's position and an empty digest, any other as -1 and its
// digest. It is All without a digest made per link.
func (m *LinkMap) Each() iter.Seq2[int, digest.Digest] {
	return func(yield func(int, digest.Digest) bool) {
		m.readable()
		for _, p := range m.pos {
			if !yield(int(p), "") {
				return
			}
		}
		if m.other == nil {
			return
		}
		for d := range m.other.All() {
			if !yield(-1, d) {
				return
			}
		}
	}
}

// others is the number of links kept by digest.
func (m *LinkMap) others() int {
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
