package walker

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/internal/regtree"
	"github.com/regsweep/regsweep/storage"
)

// TestLinkMapAgreesWithAMap: links set before and after the blobs are
// listed, to listed blobs and to missing ones, out of order and repeated,
// read back as a plain map holds them, and links to listed blobs take no
// digest once the blobs are listed.
func TestLinkMapAgreesWithAMap(t *testing.T) {
	for seed := range uint64(6) {
		rng := rand.New(rand.NewPCG(seed, 2))
		inv := NewInventory()
		var stored, missing []digest.Digest
		for i := range 3000 {
			d := digest.FromString(fmt.Sprint(seed, i))
			if i%5 == 0 {
				missing = append(missing, d)
				continue
			}
			stored = append(stored, d)
			inv.Add(Entry{Kind: KindBlob, Digest: d, Size: int64(i)})
		}
		r := inv.Repo("r")
		want := map[digest.Digest]Link{}
		// set stores a link, and wants it back as stored: a link kept as a
		// position has its mtime clamped to 32 bits.
		set := func(d digest.Digest) {
			// Mostly times that fit 32 bits, some that do not.
			l := Link{ModTime: rng.Int64N(1 << 32)}
			if rng.IntN(20) == 0 {
				l.ModTime = -rng.Int64N(1<<40) + rng.Int64N(1<<41)
			}
			if inv.links.frozen && inv.Blobs.Has(d) {
				l.ModTime = int64(clampMTime(l.ModTime)) // kept as a position
			}
			r.Layers.Set(d, l)
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
		inv.BlobsListed()
		for range 2000 {
			set(pick())
		}
		inv.Compact()
		if got := maps.Collect(r.Layers.All()); !maps.Equal(got, want) {
			t.Fatalf("seed %d: All has %d links, want %d", seed, len(got), len(want))
		}
		each := map[digest.Digest]bool{}
		for pos, d := range r.Layers.Each() {
			if (pos >= 0) == (d != "") {
				t.Fatalf("seed %d: Each yielded position %d with digest %q", seed, pos, d)
			}
			if pos >= 0 {
				d = inv.Blobs.DigestAt(pos)
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
		if r.Layers.Len() != len(want) {
			t.Fatalf("seed %d: Len %d, want %d", seed, r.Layers.Len(), len(want))
		}
		for _, d := range append(stored[:50:50], missing[:50]...) {
			l, ok := r.Layers.Get(d)
			if w, wok := want[d]; ok != wok || l != w || r.Layers.Has(d) != wok {
				t.Fatalf("seed %d: Get(%s) = %v,%v; want %v,%v", seed, d, l, ok, w, wok)
			}
		}
		var byDigest int
		for d := range want {
			if !inv.Blobs.Has(d) {
				byDigest++
			}
		}
		if r.Layers.others() < byDigest || r.Layers.others() > byDigest+200 {
			t.Fatalf("seed %d: %d links by digest; want the %d to missing blobs and at most the 200 set before the listing ended", seed, r.Layers.others(), byDigest)
		}
	}
}

// TestLinkMapRefusesUnsafeReads: positions are read only once sorted, and
// never after the blob map moved them.
func TestLinkMapRefusesUnsafeReads(t *testing.T) {
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s: no panic", name)
			}
		}()
		f()
	}
	inv := NewInventory()
	a, b := digest.FromString("a"), digest.FromString("b")
	inv.Add(Entry{Kind: KindBlob, Digest: a})
	inv.Add(Entry{Kind: KindBlob, Digest: b})
	inv.BlobsListed()
	r := inv.Repo("r")
	hi, lo := a, b
	if lo > hi {
		hi, lo = lo, hi
	}
	r.Layers.Set(hi, Link{})
	r.Layers.Set(lo, Link{}) // out of order: unsorted until Compact
	mustPanic("read before Compact", func() { r.Layers.Has(a) })
	inv.Compact()
	if !r.Layers.Has(a) || !r.Layers.Has(b) {
		t.Fatal("links lost")
	}
	mustPanic("a blob after BlobsListed", func() { inv.Add(Entry{Kind: KindBlob, Digest: digest.FromString("c")}) })
	inv.Blobs.Delete(a)
	mustPanic("read after the blob map moved", func() { r.Layers.Has(b) })
}

// TestBlobsAreListedBeforeRepositories: every blob entry reaches fn before
// OnBlobsListed, which comes once and before any repository entry, sharded
// or not; Collect then keeps every link to a stored blob as a position.
func TestBlobsAreListedBeforeRepositories(t *testing.T) {
	mem := storage.NewMemory(nil, nil)
	if _, err := regtree.Generate(context.Background(), mem, regtree.Spec{Seed: 1, Repositories: 12, ImagesPerRepo: 4, TagsPerRepo: 2, LayersPerImg: 3,
		SharedLayers: 3, OrphanBlobs: 5, MultiArch: true, Uploads: 2}, 8); err != nil {
		t.Fatal(err)
	}
	for _, parallel := range []bool{false, true} {
		opts := DefaultOptions()
		opts.Parallel = parallel
		calls, blobsAfter, reposBefore := 0, 0, 0
		opts.OnBlobsListed = func() { calls++ }
		err := Walk(context.Background(), mem, opts, func(e Entry) error {
			switch {
			case e.Kind == KindBlob && calls > 0:
				blobsAfter++
			case e.Repo != "" && calls == 0:
				reposBefore++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if calls != 1 || blobsAfter != 0 || reposBefore != 0 {
			t.Errorf("parallel %v: OnBlobsListed called %d times; %d blobs after it, %d repository entries before it", parallel, calls, blobsAfter, reposBefore)
		}
	}
	inv, err := Collect(context.Background(), mem, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range inv.Repositories {
		for _, links := range []*LinkMap{r.Layers, r.Revisions} {
			for pos, d := range links.Each() {
				if pos < 0 && inv.Blobs.Has(d) {
					t.Errorf("%s: link to stored blob %s kept by digest", name, d)
				}
			}
			if len(links.pos) == 0 && links.Len() > 0 {
				t.Errorf("%s: no link kept as a position", name)
			}
		}
	}
	opts := DefaultOptions()
	opts.RepositoriesOnly = true
	opts.OnBlobsListed = func() { t.Error("OnBlobsListed called on a walk of the repositories only") }
	if err := Walk(context.Background(), mem, opts, func(Entry) error { return nil }); err != nil {
		t.Fatal(err)
	}
}
