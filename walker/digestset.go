package walker

import "github.com/opencontainers/go-digest"

// DigestSet is a set of digests for one pass over an inventory: a digest
// of a blob the walk listed is kept as its position in the inventory's
// blob map (a bit when dense, 4 bytes otherwise), any other digest as
// itself. The blob map must not change while the set is in use.
type DigestSet struct {
	blobs  *DigestMap[Blob]
	shape  int                 // blobs' positions when the set was made
	bits   []uint64            // dense: a bit per position
	sparse map[uint32]struct{} // sparse: the positions
	other  *DigestMap[struct{}]
	n      int
}

// NewDigestSet returns an empty set over inv's blobs. Dense sets take a
// bit per blob however few members they get: use them for sets of about
// every blob, sparse ones for the rest.
func (inv *Inventory) NewDigestSet(dense bool) *DigestSet {
	inv.Blobs.Compact()
	s := &DigestSet{blobs: inv.Blobs, shape: inv.Blobs.Positions(), other: NewDigestMap[struct{}]()}
	if dense {
		s.bits = make([]uint64, (inv.Blobs.Positions()+63)/64)
	} else {
		s.sparse = map[uint32]struct{}{}
	}
	return s
}

// Add puts d in the set and reports whether it was new.
func (s *DigestSet) Add(d digest.Digest) bool {
	s.blobs.KeepsPositions(s.shape)
	if pos, ok := s.blobs.Position(d); ok {
		p := uint32(pos)
		if s.bits != nil {
			if s.bits[p/64]&(1<<(p%64)) != 0 {
				return false
			}
			s.bits[p/64] |= 1 << (p % 64)
		} else {
			if _, had := s.sparse[p]; had {
				return false
			}
			s.sparse[p] = struct{}{}
		}
		s.n++
		return true
	}
	if s.other.Has(d) {
		return false
	}
	s.other.Set(d, struct{}{})
	s.n++
	return true
}

// Has reports whether d is in the set.
func (s *DigestSet) Has(d digest.Digest) bool {
	s.blobs.KeepsPositions(s.shape)
	if pos, ok := s.blobs.Position(d); ok {
		p := uint32(pos)
		if s.bits != nil {
			return s.bits[p/64]&(1<<(p%64)) != 0
		}
		_, had := s.sparse[p]
		return had
	}
	return s.other.Has(d)
}

// Len is the number of digests in the set.
func (s *DigestSet) Len() int { return s.n }
