package sweep

import (
	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/walker"
)

// droppedRepo reports whether some item of repo left the plan.
func droppedRepo(p *Plan, repo string, kept []Item) bool {
	return false
}

// References returns every digest manifest d references, recursively
// (children and blobs). ok is false when d cannot be read or parsed.
type References func(d digest.Digest) (refs []digest.Digest, ok bool)

// RecheckStats says what a recheck took out of the plan.
type RecheckStats struct {
	Dropped      int  `json:"dropped"`
	Gone         int  `json:"gone"`
	Changed      int  `json:"changed"`
	Protected    int  `json:"protected"`
	BlobsChecked bool `json:"blobs_checked"`
}

// Recheck compares the plan with a fresh walk taken just before deleting
// and drops every item that is no longer garbage: keys rewritten since
// (another mtime), keys already gone, and whatever a link that stays now
// points to, with everything that manifest references. fresh may hold only
// the repository tree (blobsListed false): blob items are then judged by
// the links alone.
func (p *Plan) Recheck(fresh *walker.Inventory, blobsListed bool, refs References) RecheckStats {
	st := RecheckStats{BlobsChecked: blobsListed}
	planned := make(map[string]bool, len(p.Items))
	for _, it := range p.Items {
		planned[it.Key] = true
	}
	// Digests that links which stay point to, per repository and overall.
	perRepo := map[string]map[digest.Digest]bool{}
	global := map[digest.Digest]bool{}
	unreadable := map[string]bool{}
	protect := func(repo string, d digest.Digest) {
		if d == "" {
			return
		}
		set := perRepo[repo]
		if set == nil {
			set = map[digest.Digest]bool{}
			perRepo[repo] = set
		}
		if set[d] {
			return
		}
		set[d] = true
		global[d] = true
	}
	linkKeys := map[string]int64{} // fresh link key -> mtime
	for name, r := range fresh.Repositories {
		staying := func(key string) bool { return !planned[key] }
		var roots []digest.Digest
		for d, l := range r.Revisions.All() {
			k := keyOf(revisionSpec(name, d))
			linkKeys[k] = l.ModTime
			if staying(k) {
				roots = append(roots, d)
			}
		}
		for d, l := range r.Layers.All() {
			k := keyOf(layerSpec(name, d))
			linkKeys[k] = l.ModTime
			if staying(k) {
				protect(name, d)
			}
		}
		for tag, t := range r.Tags {
			for d, l := range t.Index {
				k := keyOf(tagIndexSpec(name, tag, d))
				linkKeys[k] = l.ModTime
				if staying(k) {
					roots = append(roots, d)
				}
			}
			if t.HasCurrent {
				k := keyOf(tagCurrentSpec(name, tag))
				linkKeys[k] = t.CurrentModTime
				if staying(k) && t.Current != "" {
					roots = append(roots, t.Current)
				}
			}
		}
		for _, d := range roots {
			protect(name, d)
			more, ok := refs(d)
			if !ok {
				unreadable[name] = true
				continue
			}
			for _, ref := range more {
				protect(name, ref)
			}
		}
	}
	kept := p.Items[:0]
	for _, it := range p.Items {
		drop, why := false, ""
		switch it.Kind {
		case KindRevisionLink, KindLayerLink, KindTagIndexLink, KindTagCurrentLink, KindSignatureLink:
			mtime, exists := linkKeys[it.Key]
			switch {
			case it.Kind != KindSignatureLink && !exists:
				drop, why = true, "gone"
			case exists && mtime != it.ModTime.Unix():
				drop, why = true, "changed"
			case it.Kind != KindTagCurrentLink && (perRepo[it.Repo][it.Digest] || unreadable[it.Repo]):
				drop, why = true, "protected"
			}
		case KindBlob:
			if global[it.Digest] || len(unreadable) > 0 {
				drop, why = true, "protected"
			} else if blobsListed {
				b, exists := fresh.Blobs.Get(it.Digest)
				switch {
				case !exists:
					drop, why = true, "gone"
				case b.ModTime != it.ModTime.Unix():
					drop, why = true, "changed"
				}
			}
		case KindRepository:
			// A repository that gained anything since the plan stays.
			for k := range linkKeys {
				if len(k) > len(it.Key) && k[:len(it.Key)] == it.Key && !planned[k] {
					drop, why = true, "changed"
					break
				}
			}
		}
		if !drop {
			kept = append(kept, it)
			continue
		}
		st.Dropped++
		switch why {
		case "gone":
			st.Gone++
		case "changed":
			st.Changed++
		case "protected":
			st.Protected++
		}
	}
	// A repository with anything left in it is not removed.
	remaining := map[string]bool{}
	for _, it := range kept {
		if it.Kind != KindRepository {
			remaining[it.Repo] = true
		}
	}
	final := kept[:0]
	for _, it := range kept {
		if it.Kind == KindRepository && droppedRepo(p, it.Repo, kept) {
			st.Dropped++
			st.Changed++
			continue
		}
		final = append(final, it)
	}
	p.Items = final
	return st
}
