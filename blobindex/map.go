package blobindex

import (
	"bytes"
	"encoding/hex"
	"iter"
	"slices"
	"sort"

	"github.com/opencontainers/go-digest"
)

// Map maps digests to values compactly. A collector holds a few of
// these per blob, so their size is its memory: sha256 digests, nearly all
// of them, are kept as 32 raw bytes instead of a 71-byte string, in
// sorted slices rather than a hash map (32 bytes and the value per entry,
// where a map needs half as much again and twice that while it grows).
// New keys collect in a small map, merged into the slices once it holds an
// eighth as many, so n inserts cost O(n log n) in all.
//
// A large map keeps its keys in 256 slices by their first byte: growing
// one big slice would need its old and new copies at once, and leave the
// old one as a hole in the heap, at the moment the map is largest. Digests
// are uniform, so the slices stay a 256th of the map each. IDs run
// across them in key order, as if they were one slice.
//
// Like a map, it is safe for concurrent readers but not for a writer.
type Map[V any] struct {
	buckets []bucket[V]    // one, or 256 by the key's first byte; each ascending
	starts  []int          // starts[b] is the ID of buckets[b][0]; one more than buckets
	recent  map[[32]byte]V // keys not in buckets
	other   map[digest.Digest]V
	moves   uint64 // writes that moved IDs: merges and deletes
}

type bucket[V any] []digestEntry[V]

// Shape names a map's IDs: any write that moves them (a merge of
// new keys, a delete) gives the map another shape, even when the number
// of positions comes back to what it was.
type Shape struct {
	ids   int
	moves uint64
}

type digestEntry[V any] struct {
	key [32]byte
	val V
}

// minMerge is the smallest batch of recent keys worth a merge. It is
// small: a registry has many repositories with a few hundred links each,
// and a map that never merges is a hash map.
const minMerge = 32

// splitAt is the size at which a map's one slice becomes 256: small maps
// (a repository's links) stay one slice, with no 256 headers to carry.
const splitAt = 2048

// NewMap returns an empty map.
func NewMap[V any]() *Map[V] {
	return &Map[V]{}
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

func (m *Map[V]) bucketOf(k [32]byte) int {
	if len(m.buckets) == 1 {
		return 0
	}
	return int(k[0])
}

// search finds k among the merged keys: its bucket and its index there.
func (m *Map[V]) search(k [32]byte) (b, i int, found bool) {
	if len(m.buckets) == 0 {
		return 0, 0, false
	}
	b = m.bucketOf(k)
	i, found = slices.BinarySearchFunc(m.buckets[b], k, compareEntry[V])
	return b, i, found
}

// Get returns the value for d.
func (m *Map[V]) Get(d digest.Digest) (V, bool) {
	if k, ok := sha256Key(d); ok {
		if v, found := m.recent[k]; found {
			return v, true
		}
		if b, i, found := m.search(k); found {
			return m.buckets[b][i].val, true
		}
		var zero V
		return zero, false
	}
	v, found := m.other[d]
	return v, found
}

// Has reports whether d is present.
func (m *Map[V]) Has(d digest.Digest) bool {
	_, ok := m.Get(d)
	return ok
}

// Set stores v under d.
func (m *Map[V]) Set(d digest.Digest, v V) {
	k, ok := sha256Key(d)
	if !ok {
		if m.other == nil {
			m.other = map[digest.Digest]V{}
		}
		m.other[d] = v
		return
	}
	if b, i, found := m.search(k); found {
		m.buckets[b][i].val = v
		return
	}
	if m.recent == nil {
		m.recent = map[[32]byte]V{}
	}
	m.recent[k] = v
	if len(m.recent) >= max(minMerge, m.Indexed()/8) {
		m.merge()
	}
}

// merge moves the recent keys into the buckets: they are sorted on their
// own, then each bucket's share is merged in from the back, so that no
// second copy of a bucket is made beyond what growing it takes.
func (m *Map[V]) merge() {
	add := make([]digestEntry[V], 0, len(m.recent))
	for k, v := range m.recent {
		add = append(add, digestEntry[V]{k, v})
	}
	m.recent = nil
	m.moves++
	slices.SortFunc(add, func(a, b digestEntry[V]) int { return bytes.Compare(a.key[:], b.key[:]) })
	if len(m.buckets) == 0 {
		m.buckets = make([]bucket[V], 1)
	}
	if len(m.buckets) == 1 && len(m.buckets[0])+len(add) >= splitAt {
		m.split()
	}
	for len(add) > 0 {
		b := m.bucketOf(add[0].key)
		n := 1
		for n < len(add) && m.bucketOf(add[n].key) == b {
			n++
		}
		m.buckets[b] = mergeInto(m.buckets[b], add[:n])
		add = add[n:]
	}
	m.count()
}

// split turns the one bucket into 256 by first byte.
func (m *Map[V]) split() {
	one := m.buckets[0]
	m.buckets = make([]bucket[V], 256)
	for len(one) > 0 {
		b := int(one[0].key[0])
		n := 1
		for n < len(one) && int(one[n].key[0]) == b {
			n++
		}
		m.buckets[b] = slices.Clone(one[:n])
		one = one[n:]
	}
}

// mergeInto merges add (ascending, no key of s) into s.
func mergeInto[V any](s bucket[V], add []digestEntry[V]) bucket[V] {
	old := len(s)
	s = slices.Grow(s, len(add))[:old+len(add)]
	i, j := old-1, len(add)-1
	for w := len(s) - 1; j >= 0; w-- {
		if i >= 0 && bytes.Compare(s[i].key[:], add[j].key[:]) > 0 {
			s[w] = s[i]
			i--
		} else {
			s[w] = add[j]
			j--
		}
	}
	return s
}

// count recomputes where each bucket's positions start.
func (m *Map[V]) count() {
	m.starts = slices.Grow(m.starts[:0], len(m.buckets)+1)[:len(m.buckets)+1]
	n := 0
	for b, s := range m.buckets {
		m.starts[b] = n
		n += len(s)
	}
	m.starts[len(m.buckets)] = n
}

// Compact merges what is pending and drops the slack left by growing
// (up to half a bucket). Call it when the map is built and about to be
// only read.
func (m *Map[V]) Compact() {
	if len(m.recent) > 0 {
		m.merge()
	}
	for b, s := range m.buckets {
		if cap(s)-len(s) > len(s)/4 {
			m.buckets[b] = slices.Clone(s)
		}
	}
}

// ID returns where d is among the merged sha256 keys. IDs hold until the
// map is next written, so a reader of a Compacted map may use them in
// place of the digests.
func (m *Map[V]) ID(d digest.Digest) (ID, bool) {
	k, ok := sha256Key(d)
	if !ok {
		return 0, false
	}
	b, i, found := m.search(k)
	if len(m.starts) > 0 {
		i += m.starts[b]
	}
	return ID(i), found
}

// Indexed is the number of merged sha256 keys: the IDs are below it.
func (m *Map[V]) Indexed() int {
	if len(m.starts) == 0 {
		return 0
	}
	return m.starts[len(m.buckets)]
}

// IDs yields every ID, ascending.
func (m *Map[V]) IDs() iter.Seq[ID] {
	return func(yield func(ID) bool) {
		for i := range m.Indexed() {
			if !yield(ID(i)) {
				return
			}
		}
	}
}

// Shape is the map's current shape, for a reader that holds IDs (see
// KeepsIDs).
func (m *Map[V]) Shape() Shape { return Shape{m.Indexed(), m.moves} }

// KeepsIDs panics unless the map still has the shape a reader took its IDs
// in: they shift when the map is written, and a shifted ID would name
// another blob.
func (m *Map[V]) KeepsIDs(s Shape) {
	if m.Shape() != s {
		panic("blobindex: a map was written while its IDs were in use")
	}
}

// at is the entry with ID i.
func (m *Map[V]) at(i int) *digestEntry[V] {
	if len(m.buckets) == 1 {
		return &m.buckets[0][i]
	}
	b := sort.Search(len(m.buckets), func(b int) bool { return m.starts[b+1] > i })
	return &m.buckets[b][i-m.starts[b]]
}

// Digest returns the digest with this ID.
func (m *Map[V]) Digest(id ID) digest.Digest {
	return digestOfKey(m.at(int(id)).key)
}

// digestOfKey spells k as a digest in one allocation (go-digest's
// constructor formats with fmt, at three times the cost).
func digestOfKey(k [32]byte) digest.Digest {
	var b [7 + 64]byte
	copy(b[:], "sha256:")
	hex.Encode(b[7:], k[:])
	return digest.Digest(b[:])
}

// Value returns the value of the digest with this ID.
func (m *Map[V]) Value(id ID) V { return m.at(int(id)).val }

// Delete removes d.
func (m *Map[V]) Delete(d digest.Digest) {
	k, ok := sha256Key(d)
	if !ok {
		delete(m.other, d)
		return
	}
	delete(m.recent, k)
	if b, i, found := m.search(k); found {
		m.buckets[b] = slices.Delete(m.buckets[b], i, i+1)
		m.moves++
		m.count()
	}
}

// Len is the number of digests.
func (m *Map[V]) Len() int { return m.Indexed() + len(m.recent) + len(m.other) }

// All yields every digest and value, in no particular order.
func (m *Map[V]) All() iter.Seq2[digest.Digest, V] {
	return func(yield func(digest.Digest, V) bool) {
		for _, s := range m.buckets {
			for _, e := range s {
				if !yield(digestOfKey(e.key), e.val) {
					return
				}
			}
		}
		for d, v := range m.Unindexed() {
			if !yield(d, v) {
				return
			}
		}
	}
}

// Unindexed yields the digests that have no ID (not merged yet, or not
// sha256) and their values: with IDs 0 to Indexed()-1, every entry of
// the map.
func (m *Map[V]) Unindexed() iter.Seq2[digest.Digest, V] {
	return func(yield func(digest.Digest, V) bool) {
		for k, v := range m.recent {
			if !yield(digestOfKey(k), v) {
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
