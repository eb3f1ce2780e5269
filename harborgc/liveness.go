// Package harborgc is gc's Harbor mode. Harbor's database decides what is
// live (harbordb reads it in one snapshot); mark follows the manifests of
// those artifacts through storage; the sweep runs inside Harbor's own blob
// deletion protocol, so Harbor may stay online; and afterwards the database
// is left as Harbor's own GC would leave it.
//
// It adds to Harbor's GC what Harbor never collects: blobs in storage with
// no database row, revision links of manifests no artifact names, layer
// links, tags and emptied repositories.
package harborgc

import (
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/harbordb"
	"github.com/regsweep/regsweep/mark"
	"github.com/regsweep/regsweep/sweep"
	"github.com/regsweep/regsweep/walker"
)

// SystemPrefix is where Harbor pushes its system artifacts (build
// history, scan exports): they have no blob rows and are always live.
const SystemPrefix = "sys_harb0r/"

// Liveness is what the database says is live, in the shape mark wants.
type Liveness struct {
	snap     *harbordb.Snapshot
	roots    map[string][]digest.Digest
	untagged []harbordb.Artifact
	live     map[digest.Digest]struct{}
}

// NewLiveness reads the roots from a snapshot: every artifact of a project
// that is not deleted is a root of its repository (index children and
// accessories are artifacts too). With deleteUntagged, Harbor's own rule
// applies: an artifact with no tag that is neither an index child nor an
// accessory is not a root, and Untagged lists it.
func NewLiveness(snap *harbordb.Snapshot, deleteUntagged bool) *Liveness {
	l := &Liveness{snap: snap, roots: map[string][]digest.Digest{}, live: map[digest.Digest]struct{}{}}
	for _, a := range snap.Artifacts {
		if p, ok := snap.Projects[a.ProjectID]; !ok || p.Deleted {
			continue
		}
		if deleteUntagged && len(a.Tags) == 0 && !a.IsChild && !a.IsAccessory {
			l.untagged = append(l.untagged, a)
			continue
		}
		l.roots[a.Repo] = append(l.roots[a.Repo], a.Digest)
	}
	// Harbor's live set is blob-level and global: every artifact_blob of
	// a live artifact and every system artifact. Without untagged
	// candidates it is the database's own; with them it is recomputed
	// without theirs (a digest another artifact still has stays).
	if len(l.untagged) == 0 {
		for d := range snap.Live {
			l.live[d] = struct{}{}
		}
		return l
	}
	collected := map[int64]bool{}
	for _, a := range l.untagged {
		collected[a.ID] = true
	}
	for _, a := range snap.Artifacts {
		if p, ok := snap.Projects[a.ProjectID]; (ok && p.Deleted) || collected[a.ID] {
			continue
		}
		l.live[a.Digest] = struct{}{}
		for _, b := range snap.ArtifactBlobs[a.Digest] {
			l.live[b] = struct{}{}
		}
	}
	for _, d := range snap.SystemArtifacts {
		l.live[d] = struct{}{}
	}
	return l
}

// Roots is mark.Options.Roots.
func (l *Liveness) Roots(repo string) ([]digest.Digest, bool) {
	return l.roots[repo], strings.HasPrefix(repo, SystemPrefix)
}

// AddStorageTags makes the tags in storage roots too. Harbor 1.x served
// tags from storage, and its database may lag them.
func (l *Liveness) AddStorageTags(inv *walker.Inventory) {
	for name, r := range inv.Repositories {
		for _, t := range r.Tags {
			if t.Current != "" {
				l.roots[name] = append(l.roots[name], t.Current)
			}
			if !t.HasCurrent || t.Current == "" {
				for d := range t.Index.All() {
					l.roots[name] = append(l.roots[name], d)
				}
			}
		}
	}
}

// Untagged lists the artifacts --delete-untagged collects.
func (l *Liveness) Untagged() []harbordb.Artifact { return l.untagged }

// Protect adds to a mark what the database keeps whatever storage says:
// blobs of live artifacts and system artifacts, blob rows a push touched
// within the window, and rows another collector holds (status deleting,
// until RecoverStuck resolves them).
func (l *Liveness) Protect(res *mark.Result) {
	keep := func(d digest.Digest) { res.KeptBlobs.Add(d) }
	for d := range l.live {
		keep(d)
	}
	for d, b := range l.snap.Blobs {
		switch {
		case b.UpdateTime.After(l.snap.Cutoff()):
			keep(d) // a push touched it within the window
		case !harbordb.Claimable(b.Status):
			keep(d) // another collector holds it
		}
	}
}

// GuardUnknownRepositories trips when most storage repositories have no
// row in the database: the database is likely another Harbor's, and every
// revision link in those repositories would be planned for deletion (the
// blob-fraction guard does not count links).
const GuardUnknownRepositories = "harbor_unknown_repositories"

// Guard returns the guard a walk trips against the snapshot, or nil.
func (l *Liveness) Guard(inv *walker.Inventory) *sweep.Guard {
	known, unknown := 0, 0
	for name := range inv.Repositories {
		if strings.HasPrefix(name, SystemPrefix) {
			continue
		}
		if _, ok := l.snap.Repositories[name]; ok {
			known++
		} else {
			unknown++
		}
	}
	if unknown == 0 || unknown <= known {
		return nil
	}
	return &sweep.Guard{Name: GuardUnknownRepositories, Message: fmt.Sprintf(
		"%d of %d repositories in storage have no repository row in Harbor's database: is --harbor-db this registry's database?", unknown, known+unknown)}
}
