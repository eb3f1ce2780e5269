package reports

import (
	"github.com/regsweep/regsweep/finding"
	"github.com/regsweep/regsweep/mark"
	"github.com/regsweep/regsweep/sweep"
	"github.com/regsweep/regsweep/walker"
)

// Summary is the block audit and gc documents share (docs/report-schema.md):
// what storage holds, what a gc would free, findings by kind, where the
// space goes, and how long each phase took.
type Summary struct {
	Totals         Counts               `json:"totals"`
	Reclaimable    Reclaimable          `json:"reclaimable"`
	FindingsByKind map[finding.Kind]int `json:"findings_by_kind"`
	Accounting
	// Durations are seconds per phase (walk, mark, verify, sweep, total);
	// a phase that did not run is absent.
	Durations map[string]float64 `json:"durations_seconds"`
}

// Summarize builds the summary of a marked inventory and its plan, and
// returns the storage findings too (the audit lists them; gc counts them).
func Summarize(inv *walker.Inventory, res *mark.Result, plan *sweep.Plan) (Summary, []finding.Finding) {
	s := Summary{FindingsByKind: map[finding.Kind]int{}, Durations: map[string]float64{}}
	s.Totals = inventoryTotals(inv, repositoryCounts(inv))
	st := plan.Stats
	s.Reclaimable = Reclaimable{Blobs: st.Blobs, Bytes: st.Bytes, Manifests: st.Manifests, LayerLinks: st.LayerLinks, Uploads: st.Uploads,
		MultipartUploads: st.MultipartUploads, Segments: st.Segments, Repositories: st.Repositories}
	for _, k := range finding.Kinds() {
		s.FindingsByKind[k] = 0
	}
	findings := storageFindings(inv, res, plan)
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
