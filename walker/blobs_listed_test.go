package walker

import (
	"context"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/regsweep/regsweep/blobindex"
	"github.com/regsweep/regsweep/internal/regtree"
	"github.com/regsweep/regsweep/storage"
)

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
		for _, links := range []*blobindex.Links{r.Layers, r.Revisions} {
			for d := range links.Unindexed() {
				if inv.Blobs.Has(d) {
					t.Errorf("%s: link to stored blob %s kept by digest", name, d)
				}
			}
			ids := 0
			for range links.IDs() {
				ids++
			}
			if ids == 0 && links.Len() > 0 {
				t.Errorf("%s: no link kept as an ID", name)
			}
		}
	}
	// A blob after the listing ended would move the IDs links hold.
	defer func() {
		if recover() == nil {
			t.Error("a blob added after BlobsListed did not panic")
		}
	}()
	inv.Add(Entry{Kind: KindBlob, Digest: digest.Digest("sha256:" + strings.Repeat("c", 64))})
	opts := DefaultOptions()
	opts.RepositoriesOnly = true
	opts.OnBlobsListed = func() { t.Error("OnBlobsListed called on a walk of the repositories only") }
	if err := Walk(context.Background(), mem, opts, func(Entry) error { return nil }); err != nil {
		t.Fatal(err)
	}
}
