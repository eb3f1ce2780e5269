package model

import (
	"fmt"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/layout"
)

// Options are the gc options the reference model is asked about.
type Options struct {
	DeleteUntagged bool
	// MaxDeleteFraction refuses a sweep deleting more than this share of
	// the stored blobs; 0 disables the guard.
	MaxDeleteFraction float64
}

// Expectation is what the reference model says a gc must do.
type Expectation struct {
	// Blocked: the sweep must refuse and delete nothing. Why says why.
	Blocked bool
	Why     []string
	// Garbage are the keys a sweep deletes (when not blocked): exactly
	// these go, nothing else.
	Garbage map[string]bool
	// Needed are the stored blobs some kept image needs.
	Needed map[digest.Digest]bool
	// MayRefuseFraction: the share of blobs to delete is over
	// MaxDeleteFraction before what stays protects the rest, and under it
	// after. regsweep judges the guard on a plan part-way between the two
	// (before its last rechecks), so refusing with delete_fraction alone
	// and sweeping exactly the garbage are both right.
	MayRefuseFraction bool
}

type dset map[digest.Digest]bool

// Expect runs the reference model. The rules, from the gc issue:
//
//   - Roots of a repository: the target of each tag's current link; with
//     a corrupt current link, everything in the tag's index; without
//     DeleteUntagged, every revision.
//   - Kept: the roots, the children of kept indexes, and the revisions of
//     the same repository whose subject is kept, to a fixpoint. A
//     repository needs its kept manifests and every blob they reference.
//   - Blocking (nothing is deleted): a corrupt link anywhere; a kept (or,
//     with DeleteUntagged, linked) manifest whose stored content is not a
//     manifest; a kept index whose child storage lacks; a key in the
//     repository tree that fits no layout; no repositories, or no stored
//     blob needed, while blobs exist; more than MaxDeleteFraction of the blobs
//     to delete.
//   - Garbage, when older than the grace: revision and tag history links
//     of manifests not kept (or not stored), layer links the repository
//     does not need (or whose blob is missing), tags of a repository that
//     keeps nothing, blobs nothing needs, uploads started before the
//     upload grace whose files are all old.
//   - A repository that names a manifest storage lacks (a tag's current
//     link, or a revision link) is broken: none of its layer links and
//     none of its revision links to the missing manifests are garbage, so
//     that pushing the manifest again recovers the image.
//   - What stays keeps what it points at: a link that is not garbage (a
//     young one) keeps its manifest, what that references, its subject
//     and its referrers (also when the manifest itself is missing),
//     transitively; a stored manifest that cannot be
//     read there keeps every link of its repository and every blob.
func Expect(s *State, o Options) Expectation {
	e := Expectation{Garbage: map[string]bool{}, Needed: map[digest.Digest]bool{}}
	block := func(format string, a ...any) {
		e.Blocked = true
		e.Why = append(e.Why, fmt.Sprintf(format, a...))
	}
	cutoff := s.Now.Add(-Grace)
	old := func(t time.Time) bool { return !t.After(cutoff) }
	stored := func(d digest.Digest) bool { b := s.Blobs[d]; return b != nil && b.Stored }
	manifestOf := func(d digest.Digest) *Manifest {
		if b := s.Blobs[d]; b != nil && b.Stored && b.Manifest != nil && b.Manifest.Valid {
			return b.Manifest
		}
		return nil
	}
	unreadable := func(d digest.Digest) bool { return stored(d) && manifestOf(d) == nil }

	names := SortedKeys(s.Repos)
	repos := 0
	kept := map[string]dset{}
	need := map[string]dset{}
	for _, name := range names {
		r := s.Repos[name]
		if r.hasKeys() {
			repos++
		}
		k := dset{}
		for _, t := range r.Tags {
			switch {
			case !t.HasCurrent:
			case t.CurrentL.IsCorrupt():
				for d := range t.Index {
					k[d] = true
				}
			default:
				k[t.Current] = true
			}
		}
		for d := range r.Revisions {
			if !o.DeleteUntagged || unreadable(d) {
				k[d] = true
			}
		}
		for changed := true; changed; {
			changed = false
			add := func(d digest.Digest) {
				if !k[d] {
					k[d], changed = true, true
				}
			}
			for d := range k {
				if m := manifestOf(d); m != nil {
					for _, c := range m.Children {
						add(c)
					}
				}
			}
			for d := range r.Revisions {
				if m := manifestOf(d); m != nil && m.Subject != "" && k[m.Subject] {
					add(d)
				}
			}
		}
		n := dset{}
		for d := range k {
			n[d] = true
			if unreadable(d) {
				block("repository %s keeps %s, which is not a readable manifest", name, d)
			}
			if m := manifestOf(d); m != nil {
				for _, b := range m.Blobs {
					n[b] = true
				}
				for _, c := range m.Children {
					if !stored(c) {
						block("repository %s keeps index %s whose child %s is missing", name, d, c)
					}
				}
			}
		}
		kept[name], need[name] = k, n
		for d := range n {
			if stored(d) {
				e.Needed[d] = true
			}
		}
		for d, l := range r.Revisions {
			if l.IsCorrupt() {
				block("corrupt revision link %s in %s", d, name)
			}
		}
		for d, l := range r.Layers {
			if l.IsCorrupt() {
				block("corrupt layer link %s in %s", d, name)
			}
		}
		for tn, t := range r.Tags {
			if t.HasCurrent && t.CurrentL.IsCorrupt() {
				block("corrupt current link of tag %s:%s", name, tn)
			}
			for d, l := range t.Index {
				if l.IsCorrupt() {
					block("corrupt index link %s of tag %s:%s", d, name, tn)
				}
			}
		}
	}
	for k := range s.Strays {
		block("stray key %s", k)
	}
	storedBlobs := 0
	anyNeeded := false
	for d, b := range s.Blobs {
		if !b.Stored {
			continue
		}
		storedBlobs++
		for _, n := range need {
			anyNeeded = anyNeeded || n[d]
		}
	}
	if storedBlobs > 0 && repos == 0 {
		block("no repositories but %d blobs", storedBlobs)
	}
	if storedBlobs > 0 && !anyNeeded {
		block("nothing needed but %d blobs", storedBlobs)
	}

	// Candidates by the mark alone.
	type link struct {
		repo string
		d    digest.Digest
		// blobOnly: a layer link keeps its blob, not a manifest tree.
		blobOnly bool
		// never is set on tag current links: what stays never makes them stay.
		never bool
	}
	links := map[string]link{}
	broken := map[string]bool{}
	for _, name := range names {
		r := s.Repos[name]
		for d := range r.Revisions {
			broken[name] = broken[name] || !stored(d)
		}
		for _, t := range r.Tags {
			broken[name] = broken[name] || (t.HasCurrent && !t.CurrentL.IsCorrupt() && !stored(t.Current))
		}
	}
	key := func(spec layout.Spec) string {
		k, err := layout.Path(spec)
		if err != nil {
			panic(err)
		}
		return k
	}
	for _, name := range names {
		r := s.Repos[name]
		for d, l := range r.Revisions {
			k := key(layout.RevisionLink{Repo: name, Digest: d})
			links[k] = link{repo: name, d: d}
			if old(l.ModTime) && (!kept[name][d] || !stored(d)) && !(broken[name] && !stored(d)) {
				e.Garbage[k] = true
			}
		}
		for tn, t := range r.Tags {
			for d, l := range t.Index {
				k := key(layout.TagIndexLink{Repo: name, Tag: tn, Digest: d})
				links[k] = link{repo: name, d: d}
				if old(l.ModTime) && (!kept[name][d] || !stored(d)) {
					e.Garbage[k] = true
				}
			}
			if t.HasCurrent {
				k := key(layout.TagCurrentLink{Repo: name, Tag: tn})
				links[k] = link{repo: name, d: t.Current, never: true}
				if t.CurrentL.IsCorrupt() {
					links[k] = link{repo: name, never: true}
				}
				if len(kept[name]) == 0 && old(t.CurrentL.ModTime) {
					e.Garbage[k] = true
				}
			}
		}
		for d, l := range r.Layers {
			k := key(layout.LayerLink{Repo: name, Digest: d})
			links[k] = link{repo: name, d: d, blobOnly: true}
			if old(l.ModTime) && (!need[name][d] && !broken[name] || !stored(d)) {
				e.Garbage[k] = true
			}
		}
		for id, u := range r.Uploads {
			var files []string
			var mtimes []time.Time
			if u.StartedAt != "" {
				files, mtimes = append(files, key(layout.UploadStartedAt{Repo: name, ID: id})), append(mtimes, u.StartedAtTime)
			}
			if u.Data != nil {
				files, mtimes = append(files, key(layout.UploadData{Repo: name, ID: id})), append(mtimes, *u.Data)
			}
			if u.HashState != nil {
				files, mtimes = append(files, key(layout.UploadHashState{Repo: name, ID: id, Alg: "sha256", Offset: 15})), append(mtimes, *u.HashState)
			}
			started, err := time.Parse(time.RFC3339, u.StartedAt)
			if err != nil {
				// No readable start time: the upload is as old as its
				// oldest file.
				started = slices.MinFunc(mtimes, time.Time.Compare)
			}
			stale := !started.After(s.Now.Add(-UploadGrace))
			for _, t := range mtimes {
				stale = stale && old(t)
			}
			for _, f := range files {
				if stale {
					e.Garbage[f] = true
				}
			}
		}
	}
	blobKey := map[digest.Digest]string{}
	for d, b := range s.Blobs {
		if !b.Stored {
			continue
		}
		k := key(layout.BlobData{Digest: d})
		blobKey[d] = k
		if old(b.ModTime) && !e.Needed[d] {
			e.Garbage[k] = true
		}
	}

	markedBlobs := 0
	for _, k := range blobKey {
		if e.Garbage[k] {
			markedBlobs++
		}
	}

	// What stays keeps what it points at, until nothing changes.
	for changed := true; changed; {
		changed = false
		keep := func(k string) {
			if e.Garbage[k] {
				delete(e.Garbage, k)
				changed = true
			}
		}
		protected := map[string]dset{}
		anyUnreadable := false
		unreadableRepo := map[string]bool{}
		for _, name := range names {
			p := dset{}
			protected[name] = p
			walked := dset{}
			var tree func(d digest.Digest)
			tree = func(d digest.Digest) {
				if walked[d] {
					return
				}
				walked[d], p[d] = true, true
				// Referrers are attached to the digest, stored or not
				// (OCI lets a referrer land before its subject).
				for rd := range s.Repos[name].Revisions {
					if rm := manifestOf(rd); rm != nil && rm.Subject == d {
						tree(rd)
					}
				}
				if !stored(d) {
					return
				}
				m := manifestOf(d)
				if m == nil {
					unreadableRepo[name], anyUnreadable = true, true
					return
				}
				for _, b := range m.Blobs {
					p[b] = true
				}
				for _, c := range m.Children {
					tree(c)
				}
				if m.Subject != "" {
					tree(m.Subject)
				}
			}
			for k, l := range links {
				if l.repo == name && !e.Garbage[k] && l.d != "" {
					if l.blobOnly {
						p[l.d] = true
					} else {
						tree(l.d)
					}
				}
			}
		}
		for k, l := range links {
			if !l.never && e.Garbage[k] && (protected[l.repo][l.d] || unreadableRepo[l.repo]) {
				keep(k)
			}
		}
		for d, k := range blobKey {
			if !e.Garbage[k] {
				continue
			}
			if anyUnreadable {
				keep(k)
			}
			for _, p := range protected {
				if p[d] {
					keep(k)
				}
			}
		}
	}

	garbageBlobs := 0
	for _, k := range blobKey {
		if e.Garbage[k] {
			garbageBlobs++
		}
	}
	over := func(n int) bool {
		return o.MaxDeleteFraction > 0 && storedBlobs > 0 && float64(n)/float64(storedBlobs) > o.MaxDeleteFraction
	}
	if over(garbageBlobs) {
		block("%d of %d blobs would go, more than %.2f", garbageBlobs, storedBlobs, o.MaxDeleteFraction)
	} else if over(markedBlobs) {
		e.MayRefuseFraction = true
	}
	if e.Blocked {
		e.Garbage = map[string]bool{}
	}
	return e
}
