package regtree

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/storage"
)

// generated lists what a tree holds, by parsing every key as distribution's
// layout.
type generated struct {
	revisions  map[string]map[digest.Digest]bool // repository -> manifests linked
	layerLinks map[string]map[digest.Digest]bool // repository -> blobs linked
	blobs      map[digest.Digest][]byte
}

func generate(t *testing.T, spec Spec) (Counts, generated) {
	t.Helper()
	ctx := context.Background()
	m := storage.NewMemory(time.Now, nil)
	c, err := Generate(ctx, m, spec, 4)
	if err != nil {
		t.Fatal(err)
	}
	g := generated{revisions: map[string]map[digest.Digest]bool{}, layerLinks: map[string]map[digest.Digest]bool{}, blobs: map[digest.Digest][]byte{}}
	for _, key := range m.Keys() {
		s, err := layout.Parse(key)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		switch s := s.(type) {
		case layout.RevisionLink:
			if g.revisions[s.Repo] == nil {
				g.revisions[s.Repo] = map[digest.Digest]bool{}
			}
			g.revisions[s.Repo][s.Digest] = true
		case layout.LayerLink:
			if g.layerLinks[s.Repo] == nil {
				g.layerLinks[s.Repo] = map[digest.Digest]bool{}
			}
			g.layerLinks[s.Repo][s.Digest] = true
		case layout.BlobData:
			b, err := m.Get(ctx, key, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			g.blobs[s.Digest] = b
		}
	}
	return c, g
}

// A mounted layer is a layer link to a blob another repository's image
// brought, not a new blob; an unlinked image is a manifest blob no revision
// link names, whose config and layers stay linked; and a spec without
// either writes every image linked, with only its own repository's layers.
func TestMountedLayersAndUnlinkedImages(t *testing.T) {
	base := Spec{Seed: 3, Repositories: 6, ImagesPerRepo: 8, TagsPerRepo: 2, LayersPerImg: 3, SharedLayers: 2, OrphanBlobs: 5, LayerSize: 32}
	plainCounts, plain := generate(t, base)
	spec := base
	spec.MountedLayers, spec.UnlinkedImages = 2, 1
	counts, g := generate(t, spec)

	if counts.Blobs != plainCounts.Blobs || len(g.blobs) != len(plain.blobs) {
		t.Errorf("mounted layers added blobs: %d (%d stored), without them %d (%d stored)", counts.Blobs, len(g.blobs), plainCounts.Blobs, len(plain.blobs))
	}
	// Without mounts only the base layers are linked by several
	// repositories; with them, layers of other repositories' images too.
	if n := linkedElsewhere(plain); n > base.SharedLayers {
		t.Errorf("without mounted layers, %d blobs are linked by several repositories, more than the %d shared base layers", n, base.SharedLayers)
	}
	if n := linkedElsewhere(g); n <= spec.SharedLayers {
		t.Errorf("with mounted layers, only %d blobs are linked by several repositories", n)
	}
	var unlinkedManifests int
	for d, body := range g.blobs {
		var m ociManifest
		if json.Unmarshal(body, &m) != nil || m.MediaType != MediaTypeOCIManifest {
			continue
		}
		repo := repoOf(t, g, m)
		if g.revisions[repo][d] {
			continue
		}
		unlinkedManifests++
		for _, l := range append([]Descriptor{m.Config}, m.Layers...) {
			if !g.layerLinks[repo][l.Digest] {
				t.Errorf("unlinked manifest %s in %s: its blob %s lost its layer link", d, repo, l.Digest)
			}
		}
	}
	if want := spec.Repositories * spec.UnlinkedImages; unlinkedManifests != want {
		t.Errorf("%d manifests without a revision link, want %d", unlinkedManifests, want)
	}
	if want := spec.Repositories * (spec.ImagesPerRepo - spec.UnlinkedImages); counts.Manifests != want {
		t.Errorf("Counts.Manifests = %d, want %d", counts.Manifests, want)
	}
	// The first repository has no earlier one to mount from.
	if want := spec.Repositories*spec.ImagesPerRepo*(1+spec.LayersPerImg) + (spec.Repositories-1)*spec.ImagesPerRepo*spec.MountedLayers; counts.LayerLinks != want {
		t.Errorf("Counts.LayerLinks = %d, want %d", counts.LayerLinks, want)
	}
	if want := base.Repositories * base.ImagesPerRepo; plainCounts.Manifests != want {
		t.Errorf("without the new fields, Counts.Manifests = %d, want every image linked (%d)", plainCounts.Manifests, want)
	}
}

// linkedElsewhere counts the blobs linked by more than one repository.
func linkedElsewhere(g generated) int {
	repos := map[digest.Digest]int{}
	for _, links := range g.layerLinks {
		for d := range links {
			repos[d]++
		}
	}
	n := 0
	for _, r := range repos {
		if r > 1 {
			n++
		}
	}
	return n
}

// repoOf finds the repository that links m's config, which is its own.
func repoOf(t *testing.T, g generated, m ociManifest) string {
	t.Helper()
	for repo, links := range g.layerLinks {
		if links[m.Config.Digest] {
			return repo
		}
	}
	t.Fatalf("no repository links config %s", m.Config.Digest)
	return ""
}
