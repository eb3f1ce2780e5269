package reports

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/regsweep/regsweep/mark"
	"github.com/regsweep/regsweep/sweep"
)

// gc's text says where the space a plan frees comes from (the
// repositories it frees most in) and where the manifests came from.
func TestGCTextExplainsItsNumbers(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	plan := &sweep.Plan{Stats: sweep.Stats{Blobs: 30, TotalBlobs: 100, Bytes: 6 << 20}}
	r := BuildGC(plan, nil, nil, true, NewStorageInfo("filesystem", "filesystem:///r"), map[string]int64{}, 26, 16, start, start.Add(time.Second))
	r.Summary = &Summary{Accounting: Accounting{Repositories: []RepositorySpace{
		{Name: "a/small", Space: Space{ReclaimableBytes: 1 << 20}},
		{Name: "b/big", Space: Space{ReclaimableBytes: 4 << 20, Uploads: 2}},
		{Name: "c/nothing"},
		{Name: "d/mid", Space: Space{ReclaimableBytes: 2 << 20}},
	}}}
	var b bytes.Buffer
	if err := r.WriteTextOpts(&b, GCTextOptions{Top: 2}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	i, j := strings.Index(out, "b/big"), strings.Index(out, "d/mid")
	if !strings.Contains(out, "Frees the most in (top 2 of 3 repositories") || i < 0 || j < i || strings.Contains(out, "a/small") || strings.Contains(out, "c/nothing") {
		t.Errorf("top list: want b/big then d/mid, of 3 with reclaimable space:\n%s", out)
	}
	if !strings.Contains(out, "4.0 MiB") {
		t.Errorf("b/big's 4 MiB missing:\n%s", out)
	}
	if !strings.Contains(out, "26 read from storage, 16 from the local cache") {
		t.Errorf("without sources the old figures stay:\n%s", out)
	}

	// A first run whose prefetch read 26 manifests during the walk: the
	// mark took 16 of them from the cache and read 10 others itself.
	r.SetManifestSources(mark.SourceCounts{Read: 10, Prefetched: 26, PrefetchHits: 16})
	b.Reset()
	if err := r.WriteText(&b, false); err != nil {
		t.Fatal(err)
	}
	out = b.String()
	for _, want := range []string{"26 read: 10 from storage, 16 prefetched from storage during the walk, 0 from the local cache of earlier runs",
		"(10 more prefetched and not needed)"} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
	var js bytes.Buffer
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"manifest_reads": 26`, `"manifest_cache_hits": 16`, `"manifest_sources": {`, `"storage": 10`, `"prefetched": 26`,
		`"prefetched_used": 16`, `"cache": 0`} {
		if !strings.Contains(js.String(), want) {
			t.Errorf("JSON lacks %s:\n%s", want, js.String())
		}
	}
}

// The tag line of a policy run counts repositories in proper English:
// "in 1 repository", "in 2 repositories".
func TestGCTextCountsTagRepositories(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		items []sweep.Item
		want  string
	}{
		{[]sweep.Item{{Kind: sweep.KindTag, Repo: "a/x", Tag: "v1"}, {Kind: sweep.KindTag, Repo: "a/x", Tag: "v2"}},
			"  tags              2, in 1 repository (retention policy)\n"},
		{[]sweep.Item{{Kind: sweep.KindTag, Repo: "a/x", Tag: "v1"}, {Kind: sweep.KindTag, Repo: "b/y", Tag: "v1"}},
			"  tags              2, in 2 repositories (retention policy)\n"},
	} {
		plan := &sweep.Plan{Items: tc.items, Stats: sweep.Stats{Tags: len(tc.items)}}
		r := BuildGC(plan, nil, nil, true, NewStorageInfo("filesystem", "filesystem:///r"), map[string]int64{}, 0, 0, start, start)
		var b bytes.Buffer
		if err := r.WriteText(&b, false); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.String(), tc.want) {
			t.Errorf("want %q in:\n%s", tc.want, b.String())
		}
	}
}

// The list of tags deleted by repository, cut at --top, says it is cut.
func TestGCTextTagsByRepositorySaysItIsCut(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var items []sweep.Item
	for _, repo := range []string{"a/x", "a/x", "b/y", "c/z"} {
		items = append(items, sweep.Item{Kind: sweep.KindTag, Repo: repo})
	}
	r := BuildGC(&sweep.Plan{Items: items, Stats: sweep.Stats{Tags: len(items)}}, nil, nil, true,
		NewStorageInfo("filesystem", "filesystem:///r"), map[string]int64{}, 0, 0, start, start)
	var b bytes.Buffer
	if err := r.WriteTextOpts(&b, GCTextOptions{Top: 2}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "Tags deleted by repository (top 2 of 3):\n       2  a/x\n       1  b/y\n") {
		t.Errorf("want the top 2 of 3 repositories, said so:\n%s", b.String())
	}
}
