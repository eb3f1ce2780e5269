package mark_test

import (
	"context"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/mark"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/walker"
)

// collectPrefetching walks d as gc does: each revision link's manifest
// is queued for the prefetch as the walk finds it. gc closes the prefetch
// at once (the mark reads what is left); the tests let it finish first.
func collectPrefetching(t *testing.T, d storage.Driver, p *mark.Prefetch) *walker.Inventory {
	t.Helper()
	inv, err := walker.CollectObserving(context.Background(), d, walker.DefaultOptions(), func(inv *walker.Inventory, e walker.Entry) {
		if e.Kind == walker.KindRevisionLink {
			p.Add(inv, e.Digest)
		}
	})
	p.Wait()
	p.Close()
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func TestPrefetchFillsTheCacheAndReadsEachManifestOnce(t *testing.T) {
	mem, reqs, manifests := registry(t)
	ctx := context.Background()
	// The same manifests linked from a second repository, and a revision
	// link whose manifest blob is not there: neither is read twice or at all.
	for _, d := range manifests {
		if err := mem.Put(ctx, mustKey(t, layout.RevisionLink{Repo: "copy", Digest: d}), []byte(d)); err != nil {
			t.Fatal(err)
		}
	}
	missing := sha([]byte("never stored"))
	if err := mem.Put(ctx, mustKey(t, layout.RevisionLink{Repo: "copy", Digest: missing}), []byte(missing)); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	src := mark.StorageSource(mem, cache, 0)
	before := reqs.Snapshot()["get"]
	inv := collectPrefetching(t, mem, src.Prefetch(ctx, 4))
	gets := reqs.Snapshot()["get"] - before
	if src.Reads() != int64(len(manifests)) || gets != int64(len(manifests)) {
		t.Fatalf("prefetch: %d reads, %d GETs; want one of each per manifest (%d)", src.Reads(), gets, len(manifests))
	}
	defer src.Close()
	if err := src.SaveCache(); err != nil {
		t.Fatal(err)
	}
	if c := cachedDigests(t, cache, manifests); len(c) != len(manifests) {
		t.Fatalf("the cache holds %v after the walk, want %v", c, manifests)
	}
	// The mark reads every manifest from the cache and none from storage.
	res, err := mark.Run(ctx, inv, src, mark.Options{})
	if err != nil {
		t.Fatal(err)
	}
	manifestKept(t, res, "app", manifests...)
	if src.Reads() != int64(len(manifests)) || src.CacheHits() != int64(len(manifests)) || reqs.Snapshot()["get"]-before != gets {
		t.Fatalf("mark after prefetch: %d reads, %d cache hits, %d GETs", src.Reads(), src.CacheHits(), reqs.Snapshot()["get"]-before)
	}
	// The counts say the cache hits were this run's prefetch, not an
	// earlier run's cache.
	n := int64(len(manifests))
	if c := src.Counts(); c != (mark.SourceCounts{Prefetched: n, PrefetchHits: n}) {
		t.Errorf("counts after a first run: %+v, want %d prefetched and served from the cache, nothing else", c, n)
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	// A second run finds them in the cache an earlier run filled, and its
	// prefetch reads nothing.
	src2 := mark.StorageSource(mem, cache, 0)
	defer src2.Close()
	inv2 := collectPrefetching(t, mem, src2.Prefetch(ctx, 4))
	if _, err := mark.Run(ctx, inv2, src2, mark.Options{}); err != nil {
		t.Fatal(err)
	}
	if c := src2.Counts(); c != (mark.SourceCounts{Cached: n}) {
		t.Errorf("counts after a second run: %+v, want %d from the cache of earlier runs", c, n)
	}
}

// A manifest blob whose content is not its digest is not cached by the
// prefetch, and the mark still reads it and reports it.
func TestPrefetchLeavesABadManifestToTheMark(t *testing.T) {
	mem, _, manifests := registry(t)
	ctx := context.Background()
	amd := manifests[0]
	if err := mem.Put(ctx, mustKey(t, layout.BlobData{Digest: amd}), []byte(`{"schemaVersion":2,"not":"the same bytes"}`)); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	src := mark.StorageSource(mem, cache, 0)
	inv := collectPrefetching(t, mem, src.Prefetch(ctx, 2))
	defer src.Close()
	if err := src.SaveCache(); err != nil {
		t.Fatal(err)
	}
	if c := cachedDigests(t, cache, manifests); len(c) != len(manifests)-1 || slices.Contains(c, amd) {
		t.Fatalf("the cache holds %v after the walk, want all of %v but %s", c, manifests, amd)
	}
	res, err := mark.Run(ctx, inv, src, mark.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !hasBlockingProblem(res, amd) {
		t.Fatalf("mark after prefetch: no blocking problem for the corrupt manifest %s: %+v", amd, res.Problems)
	}
}

func TestPrefetchWithoutACacheDoesNothing(t *testing.T) {
	mem, reqs, _ := registry(t)
	src := mark.StorageSource(mem, "", 0)
	p := src.Prefetch(context.Background(), 4)
	if p != nil {
		t.Fatal("a prefetch without a cache directory would read manifests only to drop them")
	}
	before := reqs.Snapshot()["get"]
	collectPrefetching(t, mem, p) // Add and Close on nil
	if got := reqs.Snapshot()["get"] - before; got != 0 || src.Reads() != 0 {
		t.Fatalf("%d GETs, %d reads without a cache", got, src.Reads())
	}
}

func hasBlockingProblem(res *mark.Result, d digest.Digest) bool {
	for _, p := range res.Blocking() {
		if p.Digest == d {
			return true
		}
	}
	return false
}

// gc closes the prefetch as soon as the walk ends: whatever it had not
// read yet is read by the mark, and no manifest is read twice.
func TestPrefetchClosedEarlyLeavesTheRestToTheMark(t *testing.T) {
	for range 20 {
		mem, reqs, manifests := registry(t)
		ctx := context.Background()
		src := mark.StorageSource(mem, t.TempDir(), 0)
		before := reqs.Snapshot()["get"]
		p := src.Prefetch(ctx, 1)
		inv, err := walker.CollectObserving(ctx, mem, walker.DefaultOptions(), func(inv *walker.Inventory, e walker.Entry) {
			if e.Kind == walker.KindRevisionLink {
				p.Add(inv, e.Digest)
			}
		})
		p.Close()
		if err != nil {
			t.Fatal(err)
		}
		res, err := mark.Run(ctx, inv, src, mark.Options{})
		if err != nil {
			t.Fatal(err)
		}
		manifestKept(t, res, "app", manifests...)
		if gets := reqs.Snapshot()["get"] - before; gets != int64(len(manifests)) || src.Reads() != int64(len(manifests)) {
			t.Fatalf("%d GETs, %d reads for %d manifests", gets, src.Reads(), len(manifests))
		}
	}
}
