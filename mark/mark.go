// Package mark decides what a registry still needs: from the roots of each
// repository (its tags, and without DeleteUntagged every revision) it
// follows index children, config and layers, and OCI referrers, over an
// inventory and a source of manifest bytes. It reads nothing else and
// writes nothing.
//
// Marking is per repository, as the registry serves it: a _layers link is
// needed when a manifest kept in the same repository references its
// digest; a blob is needed when any repository needs it.
//
// Whether a manifest blob exists is decided by the inventory, the snapshot
// the sweep will act on; the source is asked only for listed blobs.
// Every manifest is read and parsed once per run, however many
// repositories link it.
//
// Mark fails closed: what it cannot read or cannot understand is kept and
// reported as a blocking problem, never taken as referencing nothing.
//
// It owns what is live and the problems it meets on the way, as findings
// (the walk's corrupt links among them; a problem that breaks pulls names
// the tags it breaks). It may not plan or delete (sweep does), nor format
// them (reports does).
package mark

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/blobindex"
	"github.com/regsweep/regsweep/finding"
	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/walker"
)

// Options tunes a mark.
type Options struct {
	// DeleteUntagged makes only tags roots; a revision no tag reaches
	// (through index children and referrers) is not kept. Off, every
	// revision is a root, as in distribution's default.
	DeleteUntagged bool
	// Concurrency is the number of manifest reads in flight; 16 when <= 0.
	Concurrency int
	// Roots, when set, says what is live in a repository instead of its
	// storage tags and revisions (ok false leaves the repository to them):
	// Harbor mode, where liveness is Harbor's database (and Harbor 2.15
	// writes no tags to storage); a retention policy, for the tags it
	// keeps; a recheck, for the links that stay. all makes every revision
	// of the repository a root and keeps every layer link (Harbor's
	// sys_harb0r). Index children, blobs and referrers are still followed
	// from the manifests.
	Roots func(repo string) (roots []digest.Digest, all, ok bool)
	// Recheck says the roots are the links that stay after a plan (see
	// sweep.Plan.Recheck): what they lead to is kept, including what a
	// kept manifest is attached to (its subject), and one they name that
	// storage lacks references nothing; it is a finding of the run's own
	// mark, not a new one here.
	Recheck bool
}

// RepoResult is what one repository needs.
type RepoResult struct {
	// KeptManifests are the repository's kept manifests, including kept
	// ones whose blob is missing (their links are not unused).
	KeptManifests *blobindex.Set
	// KeptLayers: a _layers link is kept iff its digest is here. It holds
	// every blob a kept manifest of this repository references, and the
	// kept manifests themselves: distribution also resolves a manifest
	// through _layers (registry 2.1.0 linked manifests there). In a broken
	// repository it holds every layer link.
	KeptLayers *blobindex.Set
	// Broken is set when a tag, a revision link or a root names a manifest
	// storage lacks. What that manifest needed is unknown, so every layer
	// link of the repository stays (KeptLayers), and so do the links to
	// the missing manifest: pushing the manifest again recovers the image,
	// where collecting its layers would make the loss final.
	Broken bool
}

// Result is a whole mark.
type Result struct {
	// KeptBlobs is every blob needed by any repository: kept manifests,
	// the blobs they reference, and the schema1 signatures of kept
	// revisions.
	KeptBlobs *blobindex.Set
	// Repos has an entry for every repository of the inventory.
	Repos map[string]*RepoResult
	// Problems, sorted by repository, kind, digest and key: the walk's
	// corrupt links and what the mark found wrong. Those that break pulls
	// of a manifest tree name the tags they break.
	Problems []finding.Finding

	g   *graph            // every manifest the mark parsed, for References and Extend
	inv *walker.Inventory // the walk marked
}

// Blobs is the blob index of the walk marked: a walk of the repository
// tree that shares it (walker.Options.Blobs) can extend this mark.
func (r *Result) Blobs() *blobindex.Index { return r.inv.Blobs }

// ReleaseReferences drops the mark's parse of every manifest, a tenth of
// its memory: call it when no recheck is left, before reporting.
// References then finds nothing, and Extend refuses.
func (r *Result) ReleaseReferences() { r.g = nil }

// References returns what manifest d references (index children, config,
// layers and blobs, its subject) as the mark parsed it, so that the
// plan's rechecks need not read or parse it again. ok is false for a
// manifest that could not be parsed. found is false for a digest the mark
// never read (a manifest linked since) and for one it found missing (it
// may have been pushed since): the caller reads it itself. A recheck
// against a fresh walk must not take "missing" from the old one, or the
// layers of a manifest pushed again in between would go unprotected.
func (r *Result) References(d digest.Digest) (children, blobs []digest.Digest, subject digest.Digest, ok, found bool) {
	children, subject, ok, found, missing := r.refs(d, func(id uint32) { blobs = append(blobs, r.g.digest(id)) })
	if missing {
		return nil, nil, "", false, false
	}
	return children, blobs, subject, ok, found
}

// refs finds the mark's node for d and hands each blob it references to
// blob (when not nil) by id. missing is set (with ok and found) for a
// manifest the walk listed a link to but not the blob of.
func (r *Result) refs(d digest.Digest, blob func(id uint32)) (children []digest.Digest, subject digest.Digest, ok, found, missing bool) {
	if r.g == nil {
		return nil, "", false, false, false
	}
	id, known := r.g.find(d)
	n, wanted := r.g.nodes[id]
	if !known || !wanted {
		return nil, "", false, false, false
	}
	switch n.state {
	case stateMissing:
		return nil, "", true, true, true
	case stateOK:
		for _, c := range n.children() {
			children = append(children, r.g.digest(c))
		}
		if blob != nil {
			for _, b := range n.blobs() {
				blob(b)
			}
		}
		if n.subject != noID {
			subject = r.g.digest(n.subject)
		}
		return children, subject, true, true, false
	}
	return nil, "", false, true, false
}

// Blocking returns the problems that must stop a sweep: unparseable
// manifests, missing index children and corrupt links. (A read error
// other than not-found is not a problem: Run returns it.)
func (r *Result) Blocking() []finding.Finding {
	var out []finding.Finding
	for _, p := range r.Problems {
		if p.Kind.Blocking() {
			out = append(out, p)
		}
	}
	return out
}

// nameBrokenTags names, in each problem that breaks pulls of a manifest
// tree (a missing blob or child, an unparseable or missing manifest), the
// tags of its repository whose tree reaches the problem's digest, as the
// mark parsed them.
func (r *Result) nameBrokenTags() {
	reach := map[string]map[digest.Digest]bool{} // "repo\x00tag" -> reached digests
	reached := func(repo, tag string, root digest.Digest) map[digest.Digest]bool {
		k := repo + "\x00" + tag
		if m := reach[k]; m != nil {
			return m
		}
		m := map[digest.Digest]bool{}
		stack := []digest.Digest{root}
		for len(stack) > 0 {
			d := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if m[d] {
				continue
			}
			m[d] = true
			children, blobs, _, _, _ := r.References(d)
			for _, b := range blobs {
				m[b] = true
			}
			stack = append(stack, children...)
		}
		reach[k] = m
		return m
	}
	for i := range r.Problems {
		p := &r.Problems[i]
		switch p.Kind {
		case finding.MissingBlobReference, finding.MissingChildManifest, finding.UnparseableManifest, finding.MissingTaggedManifest:
		default:
			continue
		}
		repo := r.inv.Repositories[p.Repo]
		if repo == nil || p.Digest == "" {
			continue
		}
		var tags []string
		for name, t := range repo.Tags {
			if t.Current != "" && reached(p.Repo, name, t.Current)[p.Digest] {
				tags = append(tags, name)
			}
		}
		slices.Sort(tags)
		p.Tags = tags
	}
}

// Run marks inv, reading manifests from src.
func Run(ctx context.Context, inv *walker.Inventory, src Source, opts Options) (*Result, error) {
	if inv == nil || src == nil {
		return nil, errors.New("mark: nil inventory or source")
	}
	return run(ctx, newGraph(inv.Blobs), inv, src, opts)
}

// Extend marks fresh, a walk made since r's, from the roots opts gives:
// the recheck before deleting is this mark of the fresh walk and a set
// difference, not a second reachability. When fresh shares r's blob index
// (a walk of the repository tree with walker.Options.Blobs), every
// manifest r parsed is taken from r, and only manifests linked since are
// read; whether one exists is then decided by reading it, since the index
// is the earlier walk's, and a manifest r found missing is read again. A
// walk with its own blob listing is marked afresh.
func (r *Result) Extend(ctx context.Context, fresh *walker.Inventory, src Source, opts Options) (*Result, error) {
	if r.g == nil {
		return nil, errors.New("mark: extending a mark whose references were released")
	}
	g := r.g
	switch {
	case fresh == r.inv:
		// The same walk: its listing still decides what exists.
		return run(ctx, g, fresh, src, opts)
	case fresh.Blobs != g.blobs:
		// Nothing to share. A walk that listed no blobs cannot say what
		// exists either.
		g = newGraph(fresh.Blobs)
		if fresh.BlobsWalked {
			return run(ctx, g, fresh, src, opts)
		}
	}
	g.readAll, g.reread = true, map[uint32]bool{}
	defer func() { g.readAll, g.reread = false, nil }()
	return run(ctx, g, fresh, src, opts)
}

// run marks inv over g, loading what g lacks.
func run(ctx context.Context, g *graph, inv *walker.Inventory, src Source, opts Options) (*Result, error) {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 16
	}
	g.subjects = opts.Recheck
	defer func() { g.subjects = false }()
	names := inv.RepositoryNames()
	for _, name := range names {
		r := inv.Repositories[name]
		for d := range r.Revisions.All() {
			g.want(d)
		}
		if opts.Roots != nil {
			if roots, all, ok := opts.Roots(name); ok {
				for _, d := range roots {
					g.want(d)
				}
				if all {
					for d := range r.Layers.All() {
						g.intern(d) // kept below: ids are fixed before marking
					}
				}
				continue
			}
		}
		for _, t := range r.Tags {
			if t.Current != "" {
				g.want(t.Current)
				continue
			}
			for d := range t.Index.All() {
				g.want(d)
			}
		}
	}
	if err := g.load(ctx, src, opts.Concurrency); err != nil {
		return nil, fmt.Errorf("mark: %w", err)
	}

	m := &marker{
		g: g, inv: inv, opts: opts,
		keptManifest: make([]uint32, g.next),
		keptLayer:    make([]uint32, g.next),
		global:       make([]bool, g.next),
		signatures:   blobindex.NewMap[struct{}](),
		problems:     map[problemKey]finding.Finding{},
	}
	m.corruptLinks()
	res := &Result{Repos: make(map[string]*RepoResult, len(names)), g: g, inv: inv}
	for i, name := range names {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		res.Repos[name] = m.repo(uint32(i+1), inv.Repositories[name])
	}

	res.KeptBlobs = blobindex.NewSet(g.blobs, true)
	for id, kept := range m.global {
		if kept {
			g.addTo(res.KeptBlobs, uint32(id))
		}
	}
	for d := range m.signatures.All() {
		res.KeptBlobs.Add(d)
	}
	res.Problems = make([]finding.Finding, 0, len(m.problems))
	for _, p := range m.problems {
		res.Problems = append(res.Problems, p)
	}
	slices.SortFunc(res.Problems, func(a, b finding.Finding) int {
		return cmp.Or(cmp.Compare(a.Repo, b.Repo), cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Digest, b.Digest), cmp.Compare(a.Key, b.Key))
	})
	res.nameBrokenTags()
	return res, nil
}

type problemKey struct {
	kind   finding.Kind
	repo   string
	digest digest.Digest
	key    string
}

type marker struct {
	g    *graph
	inv  *walker.Inventory
	opts Options
	// keptManifest[id] and keptLayer[id] hold the generation of the last
	// repository that kept id, so they need no clearing between
	// repositories.
	keptManifest, keptLayer []uint32
	global                  []bool
	signatures              *blobindex.Map[struct{}]
	problems                map[problemKey]finding.Finding
}

// report records a problem of kind about repo's digest at key, explained
// by err.
func (m *marker) report(kind finding.Kind, repo string, d digest.Digest, key string, err error) {
	f := finding.Finding{Kind: kind, Repo: repo, Digest: d, Key: key, Err: err}
	if err != nil {
		f.Explanation = err.Error()
	}
	m.add(f)
}

func (m *marker) add(f finding.Finding) {
	k := problemKey{f.Kind, f.Repo, f.Digest, f.Key}
	if _, ok := m.problems[k]; !ok {
		m.problems[k] = f
	}
}

// key is a storage key for a problem, "" if the spec has none.
func key(s layout.Spec) string {
	k, err := layout.Path(s)
	if err != nil {
		return ""
	}
	return k
}

func (m *marker) corruptLinks() {
	for _, e := range m.inv.Corrupt {
		f, _ := e.Finding()
		m.add(f)
	}
}

// repo marks one repository; gen is unique to it and never 0.
func (m *marker) repo(gen uint32, r *walker.Repository) *RepoResult {
	g := m.g
	var keptManifests, keptLayers []uint32
	var stack []uint32
	keep := func(id uint32) {
		if m.keptManifest[id] != gen {
			m.keptManifest[id] = gen
			stack = append(stack, id)
		}
	}
	keepLayer := func(id uint32, d digest.Digest) {
		m.global[id] = true
		if m.keptLayer[id] != gen {
			m.keptLayer[id] = gen
			keptLayers = append(keptLayers, id)
		}
	}
	lookup := func(d digest.Digest) (uint32, node) {
		id, ok := g.find(d)
		n, wanted := g.nodes[id]
		if !ok || !wanted || n.state == stateQueued {
			panic("mark: internal error: root " + d.String() + " was not loaded")
		}
		return id, n
	}

	broken := false
	keepAllRevisions := !m.opts.DeleteUntagged
	var roots []digest.Digest
	all, given := false, false
	if m.opts.Roots != nil {
		roots, all, given = m.opts.Roots(r.Name)
	}
	if given {
		keepAllRevisions = all
		if all {
			// Everything linked stays: Harbor's system artifacts are blobs
			// served through their layer links, with no manifest.
			for d := range r.Layers.All() {
				id, _ := g.find(d)
				keepLayer(id, d)
			}
		}
		for _, d := range roots {
			id, n := lookup(d)
			if n.state == stateMissing && !m.opts.Recheck {
				broken = true
				m.report(finding.MissingRootManifest, r.Name, d, key(layout.BlobData{Digest: d}),
					errors.New("a root of the repository (a database row, a link that stays) names this manifest, but storage lacks its blob"))
			}
			keep(id)
		}
	}

	// Tags. A tag whose current target is unknown keeps everything it
	// ever pointed to.
	for _, name := range sortedKeys(r.Tags) {
		if given {
			break // tags in storage mean nothing when the roots are given
		}
		t := r.Tags[name]
		if t.Current != "" {
			id, n := lookup(t.Current)
			if n.state == stateMissing {
				broken = true
				m.report(finding.MissingTaggedManifest, r.Name, t.Current, key(layout.TagCurrentLink{Repo: r.Name, Tag: name}),
					fmt.Errorf("tag %q points at manifest %s, which storage lacks", name, t.Current))
			}
			keep(id)
			continue
		}
		if !t.HasCurrent {
			// No current link: the registry does not serve the tag (a tag
			// delete, or a sweep, was cut off). Its index is history only.
			continue
		}
		m.report(finding.CorruptLink, r.Name, "", key(layout.TagCurrentLink{Repo: r.Name, Tag: name}),
			fmt.Errorf("tag %q: %s; every manifest in its index is kept", name, t.CurrentCorrupt))
		var index []digest.Digest
		for d := range t.Index.All() {
			index = append(index, d)
		}
		slices.Sort(index)
		for _, d := range index {
			id, _ := lookup(d)
			keep(id)
		}
	}

	// Revisions: roots unless DeleteUntagged, and the only place
	// referrers are found.
	referrers := map[uint32][]uint32{}
	revs := make([]digest.Digest, 0, r.Revisions.Len())
	for d := range r.Revisions.All() {
		revs = append(revs, d)
	}
	slices.Sort(revs)
	for _, d := range revs {
		id, n := lookup(d)
		switch n.state {
		case stateMissing:
			broken = true
			m.report(finding.DanglingRevisionLink, r.Name, d, key(layout.RevisionLink{Repo: r.Name, Digest: d}),
				errors.New("revision link to a manifest blob storage lacks"))
		case stateOK:
			if n.subject != noID {
				referrers[n.subject] = append(referrers[n.subject], id)
			}
		}
		// An unparseable revision could be a referrer of anything: keep it.
		if keepAllRevisions || n.state == stateBad {
			keep(id)
		}
	}

	for len(stack) > 0 {
		id := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		d := g.digest(id)
		keptManifests = append(keptManifests, id)
		keepLayer(id, d)
		n := g.nodes[id]
		switch n.state {
		case stateBad:
			m.report(finding.UnparseableManifest, r.Name, d, key(layout.BlobData{Digest: d}), n.err)
		case stateOK:
			for _, b := range n.blobs() {
				bd := g.digest(b)
				keepLayer(b, bd)
				if !m.inv.Blobs.Has(bd) && !slices.Contains(n.foreign(), b) {
					m.report(finding.MissingBlobReference, r.Name, bd, key(layout.BlobData{Digest: bd}),
						fmt.Errorf("referenced by manifest %s, but storage lacks it", d))
				}
			}
			for _, c := range n.children() {
				if g.nodes[c].state == stateMissing {
					cd := g.digest(c)
					m.report(finding.MissingChildManifest, r.Name, cd, key(layout.BlobData{Digest: cd}),
						fmt.Errorf("listed by index %s, but storage lacks it", d))
				}
				keep(c)
			}
			for _, s := range r.Signatures[d] {
				m.signatures.Set(s, struct{}{})
			}
		}
		for _, ref := range referrers[id] {
			keep(ref)
		}
		if m.opts.Recheck && n.state == stateOK && n.subject != noID {
			keep(n.subject)
		}
	}
	if broken {
		// The links stay, and so their blobs (a sweep keeps what a link
		// that stays names); they are not marked live: the guard that
		// refuses a mark that found nothing live counts manifests only.
		var unnamed []digest.Digest // digests no manifest of the run names have no id
		for d := range r.Layers.All() {
			if !m.inv.Blobs.Has(d) {
				continue // a link to a blob storage lacks keeps nothing
			}
			id, ok := g.find(d)
			switch {
			case !ok:
				unnamed = append(unnamed, d)
			case m.keptLayer[id] != gen:
				m.keptLayer[id] = gen
				keptLayers = append(keptLayers, id)
			}
		}
		rr := &RepoResult{KeptManifests: g.set(keptManifests), KeptLayers: g.set(keptLayers), Broken: true}
		for _, d := range unnamed {
			rr.KeptLayers.Add(d)
		}
		return rr
	}
	return &RepoResult{KeptManifests: g.set(keptManifests), KeptLayers: g.set(keptLayers)}
}

func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
