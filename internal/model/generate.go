package model

import (
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"
)

// The clock and graces every generated state is made for.
const (
	Grace       = 2 * time.Hour
	UploadGrace = 24 * time.Hour
)

// Media types the generator writes.
const (
	TypeSchema2     = "application/vnd.docker.distribution.manifest.v2+json"
	TypeOCIManifest = "application/vnd.oci.image.manifest.v1+json"
	TypeOCIIndex    = "application/vnd.oci.image.index.v1+json"
	TypeDockerList  = "application/vnd.docker.distribution.manifest.list.v2+json"
	TypeArtifact    = "application/vnd.oci.artifact.manifest.v1+json"
	TypeSchema1     = "application/vnd.docker.distribution.manifest.v1+json"
	TypeSchema1Sig  = "application/vnd.docker.distribution.manifest.v1+prettyjws"
	TypeUnknown     = "application/vnd.example.thing.v1+json"
)

var repoNames = []string{"a", "ab", "a/b", "app", "lib/base", "team/web-app", "x__y"}

type gen struct {
	rng *rand.Rand
	s   *State
	// hostile is the probability scale of damage: 0 writes a registry
	// with nothing blocking (dangling links and missing layers only).
	hostile float64
	n       int // unique content counter
	layers  []digest.Digest
	mans    []digest.Digest
}

// Generate makes the random state of seed.
func Generate(seed uint64) *State {
	g := &gen{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	g.s = &State{Seed: seed, Now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
		Blobs: map[digest.Digest]*Blob{}, Repos: map[string]*Repo{}, Strays: map[string]time.Time{}}
	g.hostile = []float64{0, 0, 0.03, 0.1}[g.rng.IntN(4)]

	for range 2 + g.rng.IntN(10) {
		g.layers = append(g.layers, g.layer())
	}
	for range 2 + g.rng.IntN(10) {
		g.mans = append(g.mans, g.manifest())
	}
	names := slices.Clone(repoNames)
	g.rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	names = names[:1+g.rng.IntN(4)]
	for _, n := range names {
		g.s.Repos[n] = newRepo()
	}
	for _, d := range g.mans {
		m := g.s.Blobs[d].Manifest
		switch {
		case m.Subject != "" && g.chance(0.9):
			// A referrer goes where its subject is.
			for _, n := range names {
				if _, ok := g.s.Repos[n].Revisions[m.Subject]; ok {
					g.push(n, d)
				}
			}
		case g.chance(0.05):
			// An orphan manifest blob: linked nowhere.
		default:
			g.push(g.pick(names), d)
			if g.chance(0.25) {
				g.push(g.pick(names), d)
			}
		}
	}
	for _, n := range names {
		g.tags(n)
		g.damage(n)
		g.uploads(n)
	}
	for range g.rng.IntN(4) {
		g.blob([]byte(g.unique("orphan")), false)
	}
	if g.chance(g.hostile / 2) {
		g.s.Strays[layoutRepoKey(g.pick(names), "_manifests/notes.txt")] = g.mtime(Grace)
	}
	return g.s
}

func layoutRepoKey(repo, rest string) string {
	return "docker/registry/v2/repositories/" + repo + "/" + rest
}

func (g *gen) chance(p float64) bool { return g.rng.Float64() < p }

func (g *gen) pick(names []string) string { return names[g.rng.IntN(len(names))] }

func (g *gen) unique(prefix string) string {
	g.n++
	return fmt.Sprintf("%s-%d-%d", prefix, g.s.Seed, g.n)
}

// mtime is old (most), young, or exactly at the cutoff of grace.
func (g *gen) mtime(grace time.Duration) time.Time {
	switch r := g.rng.IntN(100); {
	case r < 65:
		return g.s.Now.Add(-grace - time.Duration(1+g.rng.IntN(600))*time.Minute)
	case r < 93:
		return g.s.Now.Add(-grace + time.Duration(1+g.rng.IntN(int(grace/time.Minute)-1))*time.Minute)
	default:
		return g.s.Now.Add(-grace)
	}
}

// blob stores content (sha512 digests for a few layers).
func (g *gen) blob(content []byte, sha512Digest bool) digest.Digest {
	d := digest.FromBytes(content)
	if sha512Digest {
		sum := sha512.Sum512(content)
		d = digest.NewDigestFromEncoded(digest.SHA512, hex.EncodeToString(sum[:]))
	}
	g.s.Blobs[d] = &Blob{Digest: d, Stored: true, Content: content, ModTime: g.mtime(Grace)}
	return d
}

// missing is a digest storage never had.
func (g *gen) missing() digest.Digest {
	d := digest.FromString(g.unique("never-stored"))
	g.s.Blobs[d] = &Blob{Digest: d}
	return d
}

func (g *gen) layer() digest.Digest {
	d := g.blob([]byte(g.unique("layer")), g.chance(0.05))
	if g.chance(g.hostile) {
		g.s.Blobs[d].Stored = false // a layer storage lost
	}
	return d
}

type desc struct {
	MediaType string        `json:"mediaType"`
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
	URLs      []string      `json:"urls,omitempty"`
}

func (g *gen) desc(mt string, d digest.Digest) desc {
	return desc{MediaType: mt, Digest: d, Size: int64(len(g.s.Blobs[d].Content))}
}

// manifest makes one manifest of a random type over the layers and the
// manifests made so far, and stores it (or damages it).
func (g *gen) manifest() digest.Digest {
	types := []string{TypeSchema2, TypeSchema2, TypeOCIManifest, TypeOCIManifest, TypeSchema1, TypeSchema1Sig,
		TypeArtifact, TypeUnknown, TypeOCIIndex, TypeOCIIndex, TypeDockerList, "referrer", "referrer"}
	t := types[g.rng.IntN(len(types))]
	if (t == TypeOCIIndex || t == TypeDockerList || t == "referrer") && len(g.mans) == 0 {
		t = TypeOCIManifest
	}
	m := &Manifest{Type: t, Valid: true}
	doc := map[string]any{"schemaVersion": 2, "annotations": map[string]string{"id": g.unique("m")}}
	layers := func() []desc {
		var out []desc
		for range 1 + g.rng.IntN(3) {
			l := g.layers[g.rng.IntN(len(g.layers))]
			if slices.Contains(m.Blobs, l) {
				continue
			}
			m.Blobs = append(m.Blobs, l)
			out = append(out, g.desc("application/vnd.oci.image.layer.v1.tar+gzip", l))
		}
		if g.chance(0.1) {
			// A foreign layer: referenced with URLs, never stored.
			f := g.missing()
			m.Blobs, m.Foreign = append(m.Blobs, f), append(m.Foreign, f)
			out = append(out, desc{MediaType: "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", Digest: f, Size: 1, URLs: []string{"https://example.invalid/layer"}})
		}
		return out
	}
	config := func() desc {
		c := g.blob([]byte(`{"architecture":"amd64","id":"`+g.unique("config")+`"}`), false)
		m.Blobs = append(m.Blobs, c)
		return g.desc("application/vnd.oci.image.config.v1+json", c)
	}
	subject := func() {
		m.Subject = g.mans[g.rng.IntN(len(g.mans))]
		doc["subject"] = desc{MediaType: TypeOCIManifest, Digest: m.Subject, Size: 1}
	}
	switch t {
	case TypeSchema2, TypeOCIManifest, TypeUnknown, "referrer":
		doc["config"] = config()
		doc["layers"] = layers()
		if t == "referrer" {
			m.Type, t = TypeOCIManifest, TypeOCIManifest
			doc["artifactType"] = "application/vnd.example.sbom"
			subject()
		}
		doc["mediaType"] = t
	case TypeArtifact:
		doc = map[string]any{"mediaType": t, "artifactType": "application/vnd.example.signature", "blobs": layers(),
			"annotations": map[string]string{"id": g.unique("m")}}
		if len(g.mans) > 0 && g.chance(0.8) {
			subject()
		}
	case TypeSchema1, TypeSchema1Sig:
		var fs []map[string]digest.Digest
		for _, l := range layers() {
			if l.URLs == nil {
				fs = append(fs, map[string]digest.Digest{"blobSum": l.Digest})
			}
		}
		m.Blobs, m.Foreign = nil, nil
		for _, l := range fs {
			m.Blobs = append(m.Blobs, l["blobSum"])
		}
		doc = map[string]any{"schemaVersion": 1, "name": g.unique("legacy"), "tag": "v1", "architecture": "amd64",
			"fsLayers": fs, "history": []map[string]string{{"v1Compatibility": "{}"}}}
		if t == TypeSchema1Sig {
			doc["signatures"] = []map[string]any{{"header": map[string]string{"alg": "ES256"}, "signature": "c2ln", "protected": "cHJv"}}
		}
	case TypeOCIIndex, TypeDockerList:
		var children []desc
		for range 1 + g.rng.IntN(3) {
			c := g.mans[g.rng.IntN(len(g.mans))]
			if slices.Contains(m.Children, c) {
				continue
			}
			m.Children = append(m.Children, c)
			children = append(children, desc{MediaType: TypeOCIManifest, Digest: c, Size: int64(len(g.s.Blobs[c].Content))})
		}
		doc["mediaType"] = t
		doc["manifests"] = children
	}
	body, err := json.Marshal(doc)
	if err != nil {
		panic(err)
	}
	d := g.blob(body, false)
	b := g.s.Blobs[d]
	b.Manifest = m
	switch r := g.rng.Float64(); {
	case r < g.hostile/2:
		b.Stored = false // lost: a missing child, tag target or dangling revision
	case r < g.hostile:
		b.Content, m.Valid = []byte(`{"schemaVersion": 2, "mediaType": "`+t+`", "layers": [`), false // truncated JSON
	case r < g.hostile*1.25:
		b.Content, m.Valid = []byte(`{"schemaVersion":2,"mediaType":"`+TypeOCIIndex+`","manifests":[]}`), false // not its digest
	}
	return d
}

// push links d into repo as distribution does: the revision, the blobs
// it references in _layers, and (for an index) its children first.
func (g *gen) push(repo string, d digest.Digest) {
	r := g.s.Repos[repo]
	if _, ok := r.Revisions[d]; ok {
		return
	}
	m := g.s.Blobs[d].Manifest
	for _, c := range m.Children {
		if g.chance(0.85) {
			g.push(repo, c)
		}
	}
	r.Revisions[d] = g.link()
	for _, b := range m.Blobs {
		if !slices.Contains(m.Foreign, b) && g.chance(0.92) {
			r.Layers[b] = g.link()
		}
	}
	if g.chance(0.03) {
		// registry 2.1.0 also linked manifests in _layers.
		r.Layers[d] = g.link()
	}
}

func (g *gen) link() Link {
	l := Link{ModTime: g.mtime(Grace)}
	if g.chance(g.hostile / 3) {
		switch g.rng.IntN(3) {
		case 0:
			l.Corrupt = "not a digest\n"
		case 1:
			l.CorruptEmpty = true
		default:
			l.Corrupt = digest.FromString(g.unique("other")).String()
		}
	}
	return l
}

// tags points tags at revisions, moving some (their history keeps the
// earlier targets, now untagged).
func (g *gen) tags(repo string) {
	r := g.s.Repos[repo]
	var revs []digest.Digest
	for d := range r.Revisions {
		revs = append(revs, d)
	}
	slices.Sort(revs)
	if len(revs) == 0 {
		return
	}
	names := []string{"latest", "v1", "v2", "sha256-" + revs[0].Encoded()[:16] + ".sig"}
	for _, tn := range names[:g.rng.IntN(len(names)+1)] {
		t := &Tag{Index: map[digest.Digest]Link{}}
		for range 1 + g.rng.IntN(3) {
			target := revs[g.rng.IntN(len(revs))]
			switch r := g.rng.Float64(); {
			case r < g.hostile/2:
				target = g.missing()
			case r < g.hostile*3/4:
				target = g.layers[g.rng.IntN(len(g.layers))] // a tag on a layer
			}
			t.Index[target] = g.link()
			t.HasCurrent, t.Current, t.CurrentL = true, target, g.link()
			if d, err := digest.Parse(t.CurrentL.Corrupt); err == nil {
				// A current link holding another digest is no corrupt link:
				// it points there (at a manifest storage never had).
				t.Current, t.CurrentL.Corrupt = d, ""
				g.s.Blobs[d] = &Blob{Digest: d}
			}
		}
		if g.chance(g.hostile) {
			t.HasCurrent = false // a tag delete cut off
		}
		r.Tags[tn] = t
	}
}

// damage deletes manifests (as the registry's API does: the revision link
// and the tags pointing at it) and adds dangling links.
func (g *gen) damage(repo string) {
	r := g.s.Repos[repo]
	var revs []digest.Digest
	for d := range r.Revisions {
		revs = append(revs, d)
	}
	slices.Sort(revs)
	for _, d := range revs {
		if !g.chance(0.1) {
			continue
		}
		delete(r.Revisions, d)
		for tn, t := range r.Tags {
			if t.HasCurrent && t.Current == d {
				if g.chance(0.5) {
					delete(r.Tags, tn)
				} else {
					t.HasCurrent = false
				}
			}
		}
	}
	if g.chance(0.05 + g.hostile) {
		r.Revisions[g.missing()] = Link{ModTime: g.mtime(Grace)}
	}
	if g.chance(0.05 + g.hostile) {
		r.Layers[g.missing()] = Link{ModTime: g.mtime(Grace)}
	}
}

func (g *gen) uploads(repo string) {
	r := g.s.Repos[repo]
	for i := range g.rng.IntN(3) {
		u := &Upload{}
		switch x := g.rng.IntN(10); {
		case x < 6:
			u.StartedAt = g.mtime(UploadGrace).Format(time.RFC3339)
			u.StartedAtTime = g.mtime(Grace)
		case x < 7:
			u.StartedAt, u.StartedAtTime = "yesterday", g.mtime(Grace)
		}
		if g.chance(0.8) || u.StartedAt == "" {
			t := g.mtime(UploadGrace)
			u.Data = &t
		}
		if g.chance(0.5) {
			t := g.mtime(Grace)
			u.HashState = &t
		}
		r.Uploads[fmt.Sprintf("upload-%d", i)] = u
	}
}
