package gc_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/regsweep/regsweep/gc"
	"github.com/regsweep/regsweep/lock"
	"github.com/regsweep/regsweep/mark"
	"github.com/regsweep/regsweep/sweep"
)

// stageRecorder notes the stages it is called at and, at LinksDeleted,
// which planned links and blobs storage still has.
type stageRecorder struct {
	gc.Passive
	e                   *env
	stages              []gc.Stage
	linksLeft, blobsAt  int
	failAt              gc.Stage
	plannedLinks, blobs []string
}

func (s *stageRecorder) At(_ context.Context, stage gc.Stage, a *gc.Analysis) error {
	s.stages = append(s.stages, stage)
	if stage == gc.Planned {
		for _, it := range a.Plan.Items {
			switch {
			case it.Kind == sweep.KindBlob:
				s.blobs = append(s.blobs, it.Key)
			case sweep.PhaseOf(it.Kind) < sweep.PhaseOf(sweep.KindBlob):
				s.plannedLinks = append(s.plannedLinks, it.Key)
			}
		}
	}
	if stage == gc.LinksDeleted {
		for _, k := range s.plannedLinks {
			if has(s.e.mem, k) {
				s.linksLeft++
			}
		}
		for _, k := range s.blobs {
			if has(s.e.mem, k) {
				s.blobsAt++
			}
		}
	}
	if stage == s.failAt {
		return errors.New("the cache could not be purged")
	}
	return nil
}

// Participants take part between the link and blob phases (LinksDeleted):
// every planned link is gone, every planned blob still there. An error
// there stops the run before any blob is deleted, and Executed still runs.
func TestLinksDeletedComesBetweenLinksAndBlobs(t *testing.T) {
	for _, fail := range []bool{false, true} {
		e := newEnv()
		w := e.writer()
		keeper(w)
		w.Image("r", []byte(`{"q":1}`), []byte("layer-Q1")) // untagged: garbage
		flush(t, w)
		rec := &stageRecorder{e: e, failAt: -1}
		if fail {
			rec.failAt = gc.LinksDeleted
		}
		a, err := gc.Analyze(context.Background(), e.d, mark.StorageSource(e.d, "", 0), reviewOptions(true, 4), rec)
		if err != nil {
			t.Fatal(err)
		}
		if len(rec.plannedLinks) == 0 || len(rec.blobs) == 0 {
			t.Fatalf("scenario: the plan should delete links and blobs: %v %v", rec.plannedLinks, rec.blobs)
		}
		held, lctx, err := lock.Acquire(context.Background(), e.d, lock.Options{Settle: -1})
		if err != nil {
			t.Fatal(err)
		}
		_, err = gc.Execute(lctx, a, held, gc.ExecOptions{})
		held.Release(context.Background())
		want := []gc.Stage{gc.Walked, gc.Marked, gc.Planned, gc.Executing, gc.LinksDeleted, gc.Executed}
		if !slices.Equal(rec.stages, want) {
			t.Errorf("fail %t: stages %v, want %v", fail, rec.stages, want)
		}
		if rec.linksLeft != 0 || rec.blobsAt != len(rec.blobs) {
			t.Errorf("fail %t: at LinksDeleted %d planned link(s) left and %d of %d planned blob(s) there; want 0 and all", fail, rec.linksLeft, rec.blobsAt, len(rec.blobs))
		}
		left := 0
		for _, k := range rec.blobs {
			if has(e.mem, k) {
				left++
			}
		}
		switch {
		case fail && (err == nil || left != len(rec.blobs)):
			t.Errorf("an error at LinksDeleted: Execute returned %v and %d of %d blobs are left, want the error and every blob", err, left, len(rec.blobs))
		case !fail && (err != nil || left != 0):
			t.Errorf("Execute returned %v and left %d blob(s)", err, left)
		}
	}
}
