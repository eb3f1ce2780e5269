package sweep

import (
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/blobindex"
	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/mark"
	"github.com/regsweep/regsweep/walker"
)

// Manifests says what manifest d references (mark.References).
type Manifests = mark.References

// RecheckStats says what a recheck took out of the plan.
type RecheckStats struct {
	Dropped      int  `json:"dropped"`
	Gone         int  `json:"gone"`
	Changed      int  `json:"changed"`
	Protected    int  `json:"protected"`
	BlobsChecked bool `json:"blobs_checked"`
	// Healed counts links this run deleted and wrote again because a push
	// since the plan needs them (ExecuteChecked).
	Healed int `json:"healed"`
	// Walks counts the listings the rechecks made.
	Walks int `json:"walks"`
}

// protection is what the links that stay need, per repository and
// overall.
type protection struct {
	fresh     *walker.Inventory
	manifests Manifests
	marked    *mark.Result // nil, or the mark of fresh itself
	perRepo   map[string]*blobindex.Set
	global    *blobindex.Set
	// referrers[repo][subject] are the revisions attached to subject.
	referrers  map[string]map[digest.Digest][]digest.Digest
	unreadable map[string]bool
	// walked holds, per repository, the manifests already followed. It is
	// not the protected set: a digest first protected as a blob (a layer
	// link to a manifest, as registry 2.1 wrote) must still be followed
	// when a link names it as a manifest.
	walked map[string]*blobindex.Set
}

// set returns sets[repo], creating it.
func (p *protection) set(sets map[string]*blobindex.Set, repo string) *blobindex.Set {
	s := sets[repo]
	if s == nil {
		s = p.fresh.NewBlobSet(false)
		sets[repo] = s
	}
	return s
}

func (p *protection) mark(repo string, d digest.Digest) bool {
	if !p.set(p.perRepo, repo).Add(d) {
		return false
	}
	p.global.Add(d)
	return true
}

// protected reports whether repo's links that stay need d.
func (p *protection) protected(repo string, d digest.Digest) bool {
	set := p.perRepo[repo]
	return set != nil && set.Has(d)
}

// blobAt protects the listed blob with this ID, as blob does its digest.
func (p *protection) blobAt(repo string, id blobindex.ID) {
	if p.set(p.perRepo, repo).AddID(id) {
		p.global.AddID(id)
	}
}

// blob protects a digest that is only a blob (a layer or config).
func (p *protection) blob(repo string, d digest.Digest) {
	if d != "" {
		p.mark(repo, d)
	}
}

// manifest protects a manifest and, transitively, what it references,
// what it is attached to and what is attached to it.
func (p *protection) manifest(repo string, d digest.Digest) {
	work := []digest.Digest{d}
	for len(work) > 0 {
		d := work[len(work)-1]
		work = work[:len(work)-1]
		if d == "" || !p.set(p.walked, repo).Add(d) {
			continue
		}
		p.mark(repo, d)
		children, subject, ok := p.references(repo, d)
		if !ok {
			p.unreadable[repo] = true
			continue
		}
		work = append(work, children...)
		work = append(work, subject)
		work = append(work, p.referrers[repo][d]...)
	}
}

// references protects the blobs manifest d references in repo and returns
// the rest of what it references.
func (p *protection) references(repo string, d digest.Digest) (children []digest.Digest, subject digest.Digest, ok bool) {
	if p.marked != nil {
		children, subject, ok, found := p.marked.ReferencesAt(p.fresh, d, func(id blobindex.ID, b digest.Digest, indexed bool) {
			if indexed {
				p.blobAt(repo, id)
			} else {
				p.blob(repo, b)
			}
		})
		if found {
			return children, subject, ok
		}
	}
	children, blobs, subject, ok := p.manifests(d)
	if ok {
		for _, b := range blobs {
			p.blob(repo, b)
		}
	}
	return children, subject, ok
}

// subject is the manifest d is attached to, if any.
func (p *protection) subject(d digest.Digest) digest.Digest {
	if p.marked != nil {
		if _, subject, ok, found := p.marked.ReferencesAt(p.fresh, d, nil); found {
			if ok {
				return subject
			}
			return ""
		}
	}
	if _, _, subject, ok := p.manifests(d); ok {
		return subject
	}
	return ""
}

// Recheck compares the plan with a fresh walk taken just before deleting
// and drops every item that is no longer garbage: keys already gone, keys
// rewritten since (another mtime: they count as links that stay), and
// whatever a link that stays needs — the manifest it names, everything that
// manifest references, its subject and its referrers, transitively. fresh
// may hold only the repository tree (blobsListed false): blob items are
// then judged by the links alone. Stats are recomputed.
func (p *Plan) Recheck(fresh *walker.Inventory, blobsListed bool, manifests Manifests) RecheckStats {
	st, _ := p.recheck(fresh, blobsListed, manifests, nil, nil)
	return st
}

// recheck is Recheck; marked, when not nil, is the mark of fresh itself.
// deleted are links this run deleted (no longer items of p): heal returns
// those that fresh lacks and that a link that stays needs.
func (p *Plan) recheck(fresh *walker.Inventory, blobsListed bool, manifests Manifests, marked *mark.Result, deleted []Item) (st RecheckStats, heal []Item) {
	st = RecheckStats{BlobsChecked: blobsListed}
	planned := make(map[string]Item, len(p.Items))
	for _, it := range p.Items {
		planned[it.Key] = it
	}
	staying := func(key string, mtime int64) bool {
		it, ok := planned[key]
		return !ok || it.ModTime.Unix() != mtime
	}
	// A link whose digest no planned link of its repository names stays,
	// and needs no key built: most links, and a key per link was most of
	// what a recheck allocated. A plan item without its digest filters
	// nothing out, and so only keeps more.
	linkDigests := map[string]map[digest.Digest]bool{}
	for _, it := range p.Items {
		switch it.Kind {
		case KindRevisionLink, KindLayerLink, KindTagIndexLink:
			if linkDigests[it.Repo] == nil {
				linkDigests[it.Repo] = map[digest.Digest]bool{}
			}
			linkDigests[it.Repo][it.Digest] = true
		}
	}
	prot := &protection{fresh: fresh, manifests: manifests, marked: marked, perRepo: map[string]*blobindex.Set{}, global: fresh.NewBlobSet(true),
		referrers: map[string]map[digest.Digest][]digest.Digest{}, unreadable: map[string]bool{}, walked: map[string]*blobindex.Set{}}

	repoHasStaying := map[string]bool{}
	for name, r := range fresh.Repositories {
		refs := map[digest.Digest][]digest.Digest{}
		for d := range r.Revisions.All() {
			if subject := prot.subject(d); subject != "" {
				refs[subject] = append(refs[subject], d)
			}
		}
		prot.referrers[name] = refs
	}
	for name, r := range fresh.Repositories {
		var roots []digest.Digest
		note := func(key string, mtime int64) bool {
			if staying(key, mtime) {
				repoHasStaying[name] = true
				return true
			}
			return false
		}
		mayBePlanned := linkDigests[name]
		// A repository the registry changed under this walk keeps all its
		// links: what it holds now is not what was walked.
		_, changing := fresh.Changing[name]
		noteLink := func(d digest.Digest, key func() string, mtime int64) bool {
			if changing || !mayBePlanned[d] && !mayBePlanned[""] {
				repoHasStaying[name] = true
				return true
			}
			return note(key(), mtime)
		}
		for d, l := range r.Revisions.All() {
			if noteLink(d, func() string { return keyOf(revisionSpec(name, d)) }, l.ModTime) {
				roots = append(roots, d)
			}
		}
		layer := func(d digest.Digest) {
			l, _ := r.Layers.Get(d)
			if noteLink(d, func() string { return keyOf(layerSpec(name, d)) }, l.ModTime) {
				prot.blob(name, d)
			}
		}
		for id := range r.Layers.IDs() {
			if len(mayBePlanned) == 0 && !changing {
				// Nothing of this repository is planned: the link stays,
				// and its blob is protected by ID.
				repoHasStaying[name] = true
				prot.blobAt(name, id)
				continue
			}
			layer(fresh.Blobs.Digest(id))
		}
		for d := range r.Layers.Unindexed() {
			layer(d)
		}
		for tag, t := range r.Tags {
			for d, l := range t.Index.All() {
				if noteLink(d, func() string { return keyOf(tagIndexSpec(name, tag, d)) }, l.ModTime) {
					roots = append(roots, d)
				}
			}
			if t.HasCurrent && (changing || note(keyOf(tagCurrentSpec(name, tag)), t.CurrentModTime)) && t.Current != "" {
				roots = append(roots, t.Current)
			}
		}
		for _, u := range r.Uploads {
			for _, f := range u.Files {
				if staying(f.Key, f.ModTime.Unix()) {
					repoHasStaying[name] = true
				}
			}
		}
		for _, d := range roots {
			prot.manifest(name, d)
		}
	}

	dropped := map[string]bool{} // keys of dropped items
	droppedRepo := map[string]bool{}
	count := func(it Item, why string) {
		dropped[it.Key] = true
		if it.Repo != "" {
			droppedRepo[it.Repo] = true
		}
		st.Dropped++
		switch why {
		case "gone":
			st.Gone++
		case "changed":
			st.Changed++
		default:
			st.Protected++
		}
	}
	// Links first: later passes depend on which of them stay.
	changedUploads := map[string]bool{}
	for _, it := range p.Items {
		if _, changing := fresh.Changing[it.Repo]; changing && it.Repo != "" && it.Kind != KindBlob && it.Kind != KindSegment {
			count(it, "changed")
			continue
		}
		switch it.Kind {
		case KindRevisionLink, KindLayerLink, KindTagIndexLink, KindTagCurrentLink:
			mtime, exists := freshLinkMTime(fresh, it.Key)
			switch {
			case !exists:
				count(it, "gone")
			case mtime != it.ModTime.Unix():
				count(it, "changed")
			case it.Kind != KindTagCurrentLink && (prot.protected(it.Repo, it.Digest) || prot.unreadable[it.Repo]):
				count(it, "protected")
			}
		case KindUploadFile:
			if u := fresh.Repositories[it.Repo]; u != nil && u.Uploads[it.UploadID] != nil {
				for _, f := range u.Uploads[it.UploadID].Files {
					if staying(f.Key, f.ModTime.Unix()) {
						changedUploads[it.Repo+"/"+it.UploadID] = true
					}
				}
			}
		}
	}
	for _, it := range p.Items {
		switch it.Kind {
		case KindUploadFile:
			if changedUploads[it.Repo+"/"+it.UploadID] {
				count(it, "changed")
			}
		case KindSignatureLink:
			// A signature goes only with its revision.
			revKey := keyOf(revisionSpec(it.Repo, it.Manifest))
			if dropped[revKey] || prot.protected(it.Repo, it.Manifest) || prot.unreadable[it.Repo] {
				count(it, "protected")
				prot.global.Add(it.Digest)
			}
		}
	}
	deletedBlobs := map[digest.Digest]bool{}
	for _, it := range p.Items {
		if it.Kind != KindBlob {
			continue
		}
		switch {
		case prot.global.Has(it.Digest) || len(prot.unreadable) > 0:
			count(it, "protected")
		case blobsListed:
			b, exists := fresh.Blobs.Get(it.Digest)
			switch {
			case !exists:
				count(it, "gone")
			case b.ModTime != it.ModTime.Unix():
				count(it, "changed")
			default:
				deletedBlobs[it.Digest] = true
			}
		default:
			deletedBlobs[it.Digest] = true
		}
	}
	liveSegments := map[string]bool{}
	if blobsListed {
		for d, segments := range fresh.BlobSegments.All() {
			if !deletedBlobs[d] {
				liveSegments[segments] = true
			}
		}
	}
	for _, it := range p.Items {
		if it.Kind != KindSegment {
			continue
		}
		// A deleted blob's segments go only with the blob; an orphan set
		// only while no blob points at it.
		if (it.Digest != "" && !deletedBlobs[it.Digest]) || liveSegments[it.Segments] {
			count(it, "protected")
		}
	}
	for _, it := range p.Items {
		if it.Kind == KindRepository && (droppedRepo[it.Repo] || repoHasStaying[it.Repo]) {
			count(it, "changed")
		}
	}
	kept := p.Items[:0]
	for _, it := range p.Items {
		if !dropped[it.Key] {
			kept = append(kept, it)
		}
	}
	p.Items = kept
	p.Stats = p.itemStats(p.Stats)
	for _, it := range deleted {
		switch it.Kind {
		case KindRevisionLink, KindLayerLink:
			if _, exists := freshLinkMTime(fresh, it.Key); exists || strings.HasPrefix(it.Reason, "dangling") {
				continue
			}
			if prot.protected(it.Repo, it.Digest) {
				heal = append(heal, it)
			}
		}
	}
	return st, heal
}

// freshLinkMTime finds a link key in a walk without an index of every key.
func freshLinkMTime(fresh *walker.Inventory, key string) (int64, bool) {
	spec, err := layout.Parse(key)
	if err != nil {
		return 0, false
	}
	r := fresh.Repositories[layout.Repo(spec)]
	if r == nil {
		return 0, false
	}
	switch s := spec.(type) {
	case layout.RevisionLink:
		l, ok := r.Revisions.Get(s.Digest)
		return l.ModTime, ok
	case layout.LayerLink:
		l, ok := r.Layers.Get(s.Digest)
		return l.ModTime, ok
	case layout.TagIndexLink:
		if t := r.Tags[s.Tag]; t != nil {
			l, ok := t.Index.Get(s.Digest)
			return l.ModTime, ok
		}
	case layout.TagCurrentLink:
		if t := r.Tags[s.Tag]; t != nil && t.HasCurrent {
			return t.CurrentModTime, true
		}
	}
	return 0, false
}
