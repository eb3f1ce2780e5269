package blobindex

import (
	"iter"
	"math/bits"
	"slices"

	"github.com/opencontainers/go-digest"
)

// Set is a set of digests over an index: a digest of a blob the index
// holds is kept as its ID, any other digest as itself. IDs take a bit each
// in the dense form, 4 bytes in the sorted form (built once from a list),
// a map entry in the sparse form (built by Add). The index must not
// change while the set is in use.
//
// Like a map, it is safe for concurrent readers but not for a writer.
type Set struct {
	blobs  *Index
	shape  Shape           // blobs' shape when the set was made
	dense  []uint64        // dense form: a bit per ID
	sorted []ID            // sorted form: the IDs, ascending
	sparse map[ID]struct{} // sparse form: the IDs
	other  *Map[struct{}]
	n      int
}

// NewSet returns an empty set over blobs, which it compacts. Dense sets
// take a bit per blob however few members they get: use them for sets of
// about every blob, sparse ones for the rest.
func NewSet(blobs *Index, dense bool) *Set {
	blobs.Compact()
	s := &Set{blobs: blobs, shape: blobs.Shape()}
	if dense {
		s.dense = make([]uint64, (blobs.Indexed()+63)/64)
	} else {
		s.sparse = map[ID]struct{}{}
	}
	return s
}

// SetOf returns the set of the blobs with these IDs (in any order,
// repeats allowed; ids is reused) and of others, in the sorted form: the
// smallest for a set built once and then read.
func SetOf(blobs *Index, ids []ID, others []digest.Digest) *Set {
	slices.Sort(ids)
	ids = slices.Clip(slices.Compact(ids))
	if len(ids) > 0 && int(ids[len(ids)-1]) >= blobs.Indexed() {
		panic("blobindex: SetOf given an ID the index does not have")
	}
	s := &Set{blobs: blobs, shape: blobs.Shape(), sorted: ids, n: len(ids)}
	for _, d := range others {
		s.Add(d)
	}
	return s
}

// Add puts d in the set and reports whether it was new.
func (s *Set) Add(d digest.Digest) bool {
	s.blobs.KeepsIDs(s.shape)
	if id, ok := s.blobs.ID(d); ok {
		return s.AddID(id)
	}
	if s.other == nil {
		s.other = NewMap[struct{}]()
	}
	if s.other.Has(d) {
		return false
	}
	s.other.Set(d, struct{}{})
	s.n++
	return true
}

// AddID puts the blob with this ID in the set and reports whether it was
// new.
func (s *Set) AddID(pos ID) bool {
	if s.hasID(pos) {
		return false
	}
	switch {
	case s.dense != nil:
		s.dense[pos/64] |= 1 << (pos % 64)
	case s.sparse != nil:
		s.sparse[pos] = struct{}{}
	default:
		i, _ := slices.BinarySearch(s.sorted, pos)
		s.sorted = slices.Insert(s.sorted, i, pos)
	}
	s.n++
	return true
}

// HasID reports whether the blob with this ID is in the set.
func (s *Set) HasID(id ID) bool {
	s.blobs.KeepsIDs(s.shape)
	return s.hasID(id)
}

func (s *Set) hasID(pos ID) bool {
	switch {
	case s.dense != nil:
		return s.dense[pos/64]&(1<<(pos%64)) != 0
	case s.sparse != nil:
		_, had := s.sparse[pos]
		return had
	default:
		_, had := slices.BinarySearch(s.sorted, pos)
		return had
	}
}

// Has reports whether d is in the set.
func (s *Set) Has(d digest.Digest) bool {
	s.blobs.KeepsIDs(s.shape)
	if id, ok := s.blobs.ID(d); ok {
		return s.hasID(id)
	}
	return s.other != nil && s.other.Has(d)
}

// Len is the number of digests in the set.
func (s *Set) Len() int { return s.n }

// IDs yields the members the index holds, by ID, in no particular order:
// All for readers that index by ID, without a digest made per member.
// With Unindexed, every member.
func (s *Set) IDs() iter.Seq[ID] {
	return func(yield func(ID) bool) {
		s.blobs.KeepsIDs(s.shape)
		for w, word := range s.dense {
			for word != 0 {
				b := bits.TrailingZeros64(word)
				word &^= 1 << b
				if !yield(ID(w*64 + b)) {
					return
				}
			}
		}
		for _, id := range s.sorted {
			if !yield(id) {
				return
			}
		}
		for id := range s.sparse {
			if !yield(id) {
				return
			}
		}
	}
}

// Unindexed yields the members the index does not hold (or holds without
// an ID), in no particular order.
func (s *Set) Unindexed() iter.Seq[digest.Digest] {
	return func(yield func(digest.Digest) bool) {
		if s.other == nil {
			return
		}
		for d := range s.other.All() {
			if !yield(d) {
				return
			}
		}
	}
}

// All yields every digest in the set, in no particular order.
func (s *Set) All() iter.Seq[digest.Digest] {
	return func(yield func(digest.Digest) bool) {
		for id := range s.IDs() {
			if !yield(s.blobs.Digest(id)) {
				return
			}
		}
		for d := range s.Unindexed() {
			if !yield(d) {
				return
			}
		}
	}
}
