package reports

import (
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/mark"
	"github.com/regsweep/regsweep/sweep"
	"github.com/regsweep/regsweep/walker"
)

// Summary is the block audit and gc documents share (docs/report-schema.md):
// what storage holds, what a gc would free, findings by kind, where the
// space goes, and how long each phase took.
type Summary struct {
	Totals         Counts         `json:"totals"`
	Reclaimable    Reclaimable    `json:"reclaimable"`
	FindingsByKind map[string]int `json:"findings_by_kind"`
	Accounting
	// Durations are seconds per phase (walk, mark, verify, sweep, total);
	// a phase that did not run is absent.
	Durations map[string]float64 `json:"durations_seconds"`
}

// Summarize builds the summary of a marked inventory and its plan, and
// returns the storage findings too (the audit lists them; gc counts them).
func Summarize(inv *walker.Inventory, res *mark.Result, plan *sweep.Plan) (Summary, []Finding) {
	s := Summary{FindingsByKind: map[string]int{}, Durations: map[string]float64{}}
	s.Totals = inventoryTotals(inv, repositoryCounts(inv))
	st := plan.Stats
	s.Reclaimable = Reclaimable{Blobs: st.Blobs, Bytes: st.Bytes, Manifests: st.Manifests, LayerLinks: st.LayerLinks, Uploads: st.Uploads,
		MultipartUploads: st.MultipartUploads, Segments: st.Segments, Repositories: st.Repositories}
	for k := range severity {
		s.FindingsByKind[k] = 0
	}
	findings := findingsOf(inv, res, plan)
	for _, f := range findings {
		s.FindingsByKind[f.Kind]++
	}
	s.Accounting = Account(inv, res, plan)
	return s, findings
}

// SetDuration records how long a phase took.
func (s *Summary) SetDuration(phase string, seconds float64) {
	if s.Durations == nil {
		s.Durations = map[string]float64{}
	}
	s.Durations[phase] = seconds
}

// NameAffectedTags names, in each broken finding about a manifest's
// references (missing blobs and children, unparseable or missing
// manifests), the tags of its repository whose pull it breaks: those whose
// manifest tree reaches the finding's digest, as the mark parsed them.
func (a *Audit) NameAffectedTags(inv *walker.Inventory, res *mark.Result) {
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
			children, blobs, _, _, _ := res.References(d)
			for _, b := range blobs {
				m[b] = true
			}
			stack = append(stack, children...)
		}
		reach[k] = m
		return m
	}
	for i := range a.Findings {
		f := &a.Findings[i]
		switch f.Kind {
		case KindMissingBlobReference, KindMissingChildManifest, KindUnparseableManifest, KindMissingTaggedManifest:
		default:
			continue
		}
		r := inv.Repositories[f.Repo]
		if r == nil || f.Digest == "" {
			continue
		}
		var tags []string
		for name, t := range r.Tags {
			if t.Current != "" && reached(f.Repo, name, t.Current)[f.Digest] {
				tags = append(tags, name)
			}
		}
		slices.Sort(tags)
		f.Tags = tags
		if len(tags) > 0 && !strings.Contains(f.Explanation, "tags:") {
			f.Explanation += "; breaks tags: " + strings.Join(tags, ", ")
		}
	}
}
