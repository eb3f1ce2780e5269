package walker

import (
	"iter"
	"math/bits"
	"slices"

	"github.com/opencontainers/go-digest"
)

// DigestSet is a set of digests over an inventory: a digest of a blob the
// walk listed is kept as its position in the inventory's blob map, any
// other digest as itself. Positions take a bit each in the dense form, 4
// bytes in the sorted form (built once from a list), a map entry in the
// sparse form (built by Add). The blob map must not change while the set
// is in use.
//
// Like a map, it is safe for concurrent readers but not for a writer.
type DigestSet struct {
	blobs  *DigestMap[Blob]
	shape  Shape               // blobs' shape when the set was made
	dense  []uint64            // dense form: a bit per position
	sorted []uint32            // sorted form: the positions, ascending
	sparse map[uint32]struct{} // sparse form: the positions
	other  *DigestMap[struct{}]
	n      int
}

// NewDigestSet returns an empty set over inv's blobs. Dense sets take a
// bit per blob however few members they get: use them for sets of about
// every blob, sparse ones for the rest.
func (inv *Inventory) NewDigestSet(dense bool) *DigestSet {
	inv.Blobs.Compact()
	s := &DigestSet{blobs: inv.Blobs, shape: inv.Blobs.Shape()}
	if dense {
		s.dense = make([]uint64, (inv.Blobs.Positions()+63)/64)
	} else {
		s.sparse = map[uint32]struct{}{}
	}
	return s
}

// DigestSetOf returns the set of the blobs at positions (as Position
// gives them, in any order, repeats allowed) and of others, in the sorted
// form: the smallest for a set built once and then read.
func (inv *Inventory) DigestSetOf(positions []uint32, others []digest.Digest) *DigestSet {
	slices.Sort(positions)
	positions = slices.Clip(slices.Compact(positions))
	if len(positions) > 0 && int(positions[len(positions)-1]) >= inv.Blobs.Positions() {
		panic("walker: DigestSetOf given a position the blob map does not have")
	}
	s := &DigestSet{blobs: inv.Blobs, shape: inv.Blobs.Shape(), sorted: positions, n: len(positions)}
	for _, d := range others {
		s.Add(d)
	}
	return s
}

// Add puts d in the set and reports whether it was new.
func (s *DigestSet) Add(d digest.Digest) bool {
	s.blobs.KeepsPositions(s.shape)
	if pos, ok := s.blobs.Position(d); ok {
		return s.AddPosition(uint32(pos))
	}
	if s.other == nil {
		s.other = NewDigestMap[struct{}]()
	}
	if s.other.Has(d) {
		return false
	}
	s.other.Set(d, struct{}{})
	s.n++
	return true
}

// AddPosition puts the blob at pos in the set and reports whether it was
// new.
func (s *DigestSet) AddPosition(pos uint32) bool {
	if s.hasPosition(pos) {
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

// HasPosition reports whether the blob at pos is in the set.
func (s *DigestSet) HasPosition(pos int) bool {
	s.blobs.KeepsPositions(s.shape)
	return s.hasPosition(uint32(pos))
}

func (s *DigestSet) hasPosition(pos uint32) bool {
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
func (s *DigestSet) Has(d digest.Digest) bool {
	s.blobs.KeepsPositions(s.shape)
	if pos, ok := s.blobs.Position(d); ok {
		return s.hasPosition(uint32(pos))
	}
	return s.other != nil && s.other.Has(d)
}

// Len is the number of digests in the set.
func (s *DigestSet) Len() int { return s.n }

// Each yields every member, in no particular order: a listed blob as its
// position and an empty digest, any other digest as -1 and itself. It is
// All for readers that index by position, without turning positions back
// into digests.
func (s *DigestSet) Each() iter.Seq2[int, digest.Digest] {
	return func(yield func(int, digest.Digest) bool) {
		s.blobs.KeepsPositions(s.shape)
		for w, word := range s.dense {
			for word != 0 {
				b := bits.TrailingZeros64(word)
				word &^= 1 << b
				if !yield(w*64+b, "") {
					return
				}
			}
		}
		for _, pos := range s.sorted {
			if !yield(int(pos), "") {
				return
			}
		}
		for pos := range s.sparse {
			if !yield(int(pos), "") {
				return
			}
		}
		if s.other != nil {
			for d := range s.other.All() {
				if !yield(-1, d) {
					return
				}
			}
		}
	}
}

// All yields every digest in the set, in no particular order.
func (s *DigestSet) All() iter.Seq[digest.Digest] {
	return func(yield func(digest.Digest) bool) {
		for pos, d := range s.Each() {
			if pos >= 0 {
				d = s.blobs.DigestAt(pos)
			}
			if !yield(d) {
				return
			}
		}
	}
}
