package mark_test

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/finding"
	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/manifest"
	"github.com/regsweep/regsweep/mark"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/walker"
)

var (
	keepAll   = mark.Options{}
	untagged  = mark.Options{DeleteUntagged: true}
	bothModes = []mark.Options{keepAll, untagged}
)

// manifestKept: d is a kept manifest of repo, its _layers link is kept,
// and its blob is kept.
func manifestKept(t *testing.T, res *mark.Result, repo string, ds ...digest.Digest) {
	t.Helper()
	rr := res.Repos[repo]
	for _, d := range ds {
		if !rr.KeptManifests.Has(d) || !rr.KeptLayers.Has(d) || !res.KeptBlobs.Has(d) {
			t.Errorf("%s: manifest %s: kept manifest %v, layer %v, blob %v; want all", repo, d, rr.KeptManifests.Has(d), rr.KeptLayers.Has(d), res.KeptBlobs.Has(d))
		}
	}
}

func manifestNotKept(t *testing.T, res *mark.Result, repo string, ds ...digest.Digest) {
	t.Helper()
	rr := res.Repos[repo]
	for _, d := range ds {
		if rr.KeptManifests.Has(d) || rr.KeptLayers.Has(d) {
			t.Errorf("%s: manifest %s kept, want not", repo, d)
		}
	}
}

func layersKept(t *testing.T, res *mark.Result, repo string, ds ...digest.Digest) {
	t.Helper()
	for _, d := range ds {
		if !res.Repos[repo].KeptLayers.Has(d) || !res.KeptBlobs.Has(d) {
			t.Errorf("%s: blob %s: layer kept %v, blob kept %v; want both", repo, d, res.Repos[repo].KeptLayers.Has(d), res.KeptBlobs.Has(d))
		}
	}
}

func noProblems(t *testing.T, res *mark.Result) {
	t.Helper()
	for _, p := range res.Problems {
		t.Errorf("unexpected problem: %v", p)
	}
}

func onlyProblems(t *testing.T, res *mark.Result, want ...problemID) {
	t.Helper()
	got := problemIDs(res.Problems)
	want = problemIDs(func() []finding.Finding {
		var ps []finding.Finding
		for _, w := range want {
			ps = append(ps, finding.Finding{Kind: w.Kind, Repo: w.Repo, Digest: w.Digest})
		}
		return ps
	}())
	if !slices.Equal(got, want) {
		t.Errorf("problems:\n got %v\nwant %v\n(%v)", got, want, res.Problems)
	}
}

func TestSharedLayersAcrossRepos(t *testing.T) {
	f := newFixture(t)
	base, app, tool := f.blob(), f.blob(), f.blob()
	a := f.image(base, app)
	b := f.image(base, tool)
	f.push("library/app", "1.0", a)
	f.push("team/tool", "latest", b)
	for _, opts := range bothModes {
		res := f.run(opts)
		noProblems(t, res)
		manifestKept(t, res, "library/app", a)
		manifestKept(t, res, "team/tool", b)
		layersKept(t, res, "library/app", base, app)
		layersKept(t, res, "team/tool", base, tool)
		// Per-repository reachability: a link to tool in library/app
		// would not be needed.
		if res.Repos["library/app"].KeptLayers.Has(tool) || res.Repos["team/tool"].KeptLayers.Has(app) {
			t.Errorf("a layer of another repository is kept in this one")
		}
		want := append(append([]digest.Digest{a, b, base, app, tool}, f.blobsOf(a)[0]), f.blobsOf(b)[0])
		if res.KeptBlobs.Len() != len(want) {
			t.Errorf("KeptBlobs = %v, want %v", keys(res.KeptBlobs), want)
		}
	}
}

func TestRetagLeavesUntagged(t *testing.T) {
	f := newFixture(t)
	shared, old := f.blob(), f.blob()
	v1 := f.image(shared, old)
	v2 := f.image(shared)
	f.push("app", "latest", v1)
	f.push("app", "latest", v2) // re-tag: current moves, index keeps v1

	res := f.run(keepAll)
	noProblems(t, res)
	manifestKept(t, res, "app", v1, v2)
	layersKept(t, res, "app", shared, old)

	res = f.run(untagged)
	noProblems(t, res)
	manifestKept(t, res, "app", v2)
	manifestNotKept(t, res, "app", v1)
	layersKept(t, res, "app", shared)
	if res.KeptBlobs.Has(old) || res.KeptBlobs.Has(v1) || res.KeptBlobs.Has(f.blobsOf(v1)[0]) {
		t.Errorf("the untagged manifest or its own blobs are kept")
	}
}

func TestMultiArchUntaggedChildren(t *testing.T) {
	f := newFixture(t)
	la, lb := f.blob(), f.blob()
	amd, arm := f.image(la), f.image(lb)
	list := f.index(amd, arm)
	f.push("multi", "", amd) // children are pushed untagged, by digest
	f.push("multi", "", arm)
	f.push("multi", "v1", list)
	res := f.run(untagged)
	noProblems(t, res)
	manifestKept(t, res, "multi", list, amd, arm)
	layersKept(t, res, "multi", la, lb, f.blobsOf(amd)[0], f.blobsOf(arm)[0])
}

func TestNestedIndex(t *testing.T) {
	f := newFixture(t)
	l := f.blob()
	img := f.image(l)
	inner := f.index(img)
	outer := f.index(inner)
	f.push("n", "", img)
	f.push("n", "", inner)
	f.push("n", "top", outer)
	res := f.run(untagged)
	noProblems(t, res)
	manifestKept(t, res, "n", outer, inner, img)
	layersKept(t, res, "n", l)
}

func TestReferrers(t *testing.T) {
	f := newFixture(t)
	img := f.image(f.blob())
	sig := f.referrer(img)
	sigOfSig := f.referrer(sig) // a referrer of a referrer
	sbomBlob := f.blob()
	sbom := f.store(f.marshal(map[string]any{
		"mediaType":    manifest.MediaTypeOCIArtifact,
		"artifactType": "application/spdx+json",
		"blobs":        []desc{{MediaType: "application/spdx+json", Digest: sbomBlob, Size: 4000}},
		"subject":      desc{MediaType: manifest.MediaTypeOCIManifest, Digest: img, Size: 900},
	}))
	orphan := f.image(f.blob()) // untagged, so its referrer goes too
	orphanSig := f.referrer(orphan)
	f.push("signed", "v1", img)
	f.push("signed", "", sig)
	f.push("signed", "", sigOfSig)
	f.push("signed", "", sbom)
	f.push("signed", "", orphan)
	f.push("signed", "", orphanSig)
	// The same referrer in a repository where its subject is not kept.
	f.push("other", "", sig)

	res := f.run(untagged)
	noProblems(t, res)
	manifestKept(t, res, "signed", img, sig, sigOfSig, sbom)
	layersKept(t, res, "signed", sbomBlob)
	layersKept(t, res, "signed", f.blobsOf(sig)...)
	manifestNotKept(t, res, "signed", orphan, orphanSig)
	manifestNotKept(t, res, "other", sig)
	if res.KeptBlobs.Has(orphanSig) || res.KeptBlobs.Has(f.blobsOf(orphanSig)[1]) {
		t.Errorf("referrer of an unkept subject is kept")
	}

	res = f.run(keepAll)
	manifestKept(t, res, "signed", img, sig, sigOfSig, sbom, orphan, orphanSig)
	manifestKept(t, res, "other", sig)
}

func TestCosignTagConvention(t *testing.T) {
	f := newFixture(t)
	img := f.image(f.blob())
	sig := f.image(f.blob()) // cosign's tag convention: a plain manifest, no subject
	f.push("c", "v1", img)
	f.push("c", "sha256-"+img.Encoded()+".sig", sig)
	res := f.run(untagged)
	noProblems(t, res)
	manifestKept(t, res, "c", img, sig)
	layersKept(t, res, "c", f.blobsOf(sig)...)
}

func TestSchema1(t *testing.T) {
	f := newFixture(t)
	l1, l2 := f.blob(), f.blob()
	s1 := f.store([]byte(`{
   "schemaVersion": 1,
   "name": "old/app",
   "tag": "2015",
   "architecture": "amd64",
   "fsLayers": [{"blobSum": "` + l1 + `"}, {"blobSum": "` + l2 + `"}, {"blobSum": "` + l1 + `"}],
   "history": [{"v1Compatibility": "{}"}, {"v1Compatibility": "{}"}, {"v1Compatibility": "{}"}]
}`))
	f.push("old/app", "2015", s1)
	// A v2.0-era signature stored as a blob, linked under the revision.
	sigBlob := f.blob()
	f.inv.Add(walker.Entry{Kind: walker.KindSignatureLink, Repo: "old/app", Digest: sigBlob, Revision: s1,
		Key: mustKey(t, layout.SignatureLink{Repo: "old/app", Digest: s1, Signature: sigBlob})})
	res := f.run(untagged)
	noProblems(t, res)
	manifestKept(t, res, "old/app", s1)
	layersKept(t, res, "old/app", l1, l2)
	if !res.KeptBlobs.Has(sigBlob) {
		t.Errorf("schema1 signature blob of a kept revision not kept")
	}
}

func TestArtifactManifestTagged(t *testing.T) {
	f := newFixture(t)
	b1, b2 := f.blob(), f.blob()
	art := f.store(f.marshal(map[string]any{
		"mediaType":    manifest.MediaTypeOCIArtifact,
		"artifactType": "application/vnd.example.model",
		"blobs":        []desc{{Digest: b1, Size: 5}, {Digest: b2, Size: 6}},
	}))
	f.push("models", "v3", art)
	res := f.run(untagged)
	noProblems(t, res)
	manifestKept(t, res, "models", art)
	layersKept(t, res, "models", b1, b2)
}

func TestUnparseableBlocks(t *testing.T) {
	f := newFixture(t)
	bad := f.store([]byte(`{"schemaVersion": 2, "mediaType": "application/vnd.example.unknown+json"}`))
	junk := f.store([]byte("\x00\x01 not json"))
	f.push("u", "latest", bad)
	f.push("u", "", junk) // untagged: fail closed even with DeleteUntagged
	for _, opts := range bothModes {
		res := f.run(opts)
		onlyProblems(t, res, problemID{finding.UnparseableManifest, "u", bad}, problemID{finding.UnparseableManifest, "u", junk})
		if got := len(res.Blocking()); got != 2 {
			t.Errorf("Blocking() = %d problems, want 2", got)
		}
		for _, p := range res.Problems {
			if p.Key != mustKey(t, layout.BlobData{Digest: p.Digest}) {
				t.Errorf("problem key %q is not the blob data key", p.Key)
			}
			var pe *manifest.ParseError
			if !errors.As(p.Err, &pe) {
				t.Errorf("problem error %v is not a *manifest.ParseError", p.Err)
			}
		}
		manifestKept(t, res, "u", bad, junk)
	}
}

func TestMissingChildBlocks(t *testing.T) {
	f := newFixture(t)
	present := f.image(f.blob())
	missing := sha(f.imageBody(f.blob())) // never stored
	list := f.index(present, missing)
	f.push("m", "", present)
	f.push("m", "v1", list)
	res := f.run(untagged)
	onlyProblems(t, res, problemID{finding.MissingChildManifest, "m", missing})
	if len(res.Blocking()) != 1 {
		t.Errorf("missing child does not block")
	}
	manifestKept(t, res, "m", list, present, missing)
	if f.src.calls[missing] != 0 {
		t.Errorf("a manifest the walk did not list was read")
	}
}

func TestMissingLayerReportedForeignNot(t *testing.T) {
	f := newFixture(t)
	lost, foreignLayer := f.absentBlob(), f.absentBlob()
	img := f.store(f.marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     manifest.MediaTypeDockerSchema2,
		"config":        desc{Digest: f.blob(), Size: 10},
		"layers": []desc{
			{MediaType: "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", Digest: foreignLayer, Size: 1 << 30,
				URLs: []string{"https://mcr.microsoft.com/v2/windows/servercore/blobs/" + foreignLayer.String()}},
			{Digest: lost, Size: 10},
		},
	}))
	f.push("w", "ltsc", img)
	res := f.run(untagged)
	onlyProblems(t, res, problemID{finding.MissingBlobReference, "w", lost})
	if len(res.Blocking()) != 0 {
		t.Errorf("a missing layer blocks: %v", res.Blocking())
	}
	layersKept(t, res, "w", lost, foreignLayer) // links of either are still the image's
}

func TestBrokenTagCurrentKeepsIndex(t *testing.T) {
	for _, corrupt := range []bool{true, false} {
		f := newFixture(t)
		v1, v2, other := f.image(f.blob()), f.image(f.blob()), f.image(f.blob())
		f.rev("t", v1, v2, other)
		for _, d := range []digest.Digest{v1, v2} {
			f.inv.Add(walker.Entry{Kind: walker.KindTagIndexLink, Repo: "t", Tag: "latest", Digest: d,
				Key: mustKey(t, layout.TagIndexLink{Repo: "t", Tag: "latest", Digest: d})})
		}
		currentKey := mustKey(t, layout.TagCurrentLink{Repo: "t", Tag: "latest"})
		if corrupt { // as the walker reports an empty current link
			f.inv.Add(walker.Entry{Kind: walker.KindTagCurrentLink, Repo: "t", Tag: "latest", Key: currentKey,
				Corrupt: true, CorruptReason: "link is empty"})
		}
		res := f.run(untagged)
		if !corrupt {
			// No current link at all: the registry serves no such tag (a tag
			// delete or a sweep was cut off), so its index is only history.
			onlyProblems(t, res)
			manifestNotKept(t, res, "t", v1, v2, other)
			continue
		}
		onlyProblems(t, res, problemID{finding.CorruptLink, "t", ""})
		if b := res.Blocking(); len(b) != 1 || b[0].Key != currentKey {
			t.Errorf("corrupt=%v: Blocking() = %v", corrupt, b)
		}
		manifestKept(t, res, "t", v1, v2)
		manifestNotKept(t, res, "t", other)
	}
}

func TestCorruptLinksFromInventory(t *testing.T) {
	f := newFixture(t)
	img := f.image(f.blob())
	f.push("r", "v", img)
	layer := f.blob()
	key := mustKey(t, layout.LayerLink{Repo: "r", Digest: layer})
	f.inv.Add(walker.Entry{Kind: walker.KindLayerLink, Repo: "r", Digest: layer, Key: key, Corrupt: true,
		CorruptReason: "link holds sha256:00 but its path names " + layer.String()})
	res := f.run(untagged)
	onlyProblems(t, res, problemID{finding.CorruptLink, "r", layer})
	if b := res.Blocking(); len(b) != 1 || b[0].Key != key {
		t.Errorf("Blocking() = %v", b)
	}
}

// A problem that breaks pulls names the tags of its repository whose
// manifest tree reaches it (through an index too), and only those; the
// explanation stays its cause.
func TestProblemsNameTheTagsTheyBreak(t *testing.T) {
	f := newFixture(t)
	lost, missingChild := f.absentBlob(), f.absentBlob()
	broken := f.image(f.blob(), lost)
	list := f.index(broken, f.image(f.blob()), missingChild)
	f.push("r", "v1", broken)
	f.push("r", "multi", list)
	f.push("r", "ok", f.image(f.blob()))
	f.push("r", "gone", f.absentBlob())
	res := f.run(untagged)
	tags := map[finding.Kind][]string{}
	for _, p := range res.Problems {
		tags[p.Kind] = p.Tags
		if len(p.Tags) > 0 && strings.Contains(p.Explanation, "tags") {
			t.Errorf("%s: the explanation names the tags: %q", p.Kind, p.Explanation)
		}
	}
	want := map[finding.Kind][]string{
		finding.MissingBlobReference:  {"multi", "v1"},
		finding.MissingChildManifest:  {"multi"},
		finding.MissingTaggedManifest: {"gone"},
		finding.DanglingRevisionLink:  nil, // not one of those that name tags
	}
	if !reflect.DeepEqual(tags, want) {
		t.Errorf("tags named %v, want %v", tags, want)
	}
}

func TestDanglingAndMissingTagged(t *testing.T) {
	f := newFixture(t)
	gone := sha(f.imageBody(f.blob()))
	goneTagged := sha(f.imageBody(f.blob()))
	f.push("d", "", gone)
	f.push("d", "v", goneTagged)
	res := f.run(keepAll)
	onlyProblems(t, res,
		problemID{finding.DanglingRevisionLink, "d", gone},
		problemID{finding.DanglingRevisionLink, "d", goneTagged},
		problemID{finding.MissingTaggedManifest, "d", goneTagged})
	if len(res.Blocking()) != 0 {
		t.Errorf("dangling links block: %v", res.Blocking())
	}
	for _, p := range res.Problems {
		want := mustKey(t, layout.RevisionLink{Repo: "d", Digest: p.Digest})
		if p.Kind == finding.MissingTaggedManifest {
			want = mustKey(t, layout.TagCurrentLink{Repo: "d", Tag: "v"})
		}
		if p.Key != want {
			t.Errorf("%s key %q, want %q", p.Kind, p.Key, want)
		}
	}
	// Kept, so that their links are not swept as unused.
	manifestKept(t, res, "d", gone, goneTagged)

	res = f.run(untagged)
	manifestKept(t, res, "d", goneTagged)
	manifestNotKept(t, res, "d", gone)
}

func TestManifestReadOnceAcrossRepos(t *testing.T) {
	f := newFixture(t)
	amd, arm := f.image(f.blob()), f.image(f.blob())
	list := f.index(amd, arm)
	for _, repo := range []string{"a", "b/c", "d"} {
		f.push(repo, "", amd)
		f.push(repo, "", arm)
		f.push(repo, "v1", list)
		f.push(repo, "v1.0", list)
	}
	res := f.run(mark.Options{DeleteUntagged: true, Concurrency: 4})
	noProblems(t, res)
	for _, d := range []digest.Digest{amd, arm, list} {
		if n := f.src.calls[d]; n != 1 {
			t.Errorf("manifest %s read %d times, want 1", d, n)
		}
	}
	if n := f.src.totalCalls(); n != 3 {
		t.Errorf("%d reads, want 3", n)
	}
}

func TestReadErrorEndsRun(t *testing.T) {
	f := newFixture(t)
	img := f.image(f.blob())
	f.push("r", "v", img)
	f.src.fail[img] = &storage.PathError{Op: "get", Driver: "s3", Key: "k", Err: storage.ErrAccessDenied}
	_, err := mark.Run(context.Background(), f.inv, f.src, keepAll)
	if !errors.Is(err, storage.ErrAccessDenied) || !strings.Contains(err.Error(), img.String()) {
		t.Fatalf("Run error = %v; want access denied naming %s", err, img)
	}
}

func TestListedButUnreadableEndsRun(t *testing.T) {
	f := newFixture(t)
	img := f.image(f.blob())
	f.push("r", "v", img)
	delete(f.src.blobs, img) // deleted after the walk listed it
	_, err := mark.Run(context.Background(), f.inv, f.src, keepAll)
	if err == nil || !storage.IsNotFound(err) || !strings.Contains(err.Error(), img.String()) {
		t.Fatalf("Run error = %v; want not found naming %s", err, img)
	}
}

func TestCancelled(t *testing.T) {
	f := newFixture(t)
	f.push("r", "v", f.image(f.blob()))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := mark.Run(ctx, f.inv, f.src, keepAll); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run error = %v, want context.Canceled", err)
	}
}

func TestEveryRepositoryHasAResult(t *testing.T) {
	f := newFixture(t)
	f.inv.Repo("empty")
	res := f.run(untagged)
	if rr := res.Repos["empty"]; rr == nil || rr.KeptManifests.Len() != 0 || rr.KeptLayers.Len() != 0 {
		t.Fatalf("Repos[empty] = %+v", rr)
	}
}
