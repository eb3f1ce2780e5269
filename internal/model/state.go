// Package model is the randomised model test's kit: a generator of random
// registry states (manifests of every type in random DAGs, tags across
// repositories, shared layers, tag moves, deletions, dangling, corrupt and
// young entries, uploads) written to the memory driver, and a reference
// model of what a sweep must delete, written from the rules of the gc
// issue without using mark or sweep.
//
// The generator records what it meant (which digest is a manifest, what
// it references, which link is corrupt), so the reference model never
// parses what was stored: a disagreement with regsweep points at one of
// the two, and the test prints the seed to replay it.
//
// Test support only: it may not be imported by product code, and the
// reference model may not call mark, sweep or gc.
package model

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/storage"
)

// State is a generated registry.
type State struct {
	Seed uint64
	// Now is the clock of the run; every mtime is relative to it.
	Now time.Time
	// Blobs holds every digest the state mentions, stored or not.
	Blobs map[digest.Digest]*Blob
	Repos map[string]*Repo
	// Strays are keys under repositories/ that fit no layout.
	Strays map[string]time.Time
}

// Blob is one digest.
type Blob struct {
	Digest digest.Digest
	// Stored: blobs/<alg>/../<hex>/data exists.
	Stored  bool
	Content []byte
	ModTime time.Time
	// Manifest is set when the digest was generated as a manifest.
	Manifest *Manifest
}

// Manifest is what a generated manifest means.
type Manifest struct {
	Type string
	// Valid is false when the stored content cannot be a manifest: not
	// JSON, or not the content its digest names.
	Valid    bool
	Blobs    []digest.Digest // config, layers, artifact blobs, fsLayers
	Foreign  []digest.Digest // the subset of Blobs with URLs, never stored
	Children []digest.Digest
	Subject  digest.Digest
}

// Link is one link file.
type Link struct {
	ModTime time.Time
	// Corrupt, when non-empty, is what the link holds instead of its
	// digest ("" content is written as an empty file when CorruptEmpty).
	Corrupt      string
	CorruptEmpty bool
}

// IsCorrupt reports whether the link does not hold its digest.
func (l Link) IsCorrupt() bool { return l.Corrupt != "" || l.CorruptEmpty }

func (l Link) content(d digest.Digest) []byte {
	switch {
	case l.CorruptEmpty:
		return []byte{}
	case l.Corrupt != "":
		return []byte(l.Corrupt)
	}
	return []byte(d.String())
}

// Tag is a tag: its current link (if any) and its history.
type Tag struct {
	HasCurrent bool
	Current    digest.Digest
	CurrentL   Link
	Index      map[digest.Digest]Link
}

// Upload is an _uploads/<id> directory.
type Upload struct {
	// StartedAt is what startedat holds, "" when the file is absent.
	StartedAt     string
	StartedAtTime time.Time // mtime of startedat
	Data          *time.Time
	HashState     *time.Time
}

// Repo is one repository.
type Repo struct {
	Revisions map[digest.Digest]Link
	Layers    map[digest.Digest]Link
	Tags      map[string]*Tag
	Uploads   map[string]*Upload
}

func newRepo() *Repo {
	return &Repo{Revisions: map[digest.Digest]Link{}, Layers: map[digest.Digest]Link{}, Tags: map[string]*Tag{}, Uploads: map[string]*Upload{}}
}

// hasKeys reports whether the repository has anything in storage.
func (r *Repo) hasKeys() bool {
	return len(r.Revisions)+len(r.Layers)+len(r.Tags)+len(r.Uploads) > 0
}

// Object is one stored key.
type Object struct {
	Data    []byte
	ModTime time.Time
}

// Objects lists every key the state stores.
func (s *State) Objects() map[string]Object {
	out := map[string]Object{}
	put := func(spec layout.Spec, data []byte, mtime time.Time) {
		k, err := layout.Path(spec)
		if err != nil {
			panic("model: generated an invalid spec: " + err.Error())
		}
		out[k] = Object{data, mtime}
	}
	for d, b := range s.Blobs {
		if b.Stored {
			put(layout.BlobData{Digest: d}, b.Content, b.ModTime)
		}
	}
	for name, r := range s.Repos {
		for d, l := range r.Revisions {
			put(layout.RevisionLink{Repo: name, Digest: d}, l.content(d), l.ModTime)
		}
		for d, l := range r.Layers {
			put(layout.LayerLink{Repo: name, Digest: d}, l.content(d), l.ModTime)
		}
		for tn, t := range r.Tags {
			if t.HasCurrent {
				put(layout.TagCurrentLink{Repo: name, Tag: tn}, t.CurrentL.content(t.Current), t.CurrentL.ModTime)
			}
			for d, l := range t.Index {
				put(layout.TagIndexLink{Repo: name, Tag: tn, Digest: d}, l.content(d), l.ModTime)
			}
		}
		for id, u := range r.Uploads {
			if u.StartedAt != "" {
				put(layout.UploadStartedAt{Repo: name, ID: id}, []byte(u.StartedAt), u.StartedAtTime)
			}
			if u.Data != nil {
				put(layout.UploadData{Repo: name, ID: id}, []byte("partial upload "+id), *u.Data)
			}
			if u.HashState != nil {
				put(layout.UploadHashState{Repo: name, ID: id, Alg: "sha256", Offset: 15}, []byte("hash state"), *u.HashState)
			}
		}
	}
	for k, mt := range s.Strays {
		out[k] = Object{[]byte("stray"), mt}
	}
	return out
}

// Write stores the state in m.
func (s *State) Write(m *storage.Memory) {
	for k, o := range s.Objects() {
		m.PutAt(k, o.Data, o.ModTime)
	}
}

// Snapshot is the registry keys of a store with their content.
func Snapshot(ctx context.Context, d storage.Driver) (map[string]string, error) {
	out := map[string]string{}
	err := d.Walk(ctx, layout.Root, func(oi storage.ObjectInfo) error {
		b, err := d.Get(ctx, oi.Key, 1<<20)
		if err != nil {
			return err
		}
		out[oi.Key] = string(b)
		return nil
	})
	return out, err
}

// SortedKeys returns the keys of m sorted.
func SortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Describe lists the state for a human replaying a seed: digests are
// shortened to 12 hex digits, ages are relative to Now.
func (s *State) Describe() string {
	short := func(d digest.Digest) string {
		if e := d.Encoded(); len(e) >= 12 {
			return e[:12]
		}
		return string(d)
	}
	age := func(t time.Time) string { return s.Now.Sub(t).String() }
	var b strings.Builder
	var ds []string
	for d := range s.Blobs {
		ds = append(ds, string(d))
	}
	sort.Strings(ds)
	for _, ds := range ds {
		bl := s.Blobs[digest.Digest(ds)]
		fmt.Fprintf(&b, "blob %s stored=%v age=%s", short(bl.Digest), bl.Stored, age(bl.ModTime))
		if m := bl.Manifest; m != nil {
			fmt.Fprintf(&b, " manifest %s valid=%v", m.Type, m.Valid)
			for _, x := range m.Blobs {
				fmt.Fprintf(&b, " blob:%s", short(x))
			}
			for _, x := range m.Children {
				fmt.Fprintf(&b, " child:%s", short(x))
			}
			if m.Subject != "" {
				fmt.Fprintf(&b, " subject:%s", short(m.Subject))
			}
		}
		b.WriteString("\n")
	}
	link := func(kind string, d digest.Digest, l Link) {
		fmt.Fprintf(&b, "  %s %s age=%s", kind, short(d), age(l.ModTime))
		if l.IsCorrupt() {
			fmt.Fprintf(&b, " corrupt=%q", l.Corrupt)
		}
		b.WriteString("\n")
	}
	for _, name := range SortedKeys(s.Repos) {
		r := s.Repos[name]
		fmt.Fprintf(&b, "repository %s\n", name)
		for d, l := range r.Revisions {
			link("revision", d, l)
		}
		for d, l := range r.Layers {
			link("layer", d, l)
		}
		for _, tn := range SortedKeys(r.Tags) {
			t := r.Tags[tn]
			if t.HasCurrent {
				link("tag "+tn+" current", t.Current, t.CurrentL)
			}
			for d, l := range t.Index {
				link("tag "+tn+" index", d, l)
			}
		}
		for _, id := range SortedKeys(r.Uploads) {
			u := r.Uploads[id]
			fmt.Fprintf(&b, "  upload %s startedat=%q\n", id, u.StartedAt)
		}
	}
	for k := range s.Strays {
		fmt.Fprintf(&b, "stray %s\n", k)
	}
	return b.String()
}
