package harborgc

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/finding"
	"github.com/regsweep/regsweep/harbordb"
	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/walker"
)

// Findings are the disagreements between the run's snapshot of Harbor's
// database and a walk of the same registry.
func (p *Participant) Findings(inv *walker.Inventory) []finding.Finding {
	return Findings(p.snap, inv, p.o.Window)
}

// Findings compares a snapshot with a walk of the same registry.
func Findings(snap *harbordb.Snapshot, inv *walker.Inventory, window time.Duration) []finding.Finding {
	var out []finding.Finding
	key := func(s layout.Spec) string { k, _ := layout.Path(s); return k }
	project := func(id int64) string { return snap.Projects[id].Name }

	// Live artifacts whose manifest, revision link or blobs storage lacks.
	reported := map[digest.Digest]bool{}
	for _, a := range snap.Artifacts {
		p, ok := snap.Projects[a.ProjectID]
		if !ok || p.Deleted {
			continue
		}
		switch repo := inv.Repositories[a.Repo]; {
		case !inv.Blobs.Has(a.Digest):
			reported[a.Digest] = true
			out = append(out, finding.Finding{Kind: finding.HarborMissingInStorage, Project: p.Name, Repo: a.Repo, Digest: a.Digest, Key: key(layout.BlobData{Digest: a.Digest}),
				Explanation: fmt.Sprintf("artifact %s@%s%s: its manifest blob is missing from storage; pulls fail", a.Repo, a.Digest, tagsOf(a))})
		case repo == nil || !repo.Revisions.Has(a.Digest):
			out = append(out, finding.Finding{Kind: finding.HarborMissingInStorage, Project: p.Name, Repo: a.Repo, Digest: a.Digest, Key: key(layout.RevisionLink{Repo: a.Repo, Digest: a.Digest}),
				Explanation: fmt.Sprintf("artifact %s@%s%s: storage has no revision link for it in this repository; pulls fail", a.Repo, a.Digest, tagsOf(a))})
		}
	}
	// Blobs the database needs that storage lacks.
	for d := range snap.Live {
		if inv.Blobs.Has(d) || reported[d] {
			continue
		}
		if row, ok := snap.Blobs[d]; ok && row.IsForeignLayer() {
			continue
		}
		out = append(out, finding.Finding{Kind: finding.HarborMissingInStorage, Digest: d, Key: key(layout.BlobData{Digest: d}), Size: snap.Blobs[d].Size,
			Explanation: "a blob of a live artifact is missing from storage; pulls of the artifacts using it fail"})
	}

	// Storage the database does not know.
	for _, name := range inv.RepositoryNames() {
		if _, ok := snap.Repositories[name]; !ok && !strings.HasPrefix(name, SystemPrefix) {
			out = append(out, finding.Finding{Kind: finding.HarborUnknownInDB, Project: projectOf(name), Repo: name, Key: layout.RepoPrefix(name),
				Explanation: "repository in storage with no repository row in Harbor's database"})
		}
	}
	for d, b := range inv.Blobs.All() {
		if _, ok := snap.Blobs[d]; ok {
			continue
		}
		if _, live := snap.Live[d]; live { // system artifacts have no rows
			continue
		}
		out = append(out, finding.Finding{Kind: finding.HarborUnknownInDB, Digest: d, Key: key(layout.BlobData{Digest: d}), Size: b.Size,
			Explanation: "blob in storage with no blob row: Harbor's own GC never collects it"})
	}

	for _, q := range snap.Quotas {
		if q.Used != q.Computed {
			out = append(out, finding.Finding{Kind: finding.HarborQuotaDrift, Project: project(q.ProjectID), Size: q.Used - q.Computed,
				Explanation: fmt.Sprintf("project %q: quota_usage says %d bytes, its blobs sum to %d", project(q.ProjectID), q.Used, q.Computed)})
		}
	}
	for d, b := range snap.Blobs {
		if b.Status == harbordb.StatusDeleting && b.UpdateTime.Before(snap.Now.Add(-window)) || b.Status == harbordb.StatusDeleteFailed {
			out = append(out, finding.Finding{Kind: finding.HarborStuckBlob, Digest: d, Key: key(layout.BlobData{Digest: d}), Size: b.Size,
				Explanation: fmt.Sprintf("blob row in status %s since %s", b.Status, b.UpdateTime.UTC().Format(time.RFC3339))})
		}
	}
	for _, t := range snap.Trash {
		if t.CreationTime.Before(snap.Now.Add(-window)) {
			out = append(out, finding.Finding{Kind: finding.HarborStaleTrash, Project: projectOf(t.Repo), Repo: t.Repo, Digest: t.Digest,
				Explanation: fmt.Sprintf("artifact_trash row since %s: a GC has not run since the artifact was deleted", t.CreationTime.UTC().Format(time.RFC3339))})
		}
	}
	slices.SortFunc(out, func(a, b finding.Finding) int {
		return strings.Compare(string(a.Kind)+"\x00"+a.Repo+"\x00"+string(a.Digest)+"\x00"+a.Key, string(b.Kind)+"\x00"+b.Repo+"\x00"+string(b.Digest)+"\x00"+b.Key)
	})
	return out
}

func tagsOf(a harbordb.Artifact) string {
	if len(a.Tags) == 0 {
		return ""
	}
	return " (tags " + strings.Join(a.Tags, ", ") + ")"
}

// projectOf is the project part of a Harbor repository name.
func projectOf(repo string) string {
	p, _, _ := strings.Cut(repo, "/")
	return p
}
