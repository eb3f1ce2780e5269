package harborgc

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/harbordb"
	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/walker"
)

// Finding kinds of Harbor mode (a contract shared with audit's reports).
const (
	KindMissingInStorage = "harbor_missing_in_storage"
	KindUnknownInDB      = "harbor_unknown_in_db"
	KindQuotaDrift       = "harbor_quota_drift"
	KindStuckBlob        = "harbor_stuck_blob"
	KindStaleTrash       = "harbor_stale_trash"
)

// Finding is one disagreement between Harbor's database and storage.
type Finding struct {
	Kind    string
	Project string
	Repo    string
	Digest  digest.Digest
	Key     string
	Size    int64
	Message string
}

// Broken reports whether the finding means pulls fail today.
func (f Finding) Broken() bool { return f.Kind == KindMissingInStorage }

// Findings compares a snapshot with a walk of the same registry.
func Findings(snap *harbordb.Snapshot, inv *walker.Inventory, window time.Duration) []Finding {
	var out []Finding
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
			out = append(out, Finding{Kind: KindMissingInStorage, Project: p.Name, Repo: a.Repo, Digest: a.Digest, Key: key(layout.BlobData{Digest: a.Digest}),
				Message: fmt.Sprintf("artifact %s@%s%s: its manifest blob is missing from storage; pulls fail", a.Repo, a.Digest, tagsOf(a))})
		case repo == nil || !repo.Revisions.Has(a.Digest):
			out = append(out, Finding{Kind: KindMissingInStorage, Project: p.Name, Repo: a.Repo, Digest: a.Digest, Key: key(layout.RevisionLink{Repo: a.Repo, Digest: a.Digest}),
				Message: fmt.Sprintf("artifact %s@%s%s: storage has no revision link for it in this repository; pulls fail", a.Repo, a.Digest, tagsOf(a))})
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
		out = append(out, Finding{Kind: KindMissingInStorage, Digest: d, Key: key(layout.BlobData{Digest: d}), Size: snap.Blobs[d].Size,
			Message: "a blob of a live artifact is missing from storage; pulls of the artifacts using it fail"})
	}

	// Storage the database does not know.
	for _, name := range inv.RepositoryNames() {
		if _, ok := snap.Repositories[name]; !ok && !strings.HasPrefix(name, SystemPrefix) {
			out = append(out, Finding{Kind: KindUnknownInDB, Project: projectOf(name), Repo: name, Key: layout.RepoPrefix(name),
				Message: "repository in storage with no repository row in Harbor's database"})
		}
	}
	for d, b := range inv.Blobs.All() {
		if _, ok := snap.Blobs[d]; ok {
			continue
		}
		if _, live := snap.Live[d]; live { // system artifacts have no rows
			continue
		}
		out = append(out, Finding{Kind: KindUnknownInDB, Digest: d, Key: key(layout.BlobData{Digest: d}), Size: b.Size,
			Message: "blob in storage with no blob row: Harbor's own GC never collects it"})
	}

	for _, q := range snap.Quotas {
		if q.Used != q.Computed {
			out = append(out, Finding{Kind: KindQuotaDrift, Project: project(q.ProjectID), Size: q.Used - q.Computed,
				Message: fmt.Sprintf("project %q: quota_usage says %d bytes, its blobs sum to %d", project(q.ProjectID), q.Used, q.Computed)})
		}
	}
	for d, b := range snap.Blobs {
		if b.Status == harbordb.StatusDeleting && b.UpdateTime.Before(snap.Now.Add(-window)) || b.Status == harbordb.StatusDeleteFailed {
			out = append(out, Finding{Kind: KindStuckBlob, Digest: d, Key: key(layout.BlobData{Digest: d}), Size: b.Size,
				Message: fmt.Sprintf("blob row in status %s since %s", b.Status, b.UpdateTime.UTC().Format(time.RFC3339))})
		}
	}
	for _, t := range snap.Trash {
		if t.CreationTime.Before(snap.Now.Add(-window)) {
			out = append(out, Finding{Kind: KindStaleTrash, Project: projectOf(t.Repo), Repo: t.Repo, Digest: t.Digest,
				Message: fmt.Sprintf("artifact_trash row since %s: a GC has not run since the artifact was deleted", t.CreationTime.UTC().Format(time.RFC3339))})
		}
	}
	slices.SortFunc(out, func(a, b Finding) int {
		return strings.Compare(a.Kind+"\x00"+a.Repo+"\x00"+string(a.Digest)+"\x00"+a.Key, b.Kind+"\x00"+b.Repo+"\x00"+string(b.Digest)+"\x00"+b.Key)
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
