package blobindex

import (
	_ "crypto/sha512" // sha512 digests are keys too
	"fmt"
	"maps"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestMapAgreesWithAMap drives Map and a plain map with the
// same random operations, across several merges, and compares them after
// every step that could have moved an entry.
func TestMapAgreesWithAMap(t *testing.T) {
	for seed := range uint64(8) {
		rng := rand.New(rand.NewPCG(seed, 1))
		m := NewMap[int]()
		want := map[digest.Digest]int{}
		pool := make([]digest.Digest, 6000)
		for i := range pool {
			switch {
			case i%97 == 0:
				pool[i] = digest.SHA512.FromString(fmt.Sprint(i))
			case i%89 == 0:
				pool[i] = digest.Digest(fmt.Sprintf("sha256:NOT-HEX-%d", i))
			case i%83 == 0:
				// Upper-case hex is another key than its lower-case twin.
				pool[i] = digest.Digest("sha256:" + strings.ToUpper(digest.FromString(fmt.Sprint(i-1)).Encoded()))
			default:
				pool[i] = digest.FromString(fmt.Sprint(i))
			}
		}
		for step := range 20000 {
			d := pool[rng.IntN(len(pool))]
			switch op := rng.IntN(10); {
			case op < 7:
				m.Set(d, step)
				want[d] = step
			case op < 8:
				m.Delete(d)
				delete(want, d)
			default:
				v, ok := m.Get(d)
				w, wok := want[d]
				if ok != wok || v != w {
					t.Fatalf("seed %d step %d: Get(%s) = %d,%v; want %d,%v", seed, step, d, v, ok, w, wok)
				}
			}
			if m.Len() != len(want) {
				t.Fatalf("seed %d step %d: Len %d, want %d", seed, step, m.Len(), len(want))
			}
		}
		got := maps.Collect(m.All())
		if !maps.Equal(got, want) {
			t.Fatalf("seed %d: All differs: %d entries, want %d", seed, len(got), len(want))
		}
		for d, w := range want {
			if v, ok := m.Get(d); !ok || v != w || !m.Has(d) {
				t.Fatalf("seed %d: Get(%s) = %d,%v; want %d", seed, d, v, ok, w)
			}
		}
		if m.Has(digest.FromString("never set")) {
			t.Fatal("Has reports a key never set")
		}
		checkPositions(t, m, want)
	}
}

// checkPositions: once compacted, positions 0..Indexed()-1 are the
// canonical sha256 keys in ascending order, and Position, DigestAt and
// ValueAt agree on each.
func checkPositions(t *testing.T, m *Map[int], want map[digest.Digest]int) {
	t.Helper()
	m.Compact()
	var canonical int
	for d := range want {
		if _, ok := sha256Key(d); ok {
			canonical++
		}
	}
	if m.Indexed() != canonical {
		t.Fatalf("%d positions, want %d canonical sha256 keys", m.Indexed(), canonical)
	}
	var prev digest.Digest
	for p := range m.Indexed() {
		d := m.Digest(ID(p))
		if w, ok := want[d]; !ok || m.Value(ID(p)) != w {
			t.Fatalf("position %d: %s = %d, want %d (present %v)", p, d, m.Value(ID(p)), w, ok)
		}
		if got, ok := m.ID(d); !ok || int(got) != p {
			t.Fatalf("ID(Digest(%d)) = %d,%v", p, got, ok)
		}
		if p > 0 && d <= prev {
			t.Fatalf("position %d: %s not after %s", p, d, prev)
		}
		prev = d
	}
}

// TestMapSplitsAndKeepsPositions grows a map through its split into
// 256 slices in batches and in one go, and checks its positions each time.
func TestMapSplitsAndKeepsPositions(t *testing.T) {
	for _, batch := range []int{97, splitAt - 1, splitAt, 3 * splitAt} {
		m := NewMap[int]()
		want := map[digest.Digest]int{}
		for i := range 3*splitAt + 5 {
			d := digest.FromString(fmt.Sprint(batch, i))
			m.Set(d, i)
			want[d] = i
			// Single keys merged across the split, and batches.
			if (i+1)%batch == 0 || splitAt-3 <= i && i <= splitAt+1 {
				checkPositions(t, m, want)
			}
		}
		checkPositions(t, m, want)
		if len(m.buckets) != 256 {
			t.Fatalf("batch %d: %d slices after %d keys, want 256", batch, len(m.buckets), m.Len())
		}
	}
}

func TestMapZeroValue(t *testing.T) {
	var m Map[struct{}]
	if m.Has(digest.FromString("x")) || m.Len() != 0 {
		t.Fatal("zero map not empty")
	}
	m.Set(digest.FromString("x"), struct{}{})
	if !m.Has(digest.FromString("x")) {
		t.Fatal("zero map lost a key")
	}
}

func BenchmarkMapSet(b *testing.B) {
	ds := make([]digest.Digest, 100000)
	for i := range ds {
		ds[i] = digest.FromString(fmt.Sprint(i))
	}
	b.ReportAllocs()
	for b.Loop() {
		m := NewMap[struct{}]()
		for _, d := range ds {
			m.Set(d, struct{}{})
		}
	}
}

// TestDigestSetRefusesAMovedBlobMap: a set's positions name other blobs
// once the map merges new keys; it must stop, not answer.
func TestDigestSetRefusesAMovedBlobMap(t *testing.T) {
	blobs := NewIndex()
	blobs.Set(digest.FromString("a"), Blob{})
	s := NewSet(blobs, true)
	s.Add(digest.FromString("a"))
	for i := range 2 * minMerge {
		blobs.Set(digest.FromString(fmt.Sprint(i)), Blob{})
	}
	defer func() {
		if recover() == nil {
			t.Fatal("Has answered over a blob map that moved")
		}
	}()
	s.Has(digest.FromString("a"))
}

// TestDigestSetRefusesAMapMovedBackToItsSize: a delete and a merge that
// bring the map back to as many positions still move them; counting them
// alone would let the set answer for the wrong blobs.
func TestDigestSetRefusesAMapMovedBackToItsSize(t *testing.T) {
	blobs := NewIndex()
	for i := range 100 {
		blobs.Set(digest.FromString(fmt.Sprint(i)), Blob{})
	}
	s := NewSet(blobs, false)
	s.Add(digest.FromString("7"))
	n := blobs.Indexed()
	blobs.Delete(digest.FromString("0"))
	blobs.Set(digest.FromString("new"), Blob{})
	blobs.Compact()
	if blobs.Indexed() != n {
		t.Fatalf("setup: %d positions, want %d", blobs.Indexed(), n)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("Has answered over a blob map whose positions moved")
		}
	}()
	s.Has(digest.FromString("7"))
}
