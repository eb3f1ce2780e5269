// Package harborgc is gc's Harbor mode. Harbor's database decides what is
// live (harbordb reads it in one snapshot); mark follows the manifests of
// those artifacts through storage; the sweep runs inside Harbor's own blob
// deletion protocol, so Harbor may stay online; and afterwards the database
// is left as Harbor's own GC would leave it.
//
// It adds to Harbor's GC what Harbor never collects: blobs in storage with
// no database row, revision links of manifests no artifact names, layer
// links, tags and emptied repositories. Where the database and storage
// disagree it says so as findings (Participant.Findings, the harbor_*
// kinds).
//
// It owns Harbor's part in a run (the Participant gc drives). It may not
// walk or delete storage itself, nor write SQL (harbordb does).
package harborgc

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/blobindex"
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
	snap *harbordb.Snapshot
	// artifacts holds the digest of every artifact row read, in any
	// project (CheckBehind).
	artifacts map[digest.Digest]bool
	roots     map[string]map[digest.Digest]struct{}
	untagged  []harbordb.Artifact
	live      map[digest.Digest]struct{}
}

// NewLiveness reads the roots from a snapshot: every artifact of a project
// that is not deleted is a root of its repository (index children and
// accessories are artifacts too). With deleteUntagged, Harbor's own rule
// applies to artifacts pushed before the window (push_time older than the
// snapshot's cutoff; a NULL push_time is not): an artifact with no tag
// that is neither an index child nor an accessory is not a root, and
// Untagged lists it. One pushed within the window stays a root, as the
// grace promises (Harbor's own GC applies no window there).
func NewLiveness(snap *harbordb.Snapshot, deleteUntagged bool) *Liveness {
	l := &Liveness{snap: snap, roots: map[string]map[digest.Digest]struct{}{}, live: map[digest.Digest]struct{}{}, artifacts: map[digest.Digest]bool{}}
	for _, a := range snap.Artifacts {
		l.artifacts[a.Digest] = true
		if p, ok := snap.Projects[a.ProjectID]; !ok || p.Deleted {
			continue
		}
		if deleteUntagged && l.collectable(a) {
			l.untagged = append(l.untagged, a)
			continue
		}
		l.addRoot(a)
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

// collectable is Harbor's untagged rule, within the window.
func (l *Liveness) collectable(a harbordb.Artifact) bool {
	return len(a.Tags) == 0 && !a.IsChild && !a.IsAccessory && !a.PushTime.IsZero() && !a.PushTime.After(l.snap.Cutoff())
}

func (l *Liveness) addRoot(a harbordb.Artifact) {
	if l.roots[a.Repo] == nil {
		l.roots[a.Repo] = map[digest.Digest]struct{}{}
	}
	l.roots[a.Repo][a.Digest] = struct{}{}
}

// Refresh adds what a later read of the artifacts (DB.Artifacts, after the
// walk) found: an artifact the snapshot did not have is a root, and its
// blobs are live; an untagged candidate that gained a tag, a parent or a
// subject is a root again. What the later read no longer has stays as the
// snapshot said (it is collected next time).
func (l *Liveness) Refresh(newer *harbordb.Snapshot) {
	candidates := map[int64]bool{}
	for _, a := range l.untagged {
		candidates[a.ID] = true
	}
	stillCandidate := map[int64]bool{}
	for _, a := range newer.Artifacts {
		l.artifacts[a.Digest] = true
		if p, ok := newer.Projects[a.ProjectID]; ok && p.Deleted {
			continue
		}
		if candidates[a.ID] && l.collectable(a) {
			stillCandidate[a.ID] = true
			continue
		}
		l.addRoot(a)
		l.live[a.Digest] = struct{}{}
		for _, b := range newer.ArtifactBlobs[a.Digest] {
			l.live[b] = struct{}{}
		}
	}
	for _, d := range newer.SystemArtifacts {
		l.live[d] = struct{}{}
	}
	// A candidate the later read no longer has was deleted meanwhile: its
	// links are garbage like any deleted artifact's, and nothing is left to
	// trash.
	kept := l.untagged[:0]
	for _, a := range l.untagged {
		if stillCandidate[a.ID] {
			kept = append(kept, a)
		}
	}
	l.untagged = kept
}

// Roots is mark.Options.Roots.
func (l *Liveness) Roots(repo string) ([]digest.Digest, bool) {
	roots := make([]digest.Digest, 0, len(l.roots[repo]))
	for d := range l.roots[repo] {
		roots = append(roots, d)
	}
	slices.Sort(roots)
	return roots, strings.HasPrefix(repo, SystemPrefix)
}

// AddStorageTags makes the tags in storage roots too. Harbor 1.x served
// tags from storage, and its database may lag them.
func (l *Liveness) AddStorageTags(inv *walker.Inventory) {
	for name, r := range inv.Repositories {
		root := func(d digest.Digest) { l.addRoot(harbordb.Artifact{Repo: name, Digest: d}) }
		for _, t := range r.Tags {
			if t.Current != "" {
				root(t.Current)
			}
			if !t.HasCurrent || t.Current == "" {
				for d := range t.Index.All() {
					root(d)
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

// ProtectLinks keeps, in every repository, the layer and revision links of
// blobs whose rows a push touched within the window: Harbor's push path
// touches the row of each blob a client finds, so a push may be about to
// use that link (gc checks the rows again just before each batch of links,
// see Protocol.CheckBatch; this makes the plan say so already).
func (l *Liveness) ProtectLinks(res *mark.Result, inv *walker.Inventory) {
	recent := map[digest.Digest]bool{}
	for d, b := range l.snap.Blobs {
		if b.UpdateTime.After(l.snap.Cutoff()) {
			recent[d] = true
		}
	}
	if len(recent) == 0 {
		return
	}
	// Per repository, whichever is shorter is walked: its links, or the
	// recent rows.
	keep := func(links *blobindex.Links, kept *blobindex.Set) {
		if links.Len() < len(recent) {
			for d := range links.All() {
				if recent[d] {
					kept.Add(d)
				}
			}
			return
		}
		for d := range recent {
			if links.Has(d) {
				kept.Add(d)
			}
		}
	}
	for name, r := range inv.Repositories {
		if rr := res.Repos[name]; rr != nil {
			keep(r.Layers, rr.KeptLayers)
			keep(r.Revisions, rr.KeptManifests)
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

// ErrDatabaseBehind means storage holds recent revision links of manifests
// the database has never heard of: a restored backup, a replica that lags,
// another registry's database. Everything those artifacts need would be
// collected as garbage.
var ErrDatabaseBehind = errors.New("the database is behind storage")

// behindSettle leaves out links written just before the snapshot: a push
// the registry has accepted and harbor-core has not recorded yet.
const behindSettle = time.Minute

// MinBehindLookback is the shortest lookback of the check for a database
// behind storage, whatever the grace: with --grace 0s (Harbor's
// GC_TIME_WINDOW_HOURS=0) the grace would leave it no link to judge by.
const MinBehindLookback = time.Hour

// CheckBehind cross-checks the database with the walk: a revision link
// written within lookback of the snapshot (and before it by more than a
// minute) whose manifest has no artifact row in any project, no trash row,
// no blob row and is no system artifact means the database has missed
// pushes. Harbor writes those rows as it accepts each push. A lookback of a
// minute or less judges no link.
func (l *Liveness) CheckBehind(inv *walker.Inventory, lookback time.Duration) error {
	from, to := l.snap.Taken.Add(-lookback).Unix(), l.snap.Taken.Add(-behindSettle).Unix()
	if from >= to {
		return nil
	}
	trashed := map[digest.Digest]bool{}
	for _, t := range l.snap.Trash {
		trashed[t.Digest] = true
	}
	known := func(d digest.Digest) bool {
		_, row := l.snap.Blobs[d]
		_, live := l.live[d]
		return row || live || trashed[d] || l.artifacts[d]
	}
	var examples []string
	n := 0
	for _, name := range inv.RepositoryNames() {
		if strings.HasPrefix(name, SystemPrefix) {
			continue
		}
		for d, link := range inv.Repositories[name].Revisions.All() {
			if link.ModTime <= from || link.ModTime > to || known(d) {
				continue
			}
			n++
			if len(examples) < 3 {
				examples = append(examples, name+"@"+d.String())
			}
		}
	}
	if n == 0 {
		return nil
	}
	return fmt.Errorf("%w: %d revision link(s) written in the %s before the snapshot name manifests with no artifact, trash or blob row in the database (%s): "+
		"is --harbor-db the primary of this registry's database, and not a restored backup?", ErrDatabaseBehind, n, lookback, strings.Join(examples, ", "))
}
