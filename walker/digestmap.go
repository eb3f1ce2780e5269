package walker

import (
	"bytes"
	"encoding/hex"
	"iter"
	"slices"

	"github.com/opencontainers/go-digest"
)

// DigestMap maps digests to values compactly. A collector holds a few of
// these per blob, so their size is its memory: sha256 digests, nearly all
// of them, are kept as 32 raw bytes instead of a 71-byte string, in a
// sorted slice rather than a hash map (32 bytes and the value per entry,
// where a map needs half as much again and twice that while it grows).
// New keys collect in a small map, merged into the slice once it holds an
// eighth as many, so n inserts cost O(n log n) in all.
//
// Like a map, it is safe for concurrent readers but not for a writer.
type DigestMap[V any] struct {
	sorted []digestEntry[V] // ascending by key
	recent map[[32]byte]V   // keys not in sorted
	other  map[digest.Digest]V
	moves  uint64 // writes that moved positions: merges and deletes
}

// Shape names a map's positions: any write that moves them (a merge of
// new keys, a delete) gives the map another shape, even when the number
// of positions comes back to what it was.
type Shape struct {
	positions int
	moves     uint64
}

type digestEntry[V any] struct {
	key [32]byte
	val V
}

// minMerge is the smallest batch of recent keys worth a merge. It is
// small: a registry has many repositories with a few hundred links each,
// and a map that never merges is a hash map.
const minMerge = 32

// NewDigestMap returns an empty map.
func NewDigestMap[V any]() *DigestMap[V] {
	return &DigestMap[V]{}
}

// sha256Key is the raw form of a canonical sha256 digest (lower-case hex).
// Anything else stays a string key: upper-case hex must not meet its
// lower-case twin, since All would hand back the other spelling.
func sha256Key(d digest.Digest) ([32]byte, bool) {
	var k [32]byte
	s := string(d)
	if len(s) != 7+64 || s[:7] != "sha256:" {
		return k, false
	}
	for i := 7; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return k, false
		}
	}
	_, err := hex.Decode(k[:], []byte(s[7:]))
	return k, err == nil
}

func compareEntry[V any](e digestEntry[V], k [32]byte) int { return bytes.Compare(e.key[:], k[:]) }

func (m *DigestMap[V]) search(k [32]byte) (int, bool) {
	return slices.BinarySearchFunc(m.sorted, k, compareEntry[V])
}

// Get returns the value for d.
func (m *DigestMap[V]) Get(d digest.Digest) (V, bool) {
	if k, ok := sha256Key(d); ok {
		if v, found := m.recent[k]; found {
			return v, true
		}
		if i, found := m.search(k); found {
			return m.sorted[i].val, true
		}
		var zero V
		return zero, false
	}
	v, found := m.other[d]
	return v, found
}

// Has reports whether d is present.
func (m *DigestMap[V]) Has(d digest.Digest) bool {
	_, ok := m.Get(d)
	return ok
}

// Set stores v under d.
func (m *DigestMap[V]) Set(d digest.Digest, v V) {
	k, ok := sha256Key(d)
	if !ok {
		if m.other == nil {
			m.other = map[digest.Digest]V{}
		}
		m.other[d] = v
		return
	}
	if i, found := m.search(k); found {
		m.sorted[i].val = v
		return
	}
	if m.recent == nil {
		m.recent = map[[32]byte]V{}
	}
	m.recent[k] = v
	if len(m.recent) >= max(minMerge, len(m.sorted)/8) {
		m.merge()
	}
}

// merge moves the recent keys into sorted: they are sorted on their own,
// then merged in from the back, so that no second copy of sorted is made
// beyond what growing the slice takes.
func (m *DigestMap[V]) merge() {
	add := make([]digestEntry[V], 0, len(m.recent))
	for k, v := range m.recent {
		add = append(add, digestEntry[V]{k, v})
	}
	m.recent = nil
	m.moves++
	slices.SortFunc(add, func(a, b digestEntry[V]) int { return bytes.Compare(a.key[:], b.key[:]) })
	old := len(m.sorted)
	m.sorted = slices.Grow(m.sorted, len(add))[:old+len(add)]
	i, j := old-1, len(add)-1
	for w := len(m.sorted) - 1; j >= 0; w-- {
		if i >= 0 && bytes.Compare(m.sorted[i].key[:], add[j].key[:]) > 0 {
			m.sorted[w] = m.sorted[i]
			i--
		} else {
			m.sorted[w] = add[j]
			j--
		}
	}
}

// Compact merges what is pending and drops the slack left by growing a
// small map (up to half of it); a large one grows by a quarter at most,
// and copying it would cost more at that moment than the slack saves.
// Call it when the map is built and about to be only read.
func (m *DigestMap[V]) Compact() {
	if len(m.recent) > 0 {
		m.merge()
	}
	if cap(m.sorted)-len(m.sorted) > len(m.sorted)/4 {
		m.sorted = slices.Clone(m.sorted)
	}
}

// Position returns where d is among the merged sha256 keys. Positions
// hold until the map is next written, so a reader of a Compacted map may
// use them as dense ids in place of the digests.
func (m *DigestMap[V]) Position(d digest.Digest) (int, bool) {
	k, ok := sha256Key(d)
	if !ok {
		return 0, false
	}
	return m.search(k)
}

// Positions is the number of merged sha256 keys: positions are below it.
func (m *DigestMap[V]) Positions() int { return len(m.sorted) }

// Shape is the map's current shape, for a reader that takes positions as
// ids (see KeepsPositions).
func (m *DigestMap[V]) Shape() Shape { return Shape{len(m.sorted), m.moves} }

// KeepsPositions panics unless the map still has the shape a reader took
// its positions in: they shift when the map is written, and a shifted id
// would name another blob.
func (m *DigestMap[V]) KeepsPositions(s Shape) {
	if m.Shape() != s {
		panic("walker: a blob map was written while its positions were in use as ids")
	}
}

// DigestAt returns the digest at position i.
func (m *DigestMap[V]) DigestAt(i int) digest.Digest {
	return digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(m.sorted[i].key[:]))
}

// ValueAt returns the value at position i.
func (m *DigestMap[V]) ValueAt(i int) V { return m.sorted[i].val }

// Delete removes d.
func (m *DigestMap[V]) Delete(d digest.Digest) {
	k, ok := sha256Key(d)
	if !ok {
		delete(m.other, d)
		return
	}
	delete(m.recent, k)
	if i, found := m.search(k); found {
		m.sorted = slices.Delete(m.sorted, i, i+1)
		m.moves++
	}
}

// Len is the number of digests.
func (m *DigestMap[V]) Len() int { return len(m.sorted) + len(m.recent) + len(m.other) }

// All yields every digest and value, in no particular order.
func (m *DigestMap[V]) All() iter.Seq2[digest.Digest, V] {
	return func(yield func(digest.Digest, V) bool) {
		for i := range m.sorted {
			if !yield(m.DigestAt(i), m.sorted[i].val) {
				return
			}
		}
		for d, v := range m.Unpositioned() {
			if !yield(d, v) {
				return
			}
		}
	}
}

// Unpositioned yields the digests that have no position (not merged yet,
// or not sha256) and their values: with positions 0 to Positions()-1,
// every entry of the map.
func (m *DigestMap[V]) Unpositioned() iter.Seq2[digest.Digest, V] {
	return func(yield func(digest.Digest, V) bool) {
		for k, v := range m.recent {
			if !yield(digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(k[:])), v) {
				return
			}
		}
		for d, v := range m.other {
			if !yield(d, v) {
				return
			}
		}
	}
}
