// Package manifest reads what a stored manifest references: the blobs it
// needs, the manifests it lists, and the manifest it is attached to.
//
// Parse understands Docker schema1 (signed and unsigned), Docker schema2,
// Docker manifest lists, OCI image manifests and indexes (with or without a
// mediaType field), OCI artifact manifests, and any other media type whose
// document carries config, layers, manifests or blobs. References are read
// from every such field whatever the media type says, so a document that
// mixes fields never hides a reference. A document Parse cannot account for
// is an error, never "references nothing".
//
// It owns the parsing of manifest documents, pure: it reads no storage
// and decides nothing about liveness (mark does).
package manifest

import (
	"bytes"
	// Registered so that sha256, sha384 and sha512 digests validate: go-digest
	// knows an algorithm only when its hash is linked in.
	_ "crypto/sha256"
	_ "crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/opencontainers/go-digest"
)

// Media types Parse knows by name.
const (
	MediaTypeDockerSchema1       = "application/vnd.docker.distribution.manifest.v1+json"
	MediaTypeDockerSchema1Signed = "application/vnd.docker.distribution.manifest.v1+prettyjws"
	MediaTypeDockerSchema2       = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList  = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeOCIManifest         = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeOCIIndex            = "application/vnd.oci.image.index.v1+json"
	MediaTypeOCIArtifact         = "application/vnd.oci.artifact.manifest.v1+json"
)

// Manifest is what a manifest references.
type Manifest struct {
	// MediaType is the declared media type, or the one its shape implies
	// when the document has none.
	MediaType string
	// Blobs are stored as blobs and linked in a repository's _layers:
	// config, layers (foreign ones included), artifact blobs, schema1
	// fsLayers. No duplicates, in document order.
	Blobs []digest.Digest
	// Children are the manifests an index or manifest list lists.
	Children []digest.Digest
	// Subject is the manifest this one is attached to (OCI 1.1), "" if none.
	Subject digest.Digest
	// ForeignBlobs is the subset of Blobs that every mention gives URLs
	// for (foreign or non-distributable layers): storage may lack them.
	ForeignBlobs []digest.Digest
}

// ErrNoReferences is wrapped by the ParseError of a JSON document that has
// no known media type and none of the fields that carry references.
var ErrNoReferences = errors.New("unknown manifest type without references")

// ParseError says what is wrong with a document.
type ParseError struct {
	// Field is the JSON path of the offending value ("layers[2].digest"),
	// "" when the document as a whole is at fault.
	Field string
	// Reason describes the fault.
	Reason string
	// Err is the underlying error (JSON, digest), if any.
	Err error
}

func (e *ParseError) Error() string {
	msg := "manifest: "
	if e.Field != "" {
		msg += e.Field + ": "
	}
	msg += e.Reason
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *ParseError) Unwrap() error { return e.Err }

type descriptor struct {
	MediaType string        `json:"mediaType"`
	Digest    digest.Digest `json:"digest"`
	URLs      []string      `json:"urls"`
}

type fsLayer struct {
	BlobSum digest.Digest `json:"blobSum"`
}

// document holds every field that can carry a reference. Slices are nil
// when the field is absent (or null) and non-nil when present, even empty.
type document struct {
	SchemaVersion *int            `json:"schemaVersion"`
	MediaType     string          `json:"mediaType"`
	Config        *descriptor     `json:"config"`
	Layers        []descriptor    `json:"layers"`
	Manifests     []descriptor    `json:"manifests"`
	Blobs         []descriptor    `json:"blobs"`
	Subject       *descriptor     `json:"subject"`
	FSLayers      []fsLayer       `json:"fsLayers"`
	Signatures    json.RawMessage `json:"signatures"`
}

// Parse reads a manifest's references. Every digest it returns is valid.
func Parse(body []byte) (*Manifest, error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, &ParseError{Reason: "not a JSON object"}
	}
	var doc document
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, &ParseError{Reason: "invalid manifest JSON", Err: err}
	}

	mt, err := mediaType(&doc)
	if err != nil {
		return nil, err
	}
	c := collector{m: &Manifest{MediaType: mt}}
	if doc.Config != nil {
		c.blob("config", -1, *doc.Config)
	}
	for i, l := range doc.Layers {
		c.blob("layers", i, l)
	}
	for i, b := range doc.Blobs {
		c.blob("blobs", i, b)
	}
	for i, l := range doc.FSLayers {
		c.blob("fsLayers", i, descriptor{Digest: l.BlobSum})
	}
	for i, m := range doc.Manifests {
		if d, ok := c.check("manifests", i, m.Digest); ok && !c.seenChild[d] {
			if c.seenChild == nil {
				c.seenChild = map[digest.Digest]bool{}
			}
			c.seenChild[d] = true
			c.m.Children = append(c.m.Children, d)
		}
	}
	if doc.Subject != nil {
		if d, ok := c.check("subject", -1, doc.Subject.Digest); ok {
			c.m.Subject = d
		}
	}
	if c.err != nil {
		return nil, c.err
	}
	for _, d := range c.m.Blobs {
		if c.foreign[d] && !c.local[d] {
			c.m.ForeignBlobs = append(c.m.ForeignBlobs, d)
		}
	}
	return c.m, nil
}

// mediaType names the document's type and checks the fields its type
// requires.
func mediaType(doc *document) (string, error) {
	mt := doc.MediaType
	schema1 := mt == MediaTypeDockerSchema1 || mt == MediaTypeDockerSchema1Signed ||
		(mt == "" && ((doc.SchemaVersion != nil && *doc.SchemaVersion == 1) || doc.FSLayers != nil))
	switch {
	case schema1:
		if doc.FSLayers == nil {
			return "", &ParseError{Field: "fsLayers", Reason: "schema1 manifest without fsLayers"}
		}
		if mt == "" {
			mt = MediaTypeDockerSchema1
			if len(doc.Signatures) > 0 && !bytes.Equal(doc.Signatures, []byte("null")) {
				mt = MediaTypeDockerSchema1Signed
			}
		}
	case mt == MediaTypeDockerSchema2 || mt == MediaTypeOCIManifest:
		// A registry refuses an image manifest without a config; one
		// without it here is not a document we understand.
		if doc.Config == nil {
			return "", &ParseError{Field: "config", Reason: "image manifest (" + mt + ") without config"}
		}
	case mt == MediaTypeDockerManifestList || mt == MediaTypeOCIIndex:
		// An index may list no manifests.
	case mt == MediaTypeOCIArtifact:
		// blobs and subject are both optional.
	case mt == "":
		switch {
		case doc.Config != nil || doc.Layers != nil:
			mt = MediaTypeOCIManifest
		case doc.Manifests != nil:
			mt = MediaTypeOCIIndex
		case doc.Blobs != nil:
			mt = MediaTypeOCIArtifact
		default:
			return "", &ParseError{Reason: "no mediaType and no config, layers, manifests, blobs or fsLayers", Err: ErrNoReferences}
		}
	default:
		if doc.Config == nil && doc.Layers == nil && doc.Manifests == nil && doc.Blobs == nil {
			return "", &ParseError{Field: "mediaType", Reason: fmt.Sprintf("media type %q has no config, layers, manifests or blobs", truncate(mt, 100)), Err: ErrNoReferences}
		}
	}
	return mt, nil
}

type collector struct {
	m         *Manifest
	err       error
	seenBlob  map[digest.Digest]bool
	seenChild map[digest.Digest]bool
	foreign   map[digest.Digest]bool // mentioned with URLs
	local     map[digest.Digest]bool // mentioned without URLs
}

func (c *collector) blob(field string, i int, desc descriptor) {
	d, ok := c.check(field, i, desc.Digest)
	if !ok {
		return
	}
	if c.seenBlob == nil {
		c.seenBlob, c.foreign, c.local = map[digest.Digest]bool{}, map[digest.Digest]bool{}, map[digest.Digest]bool{}
	}
	if len(desc.URLs) > 0 {
		c.foreign[d] = true
	} else {
		c.local[d] = true
	}
	if !c.seenBlob[d] {
		c.seenBlob[d] = true
		c.m.Blobs = append(c.m.Blobs, d)
	}
}

// check validates one digest; the first failure is kept as c.err.
func (c *collector) check(field string, i int, d digest.Digest) (digest.Digest, bool) {
	if c.err != nil {
		return "", false
	}
	sub := "digest"
	if field == "fsLayers" {
		sub = "blobSum"
	}
	path := func() string {
		p := field
		if i >= 0 {
			p += "[" + strconv.Itoa(i) + "]"
		}
		return p + "." + sub
	}
	if d == "" {
		c.err = &ParseError{Field: path(), Reason: "missing digest"}
		return "", false
	}
	if err := d.Validate(); err != nil {
		c.err = &ParseError{Field: path(), Reason: fmt.Sprintf("invalid digest %q", truncate(string(d), 100)), Err: err}
		return "", false
	}
	return d, true
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
