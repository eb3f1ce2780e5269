// Package storecheck holds the checks tests make of a whole registry
// after a run: every tag pulls, every link points at a blob. Tests of
// sweep, gc and the model share it. Test support only: it may not be
// imported by product code, and it never writes.
package storecheck

import (
	"context"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/manifest"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/walker"
)

// Intact asserts that every tag resolves to a manifest whose whole tree
// is in storage and linked in its repository, and that no link points at
// a missing blob; it returns the walk it checked.
func Intact(t testing.TB, d storage.Driver) *walker.Inventory {
	t.Helper()
	ctx := context.Background()
	inv, err := walker.Collect(ctx, d, walker.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range inv.Repositories {
		for d := range r.Revisions.All() {
			if !inv.Blobs.Has(d) {
				t.Errorf("%s: dangling revision link %s", name, d)
			}
		}
		for d := range r.Layers.All() {
			if !inv.Blobs.Has(d) {
				t.Errorf("%s: dangling layer link %s", name, d)
			}
		}
		for tag, tg := range r.Tags {
			if tg.HasCurrent {
				Pullable(t, d, inv, name, tag, tg.Current)
			}
		}
	}
	return inv
}

// Pullable asserts that manifest m of repo is whole: its blob and
// revision link, and every blob and child it references, stored and
// linked in repo. tag names it in the errors.
func Pullable(t testing.TB, d storage.Driver, inv *walker.Inventory, repo, tag string, m digest.Digest) {
	t.Helper()
	r := inv.Repositories[repo]
	if !r.Revisions.Has(m) || !inv.Blobs.Has(m) {
		t.Errorf("%s:%s: manifest %s is gone", repo, tag, m)
		return
	}
	key, _ := layout.Path(layout.BlobData{Digest: m})
	body, err := d.Get(context.Background(), key, 4<<20)
	if err != nil {
		t.Errorf("%s:%s: %v", repo, tag, err)
		return
	}
	man, err := manifest.Parse(body)
	if err != nil {
		t.Errorf("%s:%s: %v", repo, tag, err)
		return
	}
	for _, b := range man.Blobs {
		if !inv.Blobs.Has(b) || !r.Layers.Has(b) {
			t.Errorf("%s:%s: blob %s of %s is gone or unlinked", repo, tag, b, m)
		}
	}
	for _, c := range man.Children {
		Pullable(t, d, inv, repo, tag+"@child", c)
	}
}
