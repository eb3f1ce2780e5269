package gc_test

import (
	"testing"

	"github.com/regsweep/regsweep/gc"
	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/sweep"
)

// A plan of links only (the image's blobs are kept by another repository,
// and its own repository keeps another image): a client re-pushes the
// image in place after its revision link went and before its layer links
// go. Its manifest PUT saw the layer links and landed; the layer phase
// then deletes them. With no blob to delete there is no blob phase, but
// the recheck that heals must still run after the links, or the re-pushed
// image no longer pulls (blob unknown).
func TestHealRunsWhenThePlanHasOnlyLinks(t *testing.T) {
	for _, statLinks := range []bool{false, true} {
		e := newEnv()
		w := e.writer()
		keeper(w)
		kept := w.Image("r", []byte(`{"r":1}`), []byte("layer-R"))
		w.Tag("r", "v1", kept.Digest)
		m := w.Image("r", []byte(`{"q":1}`), []byte("layer-Q1"), []byte("layer-Q2"))
		// The same image tagged in another repository keeps its blobs.
		w.Image("shared", []byte(`{"q":1}`), []byte("layer-Q1"), []byte("layer-Q2"))
		w.Tag("shared", "v1", m.Digest)
		flush(t, w)
		p := e.plan(t, true)
		for _, it := range p.Items {
			if it.Kind != sweep.KindRevisionLink && it.Kind != sweep.KindLayerLink {
				t.Fatalf("scenario: the plan should hold links only, it holds %s %s", it.Kind, it.Key)
			}
		}
		if rev := pathOf(layout.RevisionLink{Repo: "r", Digest: m.Digest}); !planned(p, rev) {
			t.Fatalf("scenario: %s should be planned", rev)
		}
		r := e.exec(t, p, execOpts{exec: gc.ExecOptions{StatLinks: &statLinks, BeforePhase: func(ph int) error {
			if ph == 2 { // the revision link is gone, the layer links are next
				e.young()
				w := e.writer()
				w.Revision("r", m.Digest)
				w.Tag("r", "again", m.Digest)
				flush(t, w)
			}
			return nil
		}}})
		if r.err != nil {
			t.Fatal(r.err)
		}
		checkSafe(t, e.mem)
		if r.recheck.Healed != 3 { // config and two layers
			t.Errorf("StatLinks %t: healed %d links, want 3: %+v", statLinks, r.recheck.Healed, r.recheck)
		}
	}
}
