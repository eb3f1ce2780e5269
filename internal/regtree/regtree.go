// Package regtree writes synthetic registry storage trees, laid out exactly
// as distribution writes them, for the demo, tests and benchmarks.
// It owns only the generation; it may not be imported by product code.
package regtree

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/storage"
)

// Media types written by the generator.
const (
	MediaTypeOCIManifest = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeOCIIndex    = "application/vnd.oci.image.index.v1+json"
	MediaTypeOCIConfig   = "application/vnd.oci.image.config.v1+json"
	MediaTypeOCILayer    = "application/vnd.oci.image.layer.v1.tar+gzip"
)

// Writer puts objects into storage and records what it wrote.
type Writer struct {
	d           storage.Driver
	concurrency int
	mu          sync.Mutex
	pending     map[string][]byte
	// Written counts what the tree holds, for tests to compare with.
	Written Counts
	blobs   map[digest.Digest]int64
}

// Counts is what a generated tree holds.
type Counts struct {
	Repositories, Tags, Manifests, LayerLinks, Blobs, Uploads int
	BlobBytes                                                 int64
}

// NewWriter buffers writes until Flush.
func NewWriter(d storage.Driver, concurrency int) *Writer {
	return &Writer{d: d, concurrency: max(concurrency, 1), pending: map[string][]byte{}, blobs: map[digest.Digest]int64{}}
}

func (w *Writer) put(s layout.Spec, data []byte) {
	key, err := layout.Path(s)
	if err != nil {
		panic(err) // the generator only builds valid specs
	}
	w.mu.Lock()
	w.pending[key] = data
	w.mu.Unlock()
}

// Blob stores content as a blob and returns its digest.
func (w *Writer) Blob(content []byte) digest.Digest {
	d := digest.FromBytes(content)
	if _, ok := w.blobs[d]; !ok {
		w.blobs[d] = int64(len(content))
		w.Written.Blobs++
		w.Written.BlobBytes += int64(len(content))
		w.put(layout.BlobData{Digest: d}, content)
	}
	return d
}

func link(d digest.Digest) []byte { return []byte(d.String()) }

// LayerLink links a blob into a repository.
func (w *Writer) LayerLink(repo string, d digest.Digest) {
	w.put(layout.LayerLink{Repo: repo, Digest: d}, link(d))
	w.Written.LayerLinks++
}

// Revision links a manifest into a repository.
func (w *Writer) Revision(repo string, d digest.Digest) {
	w.put(layout.RevisionLink{Repo: repo, Digest: d}, link(d))
	w.Written.Manifests++
}

// Tag points tag at d, recording it in the tag's index.
func (w *Writer) Tag(repo, tag string, d digest.Digest) {
	w.put(layout.TagCurrentLink{Repo: repo, Tag: tag}, link(d))
	w.put(layout.TagIndexLink{Repo: repo, Tag: tag, Digest: d}, link(d))
	w.Written.Tags++
}

// Descriptor is an OCI descriptor.
type Descriptor struct {
	MediaType string        `json:"mediaType"`
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
	Platform  *Platform     `json:"platform,omitempty"`
}

// Platform of an index entry.
type Platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

type ociManifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	ArtifactType  string       `json:"artifactType,omitempty"`
	Config        Descriptor   `json:"config"`
	Layers        []Descriptor `json:"layers"`
	Subject       *Descriptor  `json:"subject,omitempty"`
}

type ociIndex struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []Descriptor `json:"manifests"`
}

// Image writes an OCI image (config + layers) into repo, links it, and
// returns the manifest's descriptor. It does not tag it.
func (w *Writer) Image(repo string, config []byte, layers ...[]byte) Descriptor {
	return w.image(repo, nil, true, config, layers...)
}

// unlinkedImage is Image after its manifest was deleted through the API:
// the blobs and layer links stay, no revision link names the manifest.
func (w *Writer) unlinkedImage(repo string, config []byte, layers ...[]byte) Descriptor {
	return w.image(repo, nil, false, config, layers...)
}

// Referrer writes an artifact manifest whose subject is subject.
func (w *Writer) Referrer(repo string, subject Descriptor, payload []byte) Descriptor {
	return w.image(repo, &subject, true, []byte(`{}`), payload)
}

func (w *Writer) image(repo string, subject *Descriptor, linked bool, config []byte, layers ...[]byte) Descriptor {
	m := ociManifest{SchemaVersion: 2, MediaType: MediaTypeOCIManifest, Subject: subject}
	m.Config = Descriptor{MediaType: MediaTypeOCIConfig, Digest: w.Blob(config), Size: int64(len(config))}
	w.LayerLink(repo, m.Config.Digest)
	for _, l := range layers {
		desc := Descriptor{MediaType: MediaTypeOCILayer, Digest: w.Blob(l), Size: int64(len(l))}
		m.Layers = append(m.Layers, desc)
		w.LayerLink(repo, desc.Digest)
	}
	if subject != nil {
		m.ArtifactType = "application/vnd.example.signature"
	}
	if !linked {
		return w.manifestBlob(MediaTypeOCIManifest, m)
	}
	return w.manifest(repo, MediaTypeOCIManifest, m)
}

// Index writes an OCI index of children (already in repo) and links it.
func (w *Writer) Index(repo string, children ...Descriptor) Descriptor {
	for i := range children {
		children[i].Platform = &Platform{Architecture: []string{"amd64", "arm64", "s390x", "ppc64le"}[i%4], OS: "linux"}
	}
	return w.manifest(repo, MediaTypeOCIIndex, ociIndex{SchemaVersion: 2, MediaType: MediaTypeOCIIndex, Manifests: children})
}

func (w *Writer) manifest(repo, mediaType string, v any) Descriptor {
	desc := w.manifestBlob(mediaType, v)
	w.Revision(repo, desc.Digest)
	return desc
}

// manifestBlob stores v as a manifest blob, linked nowhere.
func (w *Writer) manifestBlob(mediaType string, v any) Descriptor {
	body, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return Descriptor{MediaType: mediaType, Digest: w.Blob(body), Size: int64(len(body))}
}

// Upload writes an abandoned upload (startedat, a hash state and data).
func (w *Writer) Upload(repo, id string, started time.Time, data []byte) {
	w.put(layout.UploadStartedAt{Repo: repo, ID: id}, []byte(started.UTC().Format(time.RFC3339)))
	w.put(layout.UploadHashState{Repo: repo, ID: id, Alg: "sha256", Offset: int64(len(data))}, []byte("hash-state"))
	w.put(layout.UploadData{Repo: repo, ID: id}, data)
	w.Written.Uploads++
}

// Raw writes any key (for damaged or foreign keys in tests).
func (w *Writer) Raw(key string, data []byte) {
	w.mu.Lock()
	w.pending[key] = data
	w.mu.Unlock()
}

// Flush writes every pending object in parallel.
func (w *Writer) Flush(ctx context.Context) error {
	w.mu.Lock()
	pending := w.pending
	w.pending = map[string][]byte{}
	w.mu.Unlock()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(w.concurrency)
	for k, v := range pending {
		g.Go(func() error {
			if err := w.d.Put(gctx, k, v); err != nil {
				return fmt.Errorf("writing %s: %w", k, err)
			}
			return nil
		})
	}
	return g.Wait()
}

// Spec sizes a generated registry.
type Spec struct {
	Seed         uint64
	Repositories int
	// ImagesPerRepo images are pushed to each repository; TagsPerRepo of
	// them stay tagged, the rest end untagged (re-tagged over).
	ImagesPerRepo int
	TagsPerRepo   int
	LayersPerImg  int
	// SharedLayers is a pool of base layers every image may start with.
	SharedLayers int
	// OrphanBlobs are blobs nothing links.
	OrphanBlobs int
	// LayerSize is the size of each generated layer.
	LayerSize int
	// MultiArch makes every fifth repository also hold a tagged index.
	MultiArch bool
	Uploads   int
	// MountedLayers is how many layers each image also takes from images
	// of earlier repositories (a cross-repository mount, as an image built
	// on a base pushed elsewhere does): a layer link, not a new blob.
	MountedLayers int
	// UnlinkedImages of each repository's untagged images have no revision
	// link, as after a manifest delete through the API: their manifest,
	// config and own layers are garbage, their layer links stay.
	UnlinkedImages int
}

// mountPool is how many layers of earlier repositories images can mount.
const mountPool = 4096

// Generate writes a whole registry described by spec.
func Generate(ctx context.Context, d storage.Driver, spec Spec, concurrency int) (Counts, error) {
	w := NewWriter(d, concurrency)
	rng := rand.New(rand.NewPCG(spec.Seed, spec.Seed^0x9e3779b97f4a7c15))
	randBytes := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		return b
	}
	layerSize := max(spec.LayerSize, 16)
	shared := make([][]byte, spec.SharedLayers)
	for i := range shared {
		shared[i] = randBytes(layerSize)
	}
	// Layers of earlier repositories that later images mount; filled a
	// repository at a time, so no image mounts from its own repository.
	var mountable, repoLayers [][]byte
	for r := 0; r < spec.Repositories; r++ {
		repo := fmt.Sprintf("team%d/app%d", r%7, r)
		w.Written.Repositories++
		var images []Descriptor
		repoLayers = repoLayers[:0]
		// The first images pushed are the ones deleted later: never tagged.
		unlinked := min(spec.UnlinkedImages, max(spec.ImagesPerRepo-spec.TagsPerRepo*2, 0))
		for i := 0; i < spec.ImagesPerRepo; i++ {
			var layers [][]byte
			if len(shared) > 0 {
				layers = append(layers, shared[rng.IntN(len(shared))])
			}
			for l := len(layers); l < spec.LayersPerImg; l++ {
				layer := randBytes(layerSize)
				layers = append(layers, layer)
				if spec.MountedLayers > 0 && i >= unlinked {
					repoLayers = append(repoLayers, layer)
				}
			}
			for m := 0; m < spec.MountedLayers && len(mountable) > 0; m++ {
				layers = append(layers, mountable[rng.IntN(len(mountable))])
			}
			cfg := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","created":"%s","repo":%q,"n":%d}`,
				time.Unix(int64(1700000000+i), 0).UTC().Format(time.RFC3339), repo, i))
			var desc Descriptor
			if i < unlinked {
				desc = w.unlinkedImage(repo, cfg, layers...)
			} else {
				desc = w.Image(repo, cfg, layers...)
			}
			images = append(images, desc)
		}
		for _, l := range repoLayers {
			if len(mountable) < mountPool {
				mountable = append(mountable, l)
			} else {
				mountable[rng.IntN(mountPool)] = l
			}
		}
		for t := 0; t < spec.TagsPerRepo && t < len(images); t++ {
			// Older images were tagged once and re-tagged over; only the
			// newest TagsPerRepo stay current.
			idx := len(images) - 1 - t
			tag := fmt.Sprintf("v%d", t)
			if idx-spec.TagsPerRepo >= 0 {
				w.put(layout.TagIndexLink{Repo: repo, Tag: tag, Digest: images[idx-spec.TagsPerRepo].Digest}, link(images[idx-spec.TagsPerRepo].Digest))
			}
			w.Tag(repo, tag, images[idx].Digest)
		}
		if spec.MultiArch && r%5 == 0 && len(images) >= 2 {
			idx := w.Index(repo, images[len(images)-2], images[len(images)-1])
			w.Tag(repo, "multi", idx.Digest)
		}
		if r < spec.Uploads {
			w.Upload(repo, fmt.Sprintf("%08x-0000-4000-8000-%012x", r, rng.Uint64()&0xffffffffffff), time.Now().Add(-30*24*time.Hour), randBytes(64))
		}
		if len(w.pending) > 20000 {
			if err := w.Flush(ctx); err != nil {
				return w.Written, err
			}
		}
	}
	for i := 0; i < spec.OrphanBlobs; i++ {
		w.Blob(randBytes(layerSize))
	}
	return w.Written, w.Flush(ctx)
}
