package model

import (
	"strings"
	"testing"
)

// Seeds that once found a bug, replayed on every run.
var regressionSeeds = []uint64{
	// A manifest first protected as a blob (a registry 2.1 _layers link to
	// it) was never followed by the recheck: its layers were deleted while
	// its young revision link stayed.
	249967278225597, 272570981606217,
	// A young revision link to a manifest storage lacks keeps that
	// manifest's referrers: the model dropped them (the product was right).
	197098939419645, 157666205279832,
	// Only a missing manifest was marked: nothing_marked must still refuse
	// (it did not, and a second run refused what the first had swept).
	157666205279685,
}

func TestModelRegressions(t *testing.T) {
	for _, seed := range regressionSeeds {
		if _, errs := runCase(seed); len(errs) > 0 {
			t.Errorf("seed %d:\n  %s", seed, strings.Join(errs, "\n  "))
		}
	}
}
