package sweep

import (
	"context"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/blobindex"
	"github.com/regsweep/regsweep/finding"
	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/mark"
	"github.com/regsweep/regsweep/walker"
)

// RecheckStats says what a recheck took out of the plan.
type RecheckStats struct {
	Dropped      int  `json:"dropped"`
	Gone         int  `json:"gone"`
	Changed      int  `json:"changed"`
	Protected    int  `json:"protected"`
	BlobsChecked bool `json:"blobs_checked"`
	// Healed counts links this run deleted and wrote again because a push
	// since the plan needs them.
	Healed int `json:"healed"`
	// Walks counts the listings the rechecks made.
	Walks int `json:"walks"`
}

// Add sums o into s.
func (s *RecheckStats) Add(o RecheckStats) {
	s.Dropped += o.Dropped
	s.Gone += o.Gone
	s.Changed += o.Changed
	s.Protected += o.Protected
	s.Healed += o.Healed
	s.Walks += o.Walks
	s.BlobsChecked = s.BlobsChecked || o.BlobsChecked
}

// Recheck compares the plan with a fresh walk and drops every item that is
// no longer garbage: keys already gone, keys rewritten since (another
// mtime: they count as links that stay), and whatever a link that stays
// needs. What that is, is one mark (mark.Result.Extend of base, whose
// blob index fresh shares when it lists the repository tree only) from the
// links that stay (mark.Options.Recheck); the recheck is that mark and a
// set difference. fresh may hold only the repository tree
// (blobsListed false): blob items are then judged by the links alone.
// deleted are links this run deleted (no longer items of p): heal returns
// those that fresh lacks and that a link that stays needs. Stats are
// recomputed.
func (p *Plan) Recheck(ctx context.Context, fresh *walker.Inventory, blobsListed bool, base *mark.Result, src mark.Source, concurrency int, deleted []Item) (RecheckStats, []Item, error) {
	stay := p.staying(fresh)
	kept, err := base.Extend(ctx, fresh, src, mark.Options{Roots: stay.rootsOf, Recheck: true, Concurrency: concurrency})
	if err != nil {
		return RecheckStats{}, nil, err
	}
	st, heal := p.drop(fresh, blobsListed, kept, stay, deleted)
	return st, heal, nil
}

// stay is what of a fresh walk stays, by repository: the roots of the
// recheck's mark, and the layer links that keep their blob.
type stay struct {
	roots     map[string][]digest.Digest
	layers    map[string]*blobindex.Set
	anyLayers *blobindex.Set  // every repository's layers
	staying   map[string]bool // the repository has a key that stays
	planned   map[string]Item
}

func (s *stay) rootsOf(repo string) ([]digest.Digest, bool, bool) {
	return s.roots[repo], false, true
}

// staying finds what of fresh stays: every link the plan does not delete,
// or that was written again since (another mtime).
func (p *Plan) staying(fresh *walker.Inventory) *stay {
	s := &stay{roots: map[string][]digest.Digest{}, layers: map[string]*blobindex.Set{}, anyLayers: fresh.NewBlobSet(true),
		staying: map[string]bool{}, planned: make(map[string]Item, len(p.Items))}
	for _, it := range p.Items {
		s.planned[it.Key] = it
	}
	keyStays := func(key string, mtime int64) bool {
		it, ok := s.planned[key]
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
	for name, r := range fresh.Repositories {
		var roots []digest.Digest
		layers := fresh.NewBlobSet(false)
		mayBePlanned := linkDigests[name]
		// A repository the registry changed under this walk keeps all its
		// links: what it holds now is not what was walked.
		_, changing := fresh.Changing[name]
		stays := func(key string, mtime int64) bool {
			if keyStays(key, mtime) {
				s.staying[name] = true
				return true
			}
			return false
		}
		linkStays := func(d digest.Digest, key func() string, mtime int64) bool {
			if changing || !mayBePlanned[d] && !mayBePlanned[""] {
				s.staying[name] = true
				return true
			}
			return stays(key(), mtime)
		}
		for d, l := range r.Revisions.All() {
			if linkStays(d, func() string { return keyOf(revisionSpec(name, d)) }, l.ModTime) {
				roots = append(roots, d)
			}
		}
		layer := func(d digest.Digest) {
			l, _ := r.Layers.Get(d)
			if linkStays(d, func() string { return keyOf(layerSpec(name, d)) }, l.ModTime) {
				layers.Add(d)
				s.anyLayers.Add(d)
			}
		}
		for id := range r.Layers.IDs() {
			if len(mayBePlanned) == 0 && !changing {
				// Nothing of this repository is planned: the link stays,
				// and its blob is kept by ID.
				s.staying[name] = true
				layers.AddID(id)
				s.anyLayers.AddID(id)
				continue
			}
			layer(fresh.Blobs.Digest(id))
		}
		for d := range r.Layers.Unindexed() {
			layer(d)
		}
		for tag, t := range r.Tags {
			if it, ok := s.planned[keyOf(tagCurrentSpec(name, tag))]; ok && it.Kind == KindTag && !changing &&
				t.HasCurrent && t.CurrentModTime == it.ModTime.Unix() && t.Current == it.Digest {
				continue // the whole tag goes: none of its links is a root
			}
			for d, l := range t.Index.All() {
				if linkStays(d, func() string { return keyOf(tagIndexSpec(name, tag, d)) }, l.ModTime) {
					roots = append(roots, d)
				}
			}
			if t.HasCurrent && (changing || stays(keyOf(tagCurrentSpec(name, tag)), t.CurrentModTime)) && t.Current != "" {
				roots = append(roots, t.Current)
			}
		}
		for _, u := range r.Uploads {
			for _, f := range u.Files {
				if keyStays(f.Key, f.ModTime.Unix()) {
					s.staying[name] = true
				}
			}
		}
		s.roots[name], s.layers[name] = roots, layers
	}
	return s
}

// drop takes out of the plan what kept (the mark from the links that stay)
// and the layer links that stay need, and returns what to heal.
func (p *Plan) drop(fresh *walker.Inventory, blobsListed bool, kept *mark.Result, s *stay, deleted []Item) (st RecheckStats, heal []Item) {
	st = RecheckStats{BlobsChecked: blobsListed}
	// protected says whether repo's links that stay need d.
	protected := func(repo string, d digest.Digest) bool {
		if rr := kept.Repos[repo]; rr != nil && (rr.KeptLayers.Has(d) || rr.KeptManifests.Has(d)) {
			return true
		}
		l := s.layers[repo]
		return l != nil && l.Has(d)
	}
	// A manifest that could not be read or parsed where a link that stays
	// leads could need anything: its repository keeps every link, and no
	// blob goes.
	unreadable := map[string]bool{}
	for _, pr := range kept.Problems {
		if pr.Kind == finding.UnparseableManifest {
			unreadable[pr.Repo] = true
		}
	}
	global := func(d digest.Digest) bool { return kept.KeptBlobs.Has(d) || s.anyLayers.Has(d) }

	dropped := map[string]bool{} // keys of dropped items
	droppedRepo := map[string]bool{}
	// A link that stays keeps its blob, whatever the mark says of it (a
	// broken repository keeps its layer links without marking them live).
	stayingLinks := map[digest.Digest]bool{}
	count := func(it Item, why string) {
		dropped[it.Key] = true
		if it.Repo != "" {
			droppedRepo[it.Repo] = true
		}
		switch it.Kind {
		case KindRevisionLink, KindLayerLink, KindTagIndexLink:
			if why != "gone" {
				stayingLinks[it.Digest] = true
			}
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
	keptSignatures := map[digest.Digest]bool{}
	for _, it := range p.Items {
		if _, changing := fresh.Changing[it.Repo]; changing && it.Repo != "" && it.Kind != KindBlob && it.Kind != KindSegment {
			count(it, "changed")
			continue
		}
		switch it.Kind {
		case KindTag:
			// A tag moved or pushed again since the plan stays.
			r := fresh.Repositories[it.Repo]
			var t *walker.Tag
			if r != nil {
				t = r.Tags[it.Tag]
			}
			switch {
			case t == nil || !t.HasCurrent:
				count(it, "gone")
			case t.CurrentModTime != it.ModTime.Unix() || t.Current != it.Digest:
				count(it, "changed")
			}
		case KindRevisionLink, KindLayerLink, KindTagIndexLink, KindTagCurrentLink:
			mtime, exists := freshLinkMTime(fresh, it.Key)
			switch {
			case !exists:
				count(it, "gone")
			case mtime != it.ModTime.Unix():
				count(it, "changed")
			case it.Kind != KindTagCurrentLink && (protected(it.Repo, it.Digest) || unreadable[it.Repo]):
				count(it, "protected")
			}
		case KindUploadFile:
			if u := fresh.Repositories[it.Repo]; u != nil && u.Uploads[it.UploadID] != nil {
				for _, f := range u.Uploads[it.UploadID].Files {
					if o, ok := s.planned[f.Key]; !ok || o.ModTime.Unix() != f.ModTime.Unix() {
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
			if dropped[revKey] || protected(it.Repo, it.Manifest) || unreadable[it.Repo] {
				count(it, "protected")
				keptSignatures[it.Digest] = true
			}
		}
	}
	deletedBlobs := map[digest.Digest]bool{}
	for _, it := range p.Items {
		if it.Kind != KindBlob {
			continue
		}
		switch {
		case global(it.Digest) || keptSignatures[it.Digest] || stayingLinks[it.Digest] || len(unreadable) > 0:
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
		if it.Kind == KindRepository && (droppedRepo[it.Repo] || s.staying[it.Repo]) {
			count(it, "changed")
		}
	}
	kept2 := p.Items[:0]
	for _, it := range p.Items {
		if !dropped[it.Key] {
			kept2 = append(kept2, it)
		}
	}
	p.Items = kept2
	p.Stats = p.itemStats(p.Stats)
	for _, it := range deleted {
		switch it.Kind {
		case KindRevisionLink, KindLayerLink:
			if _, exists := freshLinkMTime(fresh, it.Key); exists || strings.HasPrefix(it.Reason, "dangling") {
				continue
			}
			if protected(it.Repo, it.Digest) {
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
