package blobindex

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestLinksAgreesWithAMap: links set before and after the blobs are
// listed, to listed blobs and to missing ones, out of order and repeated,
// read back as a plain map holds them, and links to listed blobs take no
// digest once the blobs are listed.
func TestLinksAgreesWithAMap(t *testing.T) {
	for seed := range uint64(6) {
		rng := rand.New(rand.NewPCG(seed, 2))
		blobs := NewIndex()
		index := NewLinkIndex(blobs)
		var stored, missing []digest.Digest
		for i := range 3000 {
			d := digest.FromString(fmt.Sprint(seed, i))
			if i%5 == 0 {
				missing = append(missing, d)
				continue
			}
			stored = append(stored, d)
			blobs.Set(d, Blob{Size: int64(i)})
		}
		layers := NewLinks(index)
		want := map[digest.Digest]Link{}
		// set stores a link, and wants it back as stored: a link kept as a
		// position has its mtime clamped to 32 bits.
		set := func(d digest.Digest) {
			// Mostly times that fit 32 bits, some that do not.
			l := Link{ModTime: rng.Int64N(1 << 32)}
			if rng.IntN(20) == 0 {
				l.ModTime = -rng.Int64N(1<<40) + rng.Int64N(1<<41)
			}
			if index.Frozen() && blobs.Has(d) {
				l.ModTime = int64(clampMTime(l.ModTime)) // kept as an ID
			}
			layers.Set(d, l)
			want[d] = l
		}
		pick := func() digest.Digest {
			if rng.IntN(4) == 0 {
				return missing[rng.IntN(len(missing))]
			}
			return stored[rng.IntN(len(stored))]
		}
		for range 200 { // before the blobs are all listed: by digest
			set(pick())
		}
		index.Freeze()
		for range 2000 {
			set(pick())
		}
		layers.Compact()
		if got := maps.Collect(layers.All()); !maps.Equal(got, want) {
			t.Fatalf("seed %d: All has %d links, want %d", seed, len(got), len(want))
		}
		each := map[digest.Digest]bool{}
		for id := range layers.IDs() {
			each[blobs.Digest(id)] = true
		}
		for d := range layers.Unindexed() {
			if each[d] {
				t.Fatalf("seed %d: %s yielded by ID and by digest", seed, d)
			}
			each[d] = true
		}
		if len(each) != len(want) {
			t.Fatalf("seed %d: Each yielded %d links, want %d", seed, len(each), len(want))
		}
		for d := range want {
			if !each[d] {
				t.Fatalf("seed %d: Each missed %s", seed, d)
			}
		}
		if layers.Len() != len(want) {
			t.Fatalf("seed %d: Len %d, want %d", seed, layers.Len(), len(want))
		}
		for _, d := range append(stored[:50:50], missing[:50]...) {
			l, ok := layers.Get(d)
			if w, wok := want[d]; ok != wok || l != w || layers.Has(d) != wok {
				t.Fatalf("seed %d: Get(%s) = %v,%v; want %v,%v", seed, d, l, ok, w, wok)
			}
		}
		var byDigest int
		for d := range want {
			if !blobs.Has(d) {
				byDigest++
			}
		}
		if layers.others() < byDigest || layers.others() > byDigest+200 {
			t.Fatalf("seed %d: %d links by digest; want the %d to missing blobs and at most the 200 set before the listing ended", seed, layers.others(), byDigest)
		}
	}
}

// TestLinksRefuseUnsafeReads: IDs are read only once sorted, and
// never after the index moved them.
func TestLinksRefuseUnsafeReads(t *testing.T) {
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s: no panic", name)
			}
		}()
		f()
	}
	blobs := NewIndex()
	index := NewLinkIndex(blobs)
	a, b := digest.FromString("a"), digest.FromString("b")
	blobs.Set(a, Blob{})
	blobs.Set(b, Blob{})
	index.Freeze()
	layers := NewLinks(index)
	hi, lo := a, b
	if lo > hi {
		hi, lo = lo, hi
	}
	layers.Set(hi, Link{})
	layers.Set(lo, Link{}) // out of order: unsorted until Compact
	mustPanic("read before Compact", func() { layers.Has(a) })
	layers.Compact()
	if !layers.Has(a) || !layers.Has(b) {
		t.Fatal("links lost")
	}
	blobs.Delete(a)
	mustPanic("read after the blob map moved", func() { layers.Has(b) })
}
