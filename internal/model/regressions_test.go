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
}

func TestModelRegressions(t *testing.T) {
	for _, seed := range regressionSeeds {
		if _, errs := runCase(seed); len(errs) > 0 {
			t.Errorf("seed %d:\n  %s", seed, strings.Join(errs, "\n  "))
		}
	}
}
