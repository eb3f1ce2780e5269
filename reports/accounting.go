package reports

import (
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/blobindex"
	"github.com/regsweep/regsweep/finding"
	"github.com/regsweep/regsweep/mark"
	"github.com/regsweep/regsweep/sweep"
	"github.com/regsweep/regsweep/walker"
)

// ProjectOf is the project a repository belongs to: the first component of
// its name, as Harbor has it ("library/nginx" is in "library"). A name
// without '/' is in the project "" (no project).
func ProjectOf(repo string) string {
	if i := strings.IndexByte(repo, '/'); i >= 0 {
		return repo[:i]
	}
	return ""
}

// Space is the space accounting of one repository or project. The JSON
// keys are a contract (docs/report-schema.md).
type Space struct {
	Tags      int `json:"tags"`
	Manifests int `json:"manifests"`
	// Blobs and TotalBytes: the distinct stored blobs the kept manifests
	// need (the manifests themselves, their configs and layers, schema1
	// signatures), each counted once.
	Blobs      int   `json:"blobs"`
	TotalBytes int64 `json:"total_bytes"`
	// UniqueBytes is what deleting it would free: the part of TotalBytes no
	// other repository (project) needs. SharedBytes is the rest.
	UniqueBytes int64 `json:"unique_bytes"`
	SharedBytes int64 `json:"shared_bytes"`
	// ReclaimableBytes is what gc would free here now: the blobs it plans
	// to delete that this repository (project) links, and its stale
	// uploads. A planned blob linked by several repositories counts in
	// each of them; one linked by none counts in no repository.
	ReclaimableBytes int64 `json:"reclaimable_bytes"`
	Uploads          int   `json:"uploads"`
	Findings         int   `json:"findings"`
	BrokenFindings   int   `json:"broken_findings"`
}

// RepositorySpace is one repository's row.
type RepositorySpace struct {
	Name    string `json:"name"`
	Project string `json:"project"`
	Space
}

// ProjectSpace is one project's row.
type ProjectSpace struct {
	Name         string `json:"name"`
	Repositories int    `json:"repositories"`
	Space
}

// Accounting is where the space goes, per repository and per project,
// both sorted by name.
type Accounting struct {
	Repositories []RepositorySpace `json:"repositories"`
	Projects     []ProjectSpace    `json:"projects"`
}

// blobOwners counts, per blob, how many repositories need it and which
// project (manyProjects when several).
type blobOwners struct {
	repos   uint32
	project int32
}

const manyProjects = -1

// Account computes the accounting of a marked inventory and the plan a gc
// would make of it. It is exact: every figure is a sum over distinct blob
// digests.
func Account(inv *walker.Inventory, res *mark.Result, plan *sweep.Plan) Accounting {
	names := inv.RepositoryNames()
	projectIndex := map[string]int32{}
	var projectNames []string
	for _, n := range names {
		p := ProjectOf(n)
		if _, ok := projectIndex[p]; !ok {
			projectIndex[p] = int32(len(projectNames))
			projectNames = append(projectNames, p)
		}
	}

	// needs calls fn for every distinct stored blob repository name needs:
	// by its ID in inv.Blobs (indexed), or by its digest when it has none
	// (a stored blob that is not sha256).
	needs := func(name string, fn func(id blobindex.ID, indexed bool, d digest.Digest, b blobindex.Blob)) {
		rr := res.Repos[name]
		if rr == nil {
			return
		}
		seen := inv.NewBlobSet(false)
		byID := func(id blobindex.ID) {
			if seen.AddID(id) {
				fn(id, true, "", inv.Blobs.Value(id))
			}
		}
		byDigest := func(d digest.Digest) {
			if id, ok := inv.Blobs.ID(d); ok {
				byID(id)
				return
			}
			if !seen.Add(d) {
				return
			}
			if b, ok := inv.Blobs.Get(d); ok {
				fn(0, false, d, b)
			}
		}
		for id := range rr.KeptLayers.IDs() {
			byID(id)
		}
		for d := range rr.KeptLayers.Unindexed() {
			byDigest(d)
		}
		// Schema1 signatures of kept revisions are needed too (mark keeps
		// them globally, not per repository).
		repo := inv.Repositories[name]
		if len(repo.Signatures) > 0 {
			for d := range rr.KeptManifests.All() {
				for _, s := range repo.Signatures[d] {
					byDigest(s)
				}
			}
		}
	}

	// Per blob: how many repositories need it, and from which projects.
	owners := make([]blobOwners, inv.Blobs.Indexed())
	otherOwners := blobindex.NewMap[blobOwners]()
	for _, n := range names {
		p := projectIndex[ProjectOf(n)]
		needs(n, func(id blobindex.ID, indexed bool, d digest.Digest, _ blobindex.Blob) {
			var o blobOwners
			if indexed {
				o = owners[id]
			} else {
				o, _ = otherOwners.Get(d)
			}
			if o.repos == 0 {
				o.project = p
			} else if o.project != p {
				o.project = manyProjects
			}
			o.repos++
			if indexed {
				owners[id] = o
			} else {
				otherOwners.Set(d, o)
			}
		})
	}

	planned := blobindex.NewMap[int64]()
	uploadBytes := map[string]int64{}
	uploads := map[string]map[string]bool{}
	for _, it := range plan.Items {
		switch it.Kind {
		case sweep.KindBlob:
			planned.Set(it.Digest, it.Size)
		case sweep.KindUploadFile:
			uploadBytes[it.Repo] += it.Size
			if uploads[it.Repo] == nil {
				uploads[it.Repo] = map[string]bool{}
			}
			uploads[it.Repo][it.UploadID] = true
		}
	}
	// reclaimable calls fn for every distinct planned blob the repository
	// links.
	reclaimable := func(name string, fn func(digest.Digest, int64)) {
		r := inv.Repositories[name]
		seen := inv.NewBlobSet(false)
		visit := func(d digest.Digest) {
			// Few blobs are planned: ask that first, the set only for them.
			if size, ok := planned.Get(d); ok && seen.Add(d) {
				fn(d, size)
			}
		}
		for d := range r.Revisions.All() {
			visit(d)
		}
		for d := range r.Layers.All() {
			visit(d)
		}
		for _, sigs := range r.Signatures {
			for _, s := range sigs {
				visit(s)
			}
		}
	}

	acc := Accounting{Repositories: make([]RepositorySpace, 0, len(names)), Projects: make([]ProjectSpace, 0, len(projectNames))}
	projects := make([]ProjectSpace, len(projectNames))
	projectBlobs := make([]*blobindex.Set, len(projectNames))
	projectPlanned := make([]*blobindex.Set, len(projectNames))
	for i, p := range projectNames {
		projects[i].Name = p
		projectBlobs[i] = inv.NewBlobSet(false)
		projectPlanned[i] = inv.NewBlobSet(false)
	}
	for _, n := range names {
		pi := projectIndex[ProjectOf(n)]
		ps := &projects[pi]
		r := inv.Repositories[n]
		row := RepositorySpace{Name: n, Project: ProjectOf(n)}
		for _, t := range r.Tags {
			if t.HasCurrent {
				row.Tags++
			}
		}
		row.Manifests = r.Revisions.Len()
		needs(n, func(id blobindex.ID, indexed bool, d digest.Digest, b blobindex.Blob) {
			var o blobOwners
			if indexed {
				o = owners[id]
			} else {
				o, _ = otherOwners.Get(d)
			}
			row.Blobs++
			row.TotalBytes += b.Size
			if o.repos == 1 {
				row.UniqueBytes += b.Size
			}
			var first bool
			if indexed {
				first = projectBlobs[pi].AddID(id)
			} else {
				first = projectBlobs[pi].Add(d)
			}
			if first {
				ps.Blobs++
				ps.TotalBytes += b.Size
				if o.project == pi {
					ps.UniqueBytes += b.Size
				}
			}
		})
		row.SharedBytes = row.TotalBytes - row.UniqueBytes
		reclaimable(n, func(d digest.Digest, size int64) {
			row.ReclaimableBytes += size
			if projectPlanned[pi].Add(d) {
				ps.ReclaimableBytes += size
			}
		})
		row.ReclaimableBytes += uploadBytes[n]
		row.Uploads = len(uploads[n])
		ps.ReclaimableBytes += uploadBytes[n]
		ps.Uploads += row.Uploads
		ps.Repositories++
		ps.Tags += row.Tags
		ps.Manifests += row.Manifests
		acc.Repositories = append(acc.Repositories, row)
	}
	for i := range projects {
		projects[i].SharedBytes = projects[i].TotalBytes - projects[i].UniqueBytes
	}
	sort.Slice(projects, func(i, j int) bool { return projects[i].Name < projects[j].Name })
	acc.Projects = append(acc.Projects, projects...)
	return acc
}

// countFindings fills the findings columns from findings naming a
// repository.
func (acc *Accounting) countFindings(findings []finding.Finding) {
	for i := range acc.Repositories {
		acc.Repositories[i].Findings, acc.Repositories[i].BrokenFindings = 0, 0
	}
	for i := range acc.Projects {
		acc.Projects[i].Findings, acc.Projects[i].BrokenFindings = 0, 0
	}
	repoIndex := map[string]int{}
	for i, r := range acc.Repositories {
		repoIndex[r.Name] = i
	}
	projIndex := map[string]int{}
	for i, p := range acc.Projects {
		projIndex[p.Name] = i
	}
	for _, f := range findings {
		broken := 0
		if f.Severity() == finding.Broken {
			broken = 1
		}
		if i, ok := repoIndex[f.Repo]; ok && f.Repo != "" {
			acc.Repositories[i].Findings++
			acc.Repositories[i].BrokenFindings += broken
		}
		project := f.Project
		if project == "" && f.Repo != "" {
			project = ProjectOf(f.Repo)
		}
		if i, ok := projIndex[project]; ok && (f.Repo != "" || f.Project != "") {
			acc.Projects[i].Findings++
			acc.Projects[i].BrokenFindings += broken
		}
	}
}

// TopRepositories returns the n repositories with the most total bytes
// (ties by name); all of them when n <= 0.
func (acc *Accounting) TopRepositories(n int, by func(Space) int64) []RepositorySpace {
	out := append([]RepositorySpace(nil), acc.Repositories...)
	sort.SliceStable(out, func(i, j int) bool { return by(out[i].Space) > by(out[j].Space) })
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return out
}

// TopProjects is TopRepositories for projects.
func (acc *Accounting) TopProjects(n int, by func(Space) int64) []ProjectSpace {
	out := append([]ProjectSpace(nil), acc.Projects...)
	sort.SliceStable(out, func(i, j int) bool { return by(out[i].Space) > by(out[j].Space) })
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return out
}

// ByTotal and ByReclaimable order rows for Top*.
func ByTotal(s Space) int64       { return s.TotalBytes }
func ByReclaimable(s Space) int64 { return s.ReclaimableBytes }
