package main

import (
	"regexp"
	"strings"
	"testing"
)

// A gc dry run says where the space it would free comes from: the
// repositories it frees most in, --top of them.
func TestGCTextListsWhereTheSpaceComesFrom(t *testing.T) {
	root := sampleTree(t)
	stdout, stderr, code := run(t, "gc", "--fs-root", root, "--grace", "0s", "--upload-grace", "0s", "--delete-untagged",
		"--max-delete-fraction", "0.9", "--cache-dir", t.TempDir(), "--top", "2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "Frees the most in (top 2 of 4 repositories") {
		t.Fatalf("no top list of 2 of the 4 repositories:\n%s", stdout)
	}
	rows := regexp.MustCompile(`(?m)^  (team\d/app\d+)\s+([0-9.]+ [KMG]?i?B)`).FindAllStringSubmatch(stdout, -1)
	if len(rows) != 2 {
		t.Errorf("%d rows in the top list, want 2:\n%s", len(rows), stdout)
	}
}
