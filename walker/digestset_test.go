package mark

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/walker"
)

// TestSetAgreesWithAMap: both forms of Set, fed ids and digests (stored,
// interned but missing, and never seen), answer as a plain map does.
func TestSetAgreesWithAMap(t *testing.T) {
	inv := walker.NewInventory()
	var stored, missing, unseen []digest.Digest
	for i := range 300 {
		d := digest.FromString(fmt.Sprint(i))
		switch i % 3 {
		case 0:
			inv.Blobs.Set(d, walker.Blob{Size: int64(i)})
			stored = append(stored, d)
		case 1:
			missing = append(missing, d)
		default:
			unseen = append(unseen, d)
		}
	}
	unseen = append(unseen, digest.SHA512.FromString("sha512 is never a position"))
	g := newGraph(inv)
	for _, d := range missing {
		g.intern(d)
	}
	all := slices.Concat(stored, missing, unseen)
	for seed := range uint64(4) {
		rng := rand.New(rand.NewPCG(seed, 2))
		for _, s := range []*Set{newDenseSet(g), newSparseSet(g, nil)} {
			want := map[digest.Digest]bool{}
			for range 400 {
				d := all[rng.IntN(len(all))]
				s.Add(d)
				want[d] = true
				if s.Len() != len(want) {
					t.Fatalf("Len %d, want %d", s.Len(), len(want))
				}
			}
			for _, d := range all {
				if s.Has(d) != want[d] {
					t.Fatalf("Has(%s) = %v, want %v", d, s.Has(d), want[d])
				}
			}
			got := map[digest.Digest]bool{}
			for d := range s.All() {
				if got[d] {
					t.Fatalf("All yields %s twice", d)
				}
				got[d] = true
			}
			if !maps.Equal(got, want) {
				t.Fatalf("All: %d digests, want %d", len(got), len(want))
			}
		}
	}
}

func TestSparseSetDropsDuplicateIDs(t *testing.T) {
	inv := walker.NewInventory()
	d := digest.FromString("x")
	inv.Blobs.Set(d, walker.Blob{})
	g := newGraph(inv)
	id, _ := g.find(d)
	s := newSparseSet(g, []uint32{id, id})
	if s.Len() != 1 || !s.Has(d) {
		t.Fatalf("Len %d, Has %v", s.Len(), s.Has(d))
	}
}
