package mark

import (
	"iter"
	"math/bits"
	"slices"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/walker"
)

// Set is a set of digests a mark keeps, held as the graph's ids: 4 bytes a
// member in the sparse form, a bit in the dense form, where a digest
// takes 32. Digests the graph never saw (added after the mark, like a
// Harbor database's live blobs that storage lacks) go to extra.
//
// Like a map, it is safe for concurrent readers but not for a writer.
type Set struct {
	g     *graph
	dense []uint64 // bit per id, when not nil
	ids   []uint32 // sorted, when dense is nil
	n     int      // members among the ids
	extra *walker.DigestMap[struct{}]
}

func newSparseSet(g *graph, ids []uint32) *Set {
	slices.Sort(ids)
	ids = slices.Compact(ids)
	return &Set{g: g, ids: slices.Clip(ids), n: len(ids)}
}

func newDenseSet(g *graph) *Set {
	return &Set{g: g, dense: make([]uint64, (len(g.nodes)+63)/64)}
}

func (s *Set) hasID(id uint32) bool {
	if s.dense != nil {
		return int(id/64) < len(s.dense) && s.dense[id/64]&(1<<(id%64)) != 0
	}
	_, ok := slices.BinarySearch(s.ids, id)
	return ok
}

func (s *Set) addID(id uint32) {
	if s.hasID(id) {
		return
	}
	s.n++
	if s.dense != nil && int(id/64) < len(s.dense) {
		s.dense[id/64] |= 1 << (id % 64)
		return
	}
	i, _ := slices.BinarySearch(s.ids, id)
	s.ids = slices.Insert(s.ids, i, id)
}

// Has reports whether d is in the set.
func (s *Set) Has(d digest.Digest) bool {
	if id, ok := s.g.find(d); ok && s.hasID(id) {
		return true
	}
	return s.extra != nil && s.extra.Has(d)
}

// Add puts d in the set.
func (s *Set) Add(d digest.Digest) {
	if id, ok := s.g.find(d); ok && (s.dense == nil || int(id/64) < len(s.dense)) {
		s.addID(id)
		return
	}
	if s.extra == nil {
		s.extra = walker.NewDigestMap[struct{}]()
	}
	s.extra.Set(d, struct{}{})
}

// Len is the number of digests in the set.
func (s *Set) Len() int {
	n := s.n
	if s.extra != nil {
		n += s.extra.Len()
	}
	return n
}

// All yields every digest in the set, in no particular order.
func (s *Set) All() iter.Seq[digest.Digest] {
	return func(yield func(digest.Digest) bool) {
		for w, word := range s.dense {
			for word != 0 {
				b := bits.TrailingZeros64(word)
				word &^= 1 << b
				if !yield(s.g.digest(uint32(w*64 + b))) {
					return
				}
			}
		}
		for _, id := range s.ids {
			if !yield(s.g.digest(id)) {
				return
			}
		}
		if s.extra != nil {
			for d := range s.extra.All() {
				if !yield(d) {
					return
				}
			}
		}
	}
}
