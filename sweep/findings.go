package sweep

import (
	"strings"

	"github.com/regsweep/regsweep/finding"
	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/walker"
)

// Findings are what the plan finds, over the walk it was built from: what
// its items reclaim (an upload, or an orphan segment set, as one finding),
// and every layer link to a blob storage lacks, planned or kept. Dangling
// revision links are the mark's findings; tag and signature links are
// part of a finding of their manifest.
func (p *Plan) Findings(inv *walker.Inventory) []finding.Finding {
	var out []finding.Finding
	add := func(f finding.Finding) { out = append(out, f) }
	uploads := map[string]*finding.Finding{}
	orphanSegments := map[string]*finding.Finding{}
	planned := map[string]bool{} // keys of planned layer links
	for _, it := range p.Items {
		switch it.Kind {
		case KindBlob:
			add(finding.Finding{Kind: finding.OrphanBlob, Digest: it.Digest, Key: it.Key, Size: it.Size, Explanation: "no kept manifest references this blob"})
		case KindRevisionLink:
			if !strings.HasPrefix(it.Reason, "dangling") {
				add(finding.Finding{Kind: finding.UntaggedManifest, Repo: it.Repo, Digest: it.Digest, Key: it.Key,
					Explanation: "no tag reaches this manifest (through indexes and referrers)"})
			}
		case KindLayerLink:
			planned[it.Key] = true
			if strings.HasPrefix(it.Reason, "dangling") {
				add(finding.Finding{Kind: finding.DanglingLayerLink, Repo: it.Repo, Digest: it.Digest, Key: it.Key,
					Explanation: "layer link to a blob storage lacks: pulls of it fail"})
			} else {
				add(finding.Finding{Kind: finding.UnusedLayerLink, Repo: it.Repo, Digest: it.Digest, Key: it.Key,
					Explanation: "no kept manifest of this repository uses the blob"})
			}
		case KindUploadFile:
			id := it.Repo + "/" + it.UploadID
			if f := uploads[id]; f != nil {
				f.Size += it.Size
				continue
			}
			uploads[id] = &finding.Finding{Kind: finding.StaleUpload, Repo: it.Repo, Key: layout.RepoPrefix(it.Repo) + "_uploads/" + it.UploadID + "/",
				Size: it.Size, Explanation: it.Reason}
		case KindMultipartUpload:
			add(finding.Finding{Kind: finding.StaleMultipartUpload, Repo: it.Repo, Key: it.Key, Explanation: it.Reason})
		case KindSegment:
			if it.Digest == "" {
				if f := orphanSegments[it.Segments]; f != nil {
					f.Size += it.Size
					continue
				}
				orphanSegments[it.Segments] = &finding.Finding{Kind: finding.OrphanSegment, Key: it.Segments + "/", Size: it.Size,
					Explanation: "Swift segments no blob points to"}
			}
		case KindRepository:
			add(finding.Finding{Kind: finding.EmptyRepository, Repo: it.Repo, Key: it.Key,
				Explanation: "repository with no live manifest: gc removes it whole"})
		}
	}
	// A layer link to a missing blob that a kept manifest references stays
	// (fail closed), but pulls through it fail all the same.
	for _, name := range inv.RepositoryNames() {
		for d := range inv.Repositories[name].Layers.All() {
			if inv.Blobs.Has(d) {
				continue
			}
			k, err := layout.Path(layout.LayerLink{Repo: name, Digest: d})
			if err != nil || planned[k] {
				continue
			}
			add(finding.Finding{Kind: finding.DanglingLayerLink, Repo: name, Digest: d, Key: k,
				Explanation: "layer link to a blob storage lacks: pulls of it fail (a kept manifest references it, so gc keeps the link)"})
		}
	}
	for _, f := range uploads {
		add(*f)
	}
	for _, f := range orphanSegments {
		add(*f)
	}
	return out
}
