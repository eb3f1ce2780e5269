package mark_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/blobindex"
	"github.com/regsweep/regsweep/finding"
	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/manifest"
	"github.com/regsweep/regsweep/mark"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/walker"
)

var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// memSource is an in-memory Source that counts calls per digest.
type memSource struct {
	mu    sync.Mutex
	blobs map[digest.Digest][]byte
	calls map[digest.Digest]int
	fail  map[digest.Digest]error
}

func newMemSource() *memSource {
	return &memSource{blobs: map[digest.Digest][]byte{}, calls: map[digest.Digest]int{}, fail: map[digest.Digest]error{}}
}

func (s *memSource) Manifest(_ context.Context, d digest.Digest) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[d]++
	if err := s.fail[d]; err != nil {
		return nil, err
	}
	b, ok := s.blobs[d]
	if !ok {
		return nil, &storage.PathError{Op: "get", Driver: "test", Key: string(d), Err: storage.ErrNotFound}
	}
	return b, nil
}

func (s *memSource) totalCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.calls {
		n += c
	}
	return n
}

func mustKey(tb testing.TB, s layout.Spec) string {
	tb.Helper()
	k, err := layout.Path(s)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// fixture builds an inventory the way a walk would (through Add) and the
// manifest source that goes with it.
type fixture struct {
	tb    testing.TB
	inv   *walker.Inventory
	src   *memSource
	nonce int
}

func newFixture(tb testing.TB) *fixture {
	return &fixture{tb: tb, inv: walker.NewInventory(), src: newMemSource()}
}

func sha(b []byte) digest.Digest {
	sum := sha256.Sum256(b)
	return digest.NewDigestFromBytes(digest.SHA256, sum[:])
}

func (f *fixture) addBlob(d digest.Digest, size int) {
	f.inv.Add(walker.Entry{Kind: walker.KindBlob, Key: mustKey(f.tb, layout.BlobData{Digest: d}), Digest: d, Size: int64(size), ModTime: t0})
}

// blob returns a new stored blob (a layer or a config).
func (f *fixture) blob() digest.Digest {
	d := f.absentBlob()
	f.addBlob(d, 100)
	return d
}

// absentBlob returns the digest of a blob storage does not have.
func (f *fixture) absentBlob() digest.Digest {
	f.nonce++
	return sha(fmt.Appendf(nil, "blob %d", f.nonce))
}

// store puts a manifest into storage.
func (f *fixture) store(body []byte) digest.Digest {
	d := sha(body)
	f.src.blobs[d] = body
	f.addBlob(d, len(body))
	return d
}

// rev links manifests into repo.
func (f *fixture) rev(repo string, ds ...digest.Digest) {
	for _, d := range ds {
		f.inv.Add(walker.Entry{Kind: walker.KindRevisionLink, Key: mustKey(f.tb, layout.RevisionLink{Repo: repo, Digest: d}), Repo: repo, Digest: d, ModTime: t0})
	}
}

// tag points repo:tag at d, as a push does: current link and index link.
func (f *fixture) tag(repo, tag string, d digest.Digest) {
	f.inv.Add(walker.Entry{Kind: walker.KindTagCurrentLink, Key: mustKey(f.tb, layout.TagCurrentLink{Repo: repo, Tag: tag}), Repo: repo, Tag: tag, Digest: d, ModTime: t0})
	f.inv.Add(walker.Entry{Kind: walker.KindTagIndexLink, Key: mustKey(f.tb, layout.TagIndexLink{Repo: repo, Tag: tag, Digest: d}), Repo: repo, Tag: tag, Digest: d, ModTime: t0})
}

// push stores manifest d's revision link and tags it.
func (f *fixture) push(repo, tag string, d digest.Digest) {
	f.rev(repo, d)
	if tag != "" {
		f.tag(repo, tag, d)
	}
}

type desc struct {
	MediaType string        `json:"mediaType,omitempty"`
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
	URLs      []string      `json:"urls,omitempty"`
}

func (f *fixture) marshal(v map[string]any) []byte {
	f.nonce++
	v["annotations"] = map[string]string{"test.nonce": fmt.Sprint(f.nonce)}
	b, err := json.MarshalIndent(v, "", "   ")
	if err != nil {
		f.tb.Fatal(err)
	}
	return b
}

func layerDescs(mt string, ds []digest.Digest) []desc {
	out := []desc{}
	for _, d := range ds {
		out = append(out, desc{MediaType: mt, Digest: d, Size: 1234})
	}
	return out
}

// imageBody is a Docker schema2 manifest with a fresh stored config.
func (f *fixture) imageBody(layers ...digest.Digest) []byte {
	return f.marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     manifest.MediaTypeDockerSchema2,
		"config":        desc{MediaType: "application/vnd.docker.container.image.v1+json", Digest: f.blob(), Size: 1500},
		"layers":        layerDescs("application/vnd.docker.image.rootfs.diff.tar.gzip", layers),
	})
}

// image stores a schema2 image manifest and returns its digest.
func (f *fixture) image(layers ...digest.Digest) digest.Digest {
	return f.store(f.imageBody(layers...))
}

func (f *fixture) indexBody(children ...digest.Digest) []byte {
	return f.marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     manifest.MediaTypeOCIIndex,
		"manifests":     layerDescs(manifest.MediaTypeOCIManifest, children),
	})
}

func (f *fixture) index(children ...digest.Digest) digest.Digest {
	return f.store(f.indexBody(children...))
}

// referrer stores an OCI 1.1 referrer of subject with one fresh blob.
func (f *fixture) referrer(subject digest.Digest) digest.Digest {
	return f.store(f.marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     manifest.MediaTypeOCIManifest,
		"artifactType":  "application/vnd.dev.cosign.artifact.sig.v1+json",
		"config":        desc{MediaType: "application/vnd.oci.empty.v1+json", Digest: f.blob(), Size: 2},
		"layers":        layerDescs("application/vnd.dev.cosign.simplesigning.v1+json", []digest.Digest{f.blob()}),
		"subject":       desc{MediaType: manifest.MediaTypeOCIManifest, Digest: subject, Size: 1000},
	}))
}

// blobsOf returns the blobs of stored manifest d, config first.
func (f *fixture) blobsOf(d digest.Digest) []digest.Digest {
	m, err := manifest.Parse(f.src.blobs[d])
	if err != nil {
		f.tb.Fatal(err)
	}
	return m.Blobs
}

func (f *fixture) run(opts mark.Options) *mark.Result {
	f.tb.Helper()
	res, err := mark.Run(context.Background(), f.inv, f.src, opts)
	if err != nil {
		f.tb.Fatalf("Run: %v", err)
	}
	return res
}

func keys(m *blobindex.Set) []string {
	var out []string
	for d := range m.All() {
		out = append(out, d.String())
	}
	sort.Strings(out)
	return out
}

type problemID struct {
	Kind   finding.Kind
	Repo   string
	Digest digest.Digest
}

func problemIDs(ps []finding.Finding) []problemID {
	var out []problemID
	for _, p := range ps {
		out = append(out, problemID{p.Kind, p.Repo, p.Digest})
	}
	slices.SortFunc(out, func(a, b problemID) int {
		return strings.Compare(fmt.Sprint(a), fmt.Sprint(b))
	})
	return out
}
