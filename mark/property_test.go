package mark_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/finding"
	"github.com/regsweep/regsweep/manifest"
	"github.com/regsweep/regsweep/mark"
)

// The property test builds random registries — image manifests, indexes
// (nested), referrers (of referrers), tags, several repositories, missing
// manifests, missing and foreign layers — and compares Run against a
// reachability model written as plainly as possible.

type modelManifest struct {
	blobs, foreign, children []digest.Digest
	subject                  digest.Digest
	stored                   bool
}

type modelRepo struct {
	revs []digest.Digest
	tags map[string]digest.Digest
}

type model struct {
	manifests   map[digest.Digest]*modelManifest
	storedBlobs map[digest.Digest]bool
	repos       map[string]*modelRepo
}

type set map[digest.Digest]bool

func (s set) sorted() []string {
	out := make([]string, 0, len(s))
	for d := range s {
		out = append(out, d.String())
	}
	sort.Strings(out)
	return out
}

// expect is the model's answer: per repository kept manifests and kept
// layers, all kept blobs, and the problems.
func (m *model) expect(deleteUntagged bool) (keptM, keptL map[string]set, blobs set, problems []problemID) {
	keptM, keptL, blobs = map[string]set{}, map[string]set{}, set{}
	var perTag []problemID
	for name, r := range m.repos {
		kept := set{}
		for _, d := range r.tags {
			kept[d] = true
		}
		for _, d := range r.revs {
			if !deleteUntagged {
				kept[d] = true
			}
		}
		for changed := true; changed; {
			changed = false
			add := func(d digest.Digest) {
				if !kept[d] {
					kept[d], changed = true, true
				}
			}
			for d := range kept {
				if mm := m.manifests[d]; mm.stored {
					for _, c := range mm.children {
						add(c)
					}
				}
			}
			for _, d := range r.revs {
				if mm := m.manifests[d]; mm.stored && mm.subject != "" && kept[mm.subject] {
					add(d)
				}
			}
		}
		layers := set{}
		for d := range kept {
			layers[d] = true
			mm := m.manifests[d]
			if !mm.stored {
				continue
			}
			for _, b := range mm.blobs {
				layers[b] = true
				if !m.storedBlobs[b] && !slices.Contains(mm.foreign, b) {
					problems = append(problems, problemID{finding.MissingBlobReference, name, b})
				}
			}
			for _, c := range mm.children {
				if !m.manifests[c].stored {
					problems = append(problems, problemID{finding.MissingChildManifest, name, c})
				}
			}
		}
		for d := range layers {
			blobs[d] = true
		}
		for _, d := range r.revs {
			if !m.manifests[d].stored {
				problems = append(problems, problemID{finding.DanglingRevisionLink, name, d})
			}
		}
		for _, d := range r.tags {
			if !m.manifests[d].stored {
				perTag = append(perTag, problemID{finding.MissingTaggedManifest, name, d})
			}
		}
		keptM[name], keptL[name] = kept, layers
	}
	// The same problem found twice is reported once; a missing tagged
	// manifest once per tag.
	slices.SortFunc(problems, func(a, b problemID) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
	problems = slices.Compact(problems)
	problems = append(problems, perTag...)
	slices.SortFunc(problems, func(a, b problemID) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
	return keptM, keptL, blobs, problems
}

// generate builds one random registry into a fixture and its model.
func generate(t *testing.T, rng *rand.Rand) (*fixture, *model) {
	f := newFixture(t)
	m := &model{manifests: map[digest.Digest]*modelManifest{}, storedBlobs: map[digest.Digest]bool{}, repos: map[string]*modelRepo{}}

	blob := func(pStored float64) digest.Digest {
		if rng.Float64() < pStored {
			d := f.blob()
			m.storedBlobs[d] = true
			return d
		}
		return f.absentBlob()
	}
	pool := make([]digest.Digest, 2+rng.IntN(10))
	for i := range pool {
		pool[i] = blob(0.9)
	}
	var all []digest.Digest
	pick := func() digest.Digest { return all[rng.IntN(len(all))] }
	descs := func(ds []digest.Digest) []desc {
		out := []desc{}
		for _, d := range ds {
			out = append(out, desc{Digest: d, Size: 1})
		}
		return out
	}

	n := 1 + rng.IntN(25)
	for len(all) < n {
		mm := &modelManifest{}
		var doc map[string]any
		kind := rng.IntN(10)
		if len(all) == 0 {
			kind = 0
		}
		switch {
		case kind < 5: // image, in one of several formats
			var layers []digest.Digest
			for range rng.IntN(4) {
				layers = append(layers, pool[rng.IntN(len(pool))])
			}
			ld := descs(layers)
			if rng.IntN(8) == 0 {
				fl := f.absentBlob()
				ld = append(ld, desc{Digest: fl, Size: 1, URLs: []string{"https://example.com/" + fl.Encoded()}})
				layers = append(layers, fl)
				mm.foreign = []digest.Digest{fl}
			}
			config := blob(0.95)
			switch rng.IntN(4) {
			case 0:
				var fs []map[string]digest.Digest
				for _, l := range layers {
					fs = append(fs, map[string]digest.Digest{"blobSum": l})
				}
				if len(fs) == 0 {
					fs = []map[string]digest.Digest{}
				}
				doc = map[string]any{"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": fs}
				mm.foreign = nil // schema1 has no URLs: a foreign layer is a plain, missing blobSum
				config = ""
			case 1:
				doc = map[string]any{"schemaVersion": 2, "mediaType": manifest.MediaTypeDockerSchema2, "config": desc{Digest: config}, "layers": ld}
			case 2:
				doc = map[string]any{"schemaVersion": 2, "mediaType": manifest.MediaTypeOCIManifest, "config": desc{Digest: config}, "layers": ld}
			default:
				doc = map[string]any{"schemaVersion": 2, "config": desc{Digest: config}, "layers": ld}
			}
			if config != "" {
				mm.blobs = append(mm.blobs, config)
			}
			mm.blobs = append(mm.blobs, layers...)
		case kind < 8: // index over earlier manifests
			for range 1 + rng.IntN(3) {
				mm.children = append(mm.children, pick())
			}
			switch rng.IntN(3) {
			case 0:
				doc = map[string]any{"schemaVersion": 2, "mediaType": manifest.MediaTypeDockerManifestList, "manifests": descs(mm.children)}
			case 1:
				doc = map[string]any{"schemaVersion": 2, "mediaType": manifest.MediaTypeOCIIndex, "manifests": descs(mm.children)}
			default:
				doc = map[string]any{"schemaVersion": 2, "manifests": descs(mm.children)}
			}
			if rng.IntN(10) == 0 {
				mm.subject = pick()
				doc["subject"] = desc{Digest: mm.subject}
			}
		default: // referrer of an earlier manifest (perhaps a referrer)
			mm.subject = pick()
			b := blob(0.9)
			mm.blobs = []digest.Digest{b}
			if rng.IntN(2) == 0 {
				doc = map[string]any{"mediaType": manifest.MediaTypeOCIArtifact, "blobs": descs(mm.blobs), "subject": desc{Digest: mm.subject}}
			} else {
				c := blob(0.95)
				mm.blobs = append([]digest.Digest{c}, b)
				doc = map[string]any{"schemaVersion": 2, "mediaType": manifest.MediaTypeOCIManifest, "config": desc{Digest: c},
					"layers": descs([]digest.Digest{b}), "subject": desc{Digest: mm.subject}}
			}
		}
		body := f.marshal(doc)
		d := sha(body)
		if rng.Float64() < 0.9 {
			f.store(body)
			mm.stored = true
		}
		mm.blobs = dedupe(mm.blobs)
		m.manifests[d] = mm
		all = append(all, d)
	}

	names := []string{"r0", "team/r1", "r0/sub", "x"}[:1+rng.IntN(4)]
	for _, name := range names {
		r := &modelRepo{tags: map[string]digest.Digest{}}
		m.repos[name] = r
		f.inv.Repo(name)
		for _, d := range all {
			if rng.IntN(2) == 0 {
				f.rev(name, d)
				r.revs = append(r.revs, d)
			}
		}
		for i := range rng.IntN(4) {
			var d digest.Digest
			if len(r.revs) > 0 && rng.IntN(5) > 0 {
				d = r.revs[rng.IntN(len(r.revs))]
			} else {
				d = pick()
			}
			tag := fmt.Sprintf("t%d", i)
			if rng.IntN(4) == 0 { // re-tagged: an older target stays in the index
				f.tag(name, tag, pick())
			}
			f.tag(name, tag, d)
			r.tags[tag] = d
		}
	}
	return f, m
}

func dedupe(ds []digest.Digest) []digest.Digest {
	var out []digest.Digest
	for _, d := range ds {
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

func TestRandomRegistriesAgreeWithModel(t *testing.T) {
	cases := 3000
	if testing.Short() {
		cases = 300
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	deadline := time.Now().Add(8 * time.Second)
	for i := range cases {
		if time.Now().After(deadline) {
			t.Logf("stopped after %d cases", i)
			break
		}
		caseSeed := seed + uint64(i)
		rng := rand.New(rand.NewPCG(caseSeed, 0x5eed))
		f, m := generate(t, rng)
		opts := mark.Options{DeleteUntagged: rng.IntN(2) == 0, Concurrency: 1 + rng.IntN(8)}
		res, err := mark.Run(context.Background(), f.inv, f.src, opts)
		if err != nil {
			t.Fatalf("case seed %d: Run: %v", caseSeed, err)
		}
		keptM, keptL, blobs, problems := m.expect(opts.DeleteUntagged)
		fail := func(what string, got, want []string) {
			t.Fatalf("case seed %d (%+v): %s\n got %v\nwant %v", caseSeed, opts, what, got, want)
		}
		if got, want := keys(res.KeptBlobs), blobs.sorted(); !slices.Equal(got, want) {
			fail("KeptBlobs", got, want)
		}
		for name := range m.repos {
			rr := res.Repos[name]
			if got, want := keys(rr.KeptManifests), keptM[name].sorted(); !slices.Equal(got, want) {
				fail(name+" KeptManifests", got, want)
			}
			if got, want := keys(rr.KeptLayers), keptL[name].sorted(); !slices.Equal(got, want) {
				fail(name+" KeptLayers", got, want)
			}
		}
		if got := problemIDs(res.Problems); !slices.Equal(got, problems) {
			t.Fatalf("case seed %d (%+v): problems\n got %v\nwant %v", caseSeed, opts, got, problems)
		}
		// Every manifest was read at most once.
		for d, n := range f.src.calls {
			if n != 1 {
				t.Fatalf("case seed %d: %s read %d times", caseSeed, d, n)
			}
		}
	}
}
