package mark_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/finding"
	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/manifestcache"
	"github.com/regsweep/regsweep/mark"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/walker"
)

// registry writes a small registry into a memory store, as distribution
// lays it out, and returns the store and the manifests it holds.
func registry(t *testing.T) (*storage.Memory, *storage.Requests, []digest.Digest) {
	t.Helper()
	reqs := &storage.Requests{}
	mem := storage.NewMemory(nil, reqs)
	ctx := context.Background()
	f := newFixture(t) // used only to build bodies
	put := func(s layout.Spec, b []byte) {
		if err := mem.Put(ctx, mustKey(t, s), b); err != nil {
			t.Fatal(err)
		}
	}
	putBlob := func(b []byte) digest.Digest {
		d := sha(b)
		put(layout.BlobData{Digest: d}, b)
		return d
	}
	layer, config := putBlob([]byte("layer bytes")), putBlob([]byte(`{"architecture":"amd64"}`))
	amdBody := f.marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": desc{Digest: config, Size: 24}, "layers": []desc{{Digest: layer, Size: 11}}})
	amd := putBlob(amdBody)
	list := putBlob(f.indexBody(amd))
	for _, d := range []digest.Digest{amd, list} {
		put(layout.RevisionLink{Repo: "app", Digest: d}, []byte(d))
	}
	put(layout.LayerLink{Repo: "app", Digest: layer}, []byte(layer))
	put(layout.LayerLink{Repo: "app", Digest: config}, []byte(config))
	put(layout.TagCurrentLink{Repo: "app", Tag: "v1"}, []byte(list))
	put(layout.TagIndexLink{Repo: "app", Tag: "v1", Digest: list}, []byte(list))
	return mem, reqs, []digest.Digest{amd, list}
}

func collect(t *testing.T, d storage.Driver) *walker.Inventory {
	t.Helper()
	inv, err := walker.Collect(context.Background(), d, walker.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func TestStorageSourceCache(t *testing.T) {
	mem, reqs, manifests := registry(t)
	inv := collect(t, mem)
	cache := filepath.Join(t.TempDir(), "manifests")
	ctx := context.Background()

	src := mark.StorageSource(mem, cache, 0)
	res, err := mark.Run(ctx, inv, src, mark.Options{DeleteUntagged: true})
	if err != nil {
		t.Fatal(err)
	}
	noProblems(t, res)
	manifestKept(t, res, "app", manifests...)
	if src.Reads() != 2 || src.CacheHits() != 0 || src.CacheErrors() != 0 {
		t.Fatalf("first run: %d reads, %d hits, %d cache errors; want 2, 0, 0", src.Reads(), src.CacheHits(), src.CacheErrors())
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	if c := cachedDigests(t, cache, manifests); len(c) != len(manifests) {
		t.Fatalf("the cache holds %v after the first run, want %v", c, manifests)
	}

	// A second run over the same cache reads no manifest from storage.
	before := reqs.Snapshot()["get"]
	src2 := mark.StorageSource(mem, cache, 0)
	res2, err := mark.Run(ctx, inv, src2, mark.Options{DeleteUntagged: true})
	if err != nil {
		t.Fatal(err)
	}
	if n := reqs.Snapshot()["get"] - before; n != 0 || src2.Reads() != 0 || src2.CacheHits() != 2 {
		t.Fatalf("second run: %d GETs, %d reads, %d hits; want 0, 0, 2", n, src2.Reads(), src2.CacheHits())
	}
	if !slices.Equal(keys(res2.KeptBlobs), keys(res.KeptBlobs)) {
		t.Fatalf("cached run kept %v, first run %v", keys(res2.KeptBlobs), keys(res.KeptBlobs))
	}

	src2.Close()

	// A corrupt cache entry is ignored, re-fetched and repaired.
	packs, _ := filepath.Glob(filepath.Join(cache, "*.pack"))
	if len(packs) != 1 {
		t.Fatalf("packs %v, want one", packs)
	}
	b, err := os.ReadFile(packs[0])
	if err != nil {
		t.Fatal(err)
	}
	first, err := mem.Get(ctx, mustKey(t, layout.BlobData{Digest: manifests[0]}), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(b, first)
	b[at+1] ^= 0xff
	if err := os.WriteFile(packs[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	before = reqs.Snapshot()["get"]
	src3 := mark.StorageSource(mem, cache, 0)
	res3, err := mark.Run(ctx, inv, src3, mark.Options{DeleteUntagged: true})
	if err != nil {
		t.Fatal(err)
	}
	if n := reqs.Snapshot()["get"] - before; n != 1 || src3.Reads() != 1 || src3.CacheHits() != 1 {
		t.Fatalf("corrupt cache: %d GETs, %d reads, %d hits; want 1, 1, 1", n, src3.Reads(), src3.CacheHits())
	}
	if !slices.Equal(keys(res3.KeptBlobs), keys(res.KeptBlobs)) {
		t.Fatalf("with a corrupt cache entry kept %v, want %v", keys(res3.KeptBlobs), keys(res.KeptBlobs))
	}
	if err := src3.Close(); err != nil {
		t.Fatal(err)
	}
	src4 := mark.StorageSource(mem, cache, 0)
	defer src4.Close()
	if _, err := mark.Run(ctx, inv, src4, mark.Options{DeleteUntagged: true}); err != nil {
		t.Fatal(err)
	}
	if src4.Reads() != 0 || src4.CacheHits() != 2 {
		t.Fatalf("after the repair: %d reads, %d hits; want 0, 2", src4.Reads(), src4.CacheHits())
	}
}

// cachedDigests is which of ds a manifest cache in dir has a record of,
// whether or not it verifies: a bad manifest must not be written at all.
func cachedDigests(t *testing.T, dir string, ds []digest.Digest) []digest.Digest {
	t.Helper()
	c, err := manifestcache.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var in []digest.Digest
	for _, d := range ds {
		if c.Has(d) {
			in = append(in, d)
		}
	}
	return in
}

func TestStorageSourceNoCache(t *testing.T) {
	mem, _, manifests := registry(t)
	src := mark.StorageSource(mem, "", 0)
	for range 2 {
		if _, err := src.Manifest(context.Background(), manifests[0]); err != nil {
			t.Fatal(err)
		}
	}
	if src.Reads() != 2 || src.CacheHits() != 0 {
		t.Fatalf("%d reads, %d hits; want 2, 0", src.Reads(), src.CacheHits())
	}
	missing := sha([]byte("nothing"))
	if _, err := src.Manifest(context.Background(), missing); !storage.IsNotFound(err) {
		t.Fatalf("missing manifest: %v, want not found", err)
	}
}

func TestStorageSourceDigestMismatch(t *testing.T) {
	mem, _, manifests := registry(t)
	ctx := context.Background()
	key := mustKey(t, layout.BlobData{Digest: manifests[0]})
	if err := mem.Put(ctx, key, []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`)); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	src := mark.StorageSource(mem, cache, 0)
	_, err := src.Manifest(ctx, manifests[0])
	var mm *mark.DigestMismatchError
	if !errors.As(err, &mm) || mm.Digest != manifests[0] || mm.Key != key {
		t.Fatalf("Manifest error = %v, want a mismatch naming %s at %s", err, manifests[0], key)
	}
	src.Close()
	if c := cachedDigests(t, cache, manifests[:1]); len(c) != 0 {
		t.Fatal("a mismatching manifest was cached")
	}
	src = mark.StorageSource(mem, cache, 0)
	defer src.Close()

	// Run reports it as a blocking unparseable manifest: its references
	// are unknown.
	res, err := mark.Run(ctx, collect(t, mem), src, mark.Options{DeleteUntagged: true})
	if err != nil {
		t.Fatal(err)
	}
	onlyProblems(t, res, problemID{finding.UnparseableManifest, "app", manifests[0]})
	if b := res.Blocking(); len(b) != 1 || !errors.As(b[0].Err, &mm) || b[0].Key != key {
		t.Fatalf("Blocking() = %v", b)
	}
}

func TestStorageSourceTooLarge(t *testing.T) {
	mem, _, manifests := registry(t)
	src := mark.StorageSource(mem, "", 64) // smaller than any manifest here
	res, err := mark.Run(context.Background(), collect(t, mem), src, mark.Options{DeleteUntagged: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.Blocking() {
		if p.Kind != finding.UnparseableManifest || !errors.Is(p.Err, storage.ErrTooLarge) {
			t.Errorf("problem %v", p)
		}
	}
	// Both: the untagged child is kept because an unreadable revision
	// could be a referrer of anything.
	if len(res.Blocking()) != 2 {
		t.Errorf("Blocking() = %v", res.Blocking())
	}
	manifestKept(t, res, "app", manifests...)
}

// A mark extended over a later walk takes what the earlier one parsed,
// reads what it did not, and never takes "missing" from it: a manifest
// missing at one recheck may be pushed before the next (issue 15, item 2).
func TestExtendReadsAgainWhatWasMissing(t *testing.T) {
	ctx := context.Background()
	mem, reqs, ds := registry(t)
	amd := ds[0]
	key := mustKey(t, layout.BlobData{Digest: amd})
	body, err := mem.Get(ctx, key, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mem.Delete(ctx, []string{key}); err != nil {
		t.Fatal(err)
	}
	inv := collect(t, mem)
	src := mark.StorageSource(mem, "", 0)
	res, err := mark.Run(ctx, inv, src, mark.Options{DeleteUntagged: true})
	if err != nil {
		t.Fatal(err)
	}
	recheck := func() *mark.Result {
		t.Helper()
		opts := walker.DefaultOptions()
		opts.RepositoriesOnly, opts.Blobs = true, inv.Blobs
		fresh, err := walker.Collect(ctx, mem, opts)
		if err != nil {
			t.Fatal(err)
		}
		kept, err := res.Extend(ctx, fresh, src, mark.Options{DeleteUntagged: true})
		if err != nil {
			t.Fatal(err)
		}
		return kept
	}
	config := digest.FromBytes([]byte(`{"architecture":"amd64"}`))
	if kept := recheck(); kept.KeptBlobs.Has(config) {
		t.Fatalf("a missing manifest's config is kept")
	}
	if err := mem.Put(ctx, key, body); err != nil {
		t.Fatal(err)
	}
	if kept := recheck(); !kept.KeptBlobs.Has(config) || !kept.KeptBlobs.Has(amd) {
		t.Fatalf("the manifest pushed since, or its config, is not kept")
	}
	gets := reqs.Snapshot()["get"]
	if kept := recheck(); !kept.KeptBlobs.Has(config) || reqs.Snapshot()["get"] != gets {
		t.Errorf("a manifest read and parsed once is read again")
	}
}
