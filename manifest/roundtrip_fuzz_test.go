package manifest_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/manifest"
)

// choices reads fuzz bytes as a stream of small decisions.
type choices struct {
	b []byte
	i int
}

func (c *choices) next(n int) int {
	if c.i >= len(c.b) || n <= 0 {
		return 0
	}
	c.i++
	return int(c.b[c.i-1]) % n
}

// FuzzParseRoundTrip builds a manifest of every type Parse knows (and an
// unknown one carrying references) from the fuzz input, with a known set
// of references, writes it as JSON and checks that Parse returns exactly
// those references: every blob once, in document order, children and
// subject as written, foreign blobs exactly those every mention gives
// URLs for. (FuzzParse covers arbitrary bytes.)
func FuzzParseRoundTrip(f *testing.F) {
	for _, s := range []string{"", "\x00", "\x01\x02\x03", "\x04\x05\x06\x07", "\x08\x01\x01\x01\x01", "\x09\x03\x00\x01\x02", "\x0a\x02\x05\x05"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c := &choices{b: in}
		pool := make([]digest.Digest, 6)
		for i := range pool {
			pool[i] = digest.FromString(fmt.Sprintf("blob-%d", i))
		}
		pool = append(pool, digest.Digest("sha512:"+fmt.Sprintf("%0128x", 7)))
		type desc struct {
			MediaType string        `json:"mediaType"`
			Digest    digest.Digest `json:"digest"`
			Size      int           `json:"size"`
			URLs      []string      `json:"urls,omitempty"`
		}
		var wantBlobs, wantChildren []digest.Digest
		foreign, local := map[digest.Digest]bool{}, map[digest.Digest]bool{}
		blob := func() desc {
			d := pool[c.next(len(pool))]
			if !slices.Contains(wantBlobs, d) {
				wantBlobs = append(wantBlobs, d)
			}
			out := desc{MediaType: "application/octet-stream", Digest: d, Size: 1}
			if c.next(4) == 0 {
				out.URLs = []string{"https://example.invalid/" + d.Encoded()}
				foreign[d] = true
			} else {
				local[d] = true
			}
			return out
		}
		blobs := func() []desc {
			out := []desc{}
			for range c.next(5) {
				out = append(out, blob())
			}
			return out
		}
		types := []string{manifest.MediaTypeDockerSchema2, manifest.MediaTypeOCIManifest, "", manifest.MediaTypeOCIIndex,
			manifest.MediaTypeDockerManifestList, manifest.MediaTypeOCIArtifact, manifest.MediaTypeDockerSchema1,
			manifest.MediaTypeDockerSchema1Signed, "application/vnd.example.unknown+json", "index-without-mediatype"}
		mt := types[c.next(len(types))]
		doc := map[string]any{"schemaVersion": 2}
		wantType := mt
		switch mt {
		case manifest.MediaTypeDockerSchema2, manifest.MediaTypeOCIManifest, "", "application/vnd.example.unknown+json":
			doc["config"] = blob()
			doc["layers"] = blobs()
			if mt == "" {
				wantType = manifest.MediaTypeOCIManifest
			}
		case manifest.MediaTypeOCIIndex, manifest.MediaTypeDockerManifestList, "index-without-mediatype":
			var ms []desc
			for range c.next(4) {
				d := digest.FromString(fmt.Sprintf("child-%d", c.next(3)))
				if !slices.Contains(wantChildren, d) {
					wantChildren = append(wantChildren, d)
				}
				ms = append(ms, desc{MediaType: manifest.MediaTypeOCIManifest, Digest: d, Size: 1})
			}
			doc["manifests"] = append([]desc{}, ms...)
			if mt == "index-without-mediatype" {
				mt, wantType = "", manifest.MediaTypeOCIIndex
			}
		case manifest.MediaTypeOCIArtifact:
			doc = map[string]any{"blobs": blobs()}
		case manifest.MediaTypeDockerSchema1, manifest.MediaTypeDockerSchema1Signed:
			var fs []map[string]digest.Digest
			for range c.next(4) {
				d := pool[c.next(len(pool))]
				if !slices.Contains(wantBlobs, d) {
					wantBlobs = append(wantBlobs, d)
				}
				local[d] = true
				fs = append(fs, map[string]digest.Digest{"blobSum": d})
			}
			doc = map[string]any{"schemaVersion": 1, "name": "x", "tag": "t", "fsLayers": append([]map[string]digest.Digest{}, fs...)}
			if mt == manifest.MediaTypeDockerSchema1Signed {
				doc["signatures"] = []map[string]string{{"signature": "c2ln"}}
			}
			mt = "" // schema1 is recognised by its shape
		}
		if mt != "" {
			doc["mediaType"] = mt
		}
		var wantSubject digest.Digest
		if c.next(3) == 0 && wantType != manifest.MediaTypeDockerSchema1 && wantType != manifest.MediaTypeDockerSchema1Signed {
			wantSubject = digest.FromString(fmt.Sprintf("subject-%d", c.next(2)))
			doc["subject"] = desc{MediaType: manifest.MediaTypeOCIManifest, Digest: wantSubject, Size: 1}
		}
		body, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		m, err := manifest.Parse(body)
		if err != nil {
			t.Fatalf("Parse(%s): %v", body, err)
		}
		var wantForeign []digest.Digest
		for _, d := range wantBlobs {
			if foreign[d] && !local[d] {
				wantForeign = append(wantForeign, d)
			}
		}
		if m.MediaType != wantType {
			t.Errorf("MediaType %q, want %q", m.MediaType, wantType)
		}
		if !slices.Equal(m.Blobs, wantBlobs) || !slices.Equal(m.Children, wantChildren) || !slices.Equal(m.ForeignBlobs, wantForeign) || m.Subject != wantSubject {
			t.Errorf("Parse(%s)\n got blobs %v children %v foreign %v subject %q\nwant blobs %v children %v foreign %v subject %q",
				body, m.Blobs, m.Children, m.ForeignBlobs, m.Subject, wantBlobs, wantChildren, wantForeign, wantSubject)
		}
	})
}
