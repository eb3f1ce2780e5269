package mark_test

import (
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/finding"
	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/mark"
	"github.com/regsweep/regsweep/walker"
)

// Harbor mode: the database names the roots; storage tags mean nothing.
func TestRootsReplaceTagsAndRevisions(t *testing.T) {
	f := newFixture(t)
	shared := f.blob()
	live := f.image(shared, f.blob())
	trashed := f.image(shared, f.blob())
	la, lb := f.blob(), f.blob()
	amd, arm := f.image(la), f.image(lb)
	list := f.index(amd, arm)
	sig := f.referrer(live)
	f.push("lib/app", "", live)
	f.push("lib/app", "old", trashed) // a storage tag the database no longer has
	f.push("lib/app", "", amd)
	f.push("lib/app", "", arm)
	f.push("lib/app", "", list)
	f.push("lib/app", "", sig)
	sys := f.image(f.blob())
	f.push("sys_harb0r/sys", "", sys)
	absent := f.absentBlob()

	roots := map[string][]digest.Digest{"lib/app": {live, list, absent}}
	res := f.run(mark.Options{Roots: func(repo string) ([]digest.Digest, bool, bool) {
		return roots[repo], repo == "sys_harb0r/sys", true
	}})
	manifestKept(t, res, "lib/app", live, list, amd, arm, sig)
	manifestNotKept(t, res, "lib/app", trashed)
	manifestKept(t, res, "sys_harb0r/sys", sys)
	layersKept(t, res, "lib/app", shared, la, lb)
	if res.KeptBlobs.Has(trashed) || res.KeptBlobs.Has(f.blobsOf(trashed)[2]) {
		t.Errorf("a manifest only a storage tag names is kept in Harbor mode")
	}
	want := []problemID{{finding.MissingRootManifest, "lib/app", absent}}
	if got := problemIDs(res.Problems); len(got) != 1 || got[0] != want[0] {
		t.Errorf("problems = %v, want %v", got, want)
	}
	if len(res.Blocking()) != 0 {
		t.Errorf("a root missing in storage blocks the sweep: %v", res.Blocking())
	}
}

// Harbor's system artifacts are bare blobs behind layer links: a
// repository whose roots are "all" keeps every link.
func TestRootsAllKeepsLayerLinks(t *testing.T) {
	f := newFixture(t)
	b := f.blob()
	f.inv.Add(walker.Entry{Kind: walker.KindLayerLink, Key: mustKey(t, layout.LayerLink{Repo: "sys_harb0r/v/r", Digest: b}), Repo: "sys_harb0r/v/r", Digest: b, ModTime: t0})
	res := f.run(mark.Options{Roots: func(repo string) ([]digest.Digest, bool, bool) { return nil, true, true }})
	layersKept(t, res, "sys_harb0r/v/r", b)
	if !res.KeptBlobs.Has(b) {
		t.Errorf("the system artifact's blob is not kept")
	}
}

// The plan's rechecks read references from the mark's own parse.
func TestReferencesFromTheMark(t *testing.T) {
	f := newFixture(t)
	l := f.blob()
	img := f.image(l)
	sig := f.referrer(img)
	list := f.index(img)
	f.push("r", "v1", list)
	f.push("r", "", img)
	f.push("r", "", sig)
	gone := f.absentBlob()
	f.rev("r", gone)
	res := f.run(mark.Options{})

	children, blobs, subject, ok, found := res.References(list)
	if !ok || !found || len(children) != 1 || children[0] != img || len(blobs) != 0 || subject != "" {
		t.Errorf("index: %v %v %q %v %v", children, blobs, subject, ok, found)
	}
	_, blobs, _, ok, found = res.References(img)
	if !ok || !found || len(blobs) != 2 || blobs[1] != l {
		t.Errorf("image: blobs %v ok %v found %v", blobs, ok, found)
	}
	if _, _, subject, _, _ = res.References(sig); subject != img {
		t.Errorf("referrer: subject %q, want %s", subject, img)
	}
	// Missing in the mark's walk: a recheck against a fresh walk reads it
	// again (it may have been pushed since); the mark's own walk is told
	// it references nothing.
	if _, blobs, _, ok, found = res.References(gone); found {
		t.Errorf("missing manifest answered from the old walk: ok %v found %v blobs %v", ok, found, blobs)
	}
	if _, _, _, _, found = res.References(f.absentBlob()); found {
		t.Errorf("a digest the mark never read is found")
	}
}
