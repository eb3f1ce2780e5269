package blobindex

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestSetAgreesWithAMap: every form of Set, fed listed blobs
// (as digests and as positions), unlisted digests and non-sha256 ones,
// answers as a plain map does.
func TestSetAgreesWithAMap(t *testing.T) {
	blobs := NewIndex()
	var stored, other []digest.Digest
	for i := range 300 {
		d := digest.FromString(fmt.Sprint(i))
		if i%2 == 0 {
			blobs.Set(d, Blob{Size: int64(i)})
			stored = append(stored, d)
		} else {
			other = append(other, d)
		}
	}
	// A stored sha512 blob has no position: sets hold it as a digest.
	sha512 := digest.SHA512.FromString("stored, never a position")
	blobs.Set(sha512, Blob{})
	other = append(other, sha512, digest.SHA512.FromString("not stored"))
	blobs.Compact()
	all := slices.Concat(stored, other)
	for seed := range uint64(4) {
		rng := rand.New(rand.NewPCG(seed, 2))
		// The sorted form starts from a list with repeats, as mark builds it.
		var start []ID
		want := map[digest.Digest]bool{}
		for range 50 {
			d := stored[rng.IntN(len(stored))]
			id, _ := blobs.ID(d)
			start = append(start, id, id)
			want[d] = true
		}
		forms := map[string]*Set{
			"dense":  NewSet(blobs, true),
			"sparse": NewSet(blobs, false),
			"sorted": SetOf(blobs, slices.Clone(start), []digest.Digest{other[0], other[0]}),
		}
		for name, s := range forms {
			want := maps.Clone(want)
			if name == "sorted" {
				want[other[0]] = true
			} else {
				for d := range want {
					s.Add(d)
				}
			}
			for i := range 400 {
				d := all[rng.IntN(len(all))]
				var added bool
				if id, ok := blobs.ID(d); ok && i%2 == 0 {
					added = s.AddID(id)
				} else {
					added = s.Add(d)
				}
				if added == want[d] {
					t.Fatalf("%s: adding %s reported new=%v with it already in=%v", name, d, added, want[d])
				}
				want[d] = true
				if s.Len() != len(want) {
					t.Fatalf("%s: Len %d, want %d", name, s.Len(), len(want))
				}
			}
			for _, d := range all {
				if s.Has(d) != want[d] {
					t.Fatalf("%s: Has(%s) = %v, want %v", name, d, s.Has(d), want[d])
				}
			}
			got := map[digest.Digest]bool{}
			for d := range s.All() {
				if got[d] {
					t.Fatalf("%s: All yields %s twice", name, d)
				}
				got[d] = true
			}
			if !maps.Equal(got, want) {
				t.Fatalf("%s: All: %d digests, want %d", name, len(got), len(want))
			}
			clear(got)
			for id := range s.IDs() {
				if !s.HasID(id) {
					t.Fatalf("%s: IDs yields %d, which HasID denies", name, id)
				}
				got[blobs.Digest(id)] = true
			}
			for d := range s.Unindexed() {
				if _, indexed := blobs.ID(d); indexed || got[d] {
					t.Fatalf("%s: Unindexed yields %s, which has an ID or was yielded", name, d)
				}
				got[d] = true
			}
			if !maps.Equal(got, want) {
				t.Fatalf("%s: IDs and Unindexed: %d members, want %d", name, len(got), len(want))
			}
		}
	}
}
