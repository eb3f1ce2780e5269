package retention_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/regsweep/regsweep/gc"
	"github.com/regsweep/regsweep/internal/regtree"
	"github.com/regsweep/regsweep/internal/storecheck"
	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/lock"
	"github.com/regsweep/regsweep/mark"
	"github.com/regsweep/regsweep/retention"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/storage/filesystem"
	"github.com/regsweep/regsweep/sweep"
)

// clocked is a memory store whose writes happen at the time the test sets.
type clocked struct {
	*storage.Memory
	at time.Time
}

func newClocked() *clocked {
	c := &clocked{at: time.Now().Add(-100 * time.Hour)}
	c.Memory = storage.NewMemory(func() time.Time { return c.at }, nil)
	return c
}

func mustPolicy(t *testing.T, text string) *retention.Policy {
	t.Helper()
	p, err := retention.Parse([]byte(text), "policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// gcWithPolicy is a gc run with policy as its participant, as gc --policy
// --delete makes it: Analyze, then Execute under the storage lock.
func gcWithPolicy(t *testing.T, d storage.Driver, policy *retention.Policy, o gc.Options) (*gc.Analysis, *retention.Participant, error) {
	t.Helper()
	ctx := context.Background()
	part := retention.NewParticipant(policy)
	a, err := gc.Analyze(ctx, d, mark.StorageSource(d, "", 0), o, part)
	if err != nil {
		t.Fatal(err)
	}
	held, lctx, err := lock.Acquire(ctx, d, lock.Options{Settle: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release(ctx)
	_, err = gc.Execute(lctx, a, held, gc.ExecOptions{})
	return a, part, err
}

// A policy in a gc run: the tags it does not keep go as tag items, the
// manifests only they reached go with them, a digest a kept tag shares
// stays, and a second run plans nothing.
func TestPolicyInAGCRun(t *testing.T) {
	ctx := context.Background()
	c := newClocked()
	w := regtree.NewWriter(c, 1)
	var digests []digest.Digest
	for i := 1; i <= 5; i++ {
		img := w.Image("team-a/app", []byte(fmt.Sprintf(`{"v":%d}`, i)), []byte(fmt.Sprintf("layer-%d", i)))
		digests = append(digests, img.Digest)
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		c.at = c.at.Add(time.Hour) // each tag an hour after the one before
		w.Tag("team-a/app", fmt.Sprintf("v%d", i), img.Digest)
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// latest shares v2's manifest: v2 goes, its manifest stays.
	w.Tag("team-a/app", "latest", digests[1])
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	other := regtree.NewWriter(c, 1)
	img := other.Image("tools/x", []byte(`{"x":1}`), []byte("layer-x"))
	other.Tag("tools/x", "old", img.Digest)
	if err := other.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	c.at = time.Now()

	policy := mustPolicy(t, `rules:
  - repositories: ["team-a/**"]
    keep:
      - tags: ["v*"]
        newest: 2
      - tags: ["latest"]
`)
	run := func() (*gc.Analysis, *retention.Participant, error) {
		return gcWithPolicy(t, c, policy, gc.Options{Grace: time.Minute, UploadGrace: time.Hour, MaxDeleteFraction: 1})
	}
	a, part, err := run()
	if err != nil {
		t.Fatal(err)
	}
	if a.Plan.Stats.Tags != 3 {
		t.Errorf("planned %d tags, want v1, v2, v3", a.Plan.Stats.Tags)
	}
	inv := storecheck.Intact(t, c)
	r := inv.Repositories["team-a/app"]
	for _, tag := range []string{"v1", "v2", "v3"} {
		if _, ok := r.Tags[tag]; ok {
			t.Errorf("tag %s is still there", tag)
		}
	}
	for _, tag := range []string{"v4", "v5", "latest"} {
		if t2 := r.Tags[tag]; t2 == nil || !t2.HasCurrent {
			t.Errorf("kept tag %s is gone", tag)
		}
	}
	if !r.Revisions.Has(digests[1]) {
		t.Errorf("v2's manifest, which latest still names, was collected")
	}
	for _, i := range []int{0, 2} {
		if r.Revisions.Has(digests[i]) || inv.Blobs.Has(digests[i]) {
			t.Errorf("v%d's manifest, which no tag reaches any more, was kept", i+1)
		}
	}
	if tx := inv.Repositories["tools/x"]; tx == nil || tx.Tags["old"] == nil {
		t.Errorf("a repository no rule matches lost its tag")
	}
	var explained int
	for _, d := range part.Decisions {
		explained += len(d.Tags)
	}
	if explained != 7 {
		t.Errorf("the decisions explain %d tags, want all 7", explained)
	}
	again, _, err := run()
	if err != nil || len(again.Plan.Items) != 0 {
		t.Errorf("a second run: %v, plans %d items", err, len(again.Plan.Items))
	}
}

// A policy that would delete every tag of a repository refuses (a guard,
// exit 6), and so does one over the allowed share of all tags.
func TestPolicyRefusals(t *testing.T) {
	ctx := context.Background()
	c := newClocked()
	w := regtree.NewWriter(c, 1)
	for i := 1; i <= 4; i++ {
		img := w.Image("app", []byte(fmt.Sprintf(`{"r":%d}`, i)), []byte(fmt.Sprintf("l-%d", i)))
		w.Tag("app", fmt.Sprintf("t%d", i), img.Digest)
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	c.at = time.Now()
	for _, tc := range []struct {
		name, policy, guard string
		fraction            float64
	}{
		{"empty repository", "rules:\n  - repositories: [\"app\"]\n    keep: []\n", retention.GuardEmptyRepository, 1},
		{"fraction", "rules:\n  - repositories: [\"app\"]\n    keep:\n      - tags: [\"t*\"]\n        newest: 1\n", retention.GuardTagFraction, 0.5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := gc.Analyze(ctx, c, mark.StorageSource(c, "", 0), gc.Options{Grace: time.Minute, MaxDeleteFraction: tc.fraction},
				retention.NewParticipant(mustPolicy(t, tc.policy)))
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, g := range a.Plan.Guards {
				found = found || g.Name == tc.guard
			}
			if !found {
				t.Fatalf("guards %v, want %s", a.Plan.Guards, tc.guard)
			}
			held, lctx, err := lock.Acquire(ctx, c, lock.Options{Settle: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer held.Release(ctx)
			before := len(c.Keys())
			var guards *sweep.GuardError
			if _, err := gc.Execute(lctx, a, held, gc.ExecOptions{}); !errors.As(err, &guards) || len(c.Keys()) != before {
				t.Errorf("execute: %v, %d keys deleted", err, before-len(c.Keys()))
			}
		})
	}
}

// In a repository a rule governs, an untagged manifest goes once its
// revision link is older than the rule's untagged.older_than, whatever
// --delete-untagged says; elsewhere --delete-untagged decides.
func TestPolicyUntaggedOlderThan(t *testing.T) {
	ctx := context.Background()
	c := newClocked()
	c.at = time.Now().Add(-300 * time.Hour)
	w := regtree.NewWriter(c, 1)
	old := w.Image("svc", []byte(`{"u":"old"}`), []byte("l-old"))
	elsewhere := w.Image("free", []byte(`{"u":"free"}`), []byte("l-free"))
	keep := w.Image("free", []byte(`{"u":"keep"}`), []byte("l-keep"))
	w.Tag("free", "t", keep.Digest)
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	c.at = time.Now().Add(-10 * time.Hour)
	young := w.Image("svc", []byte(`{"u":"young"}`), []byte("l-young"))
	tagged := w.Image("svc", []byte(`{"u":"tagged"}`), []byte("l-tagged"))
	w.Tag("svc", "t", tagged.Digest)
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	c.at = time.Now()
	policy := mustPolicy(t, "rules:\n  - repositories: [\"svc\"]\n    keep:\n      - tags: [\"*\"]\n    untagged:\n      older_than: 100h\n")
	a, err := gc.Analyze(ctx, c, mark.StorageSource(c, "", 0), gc.Options{Grace: time.Minute, MaxDeleteFraction: 1}, retention.NewParticipant(policy))
	if err != nil {
		t.Fatal(err)
	}
	planned := map[digest.Digest]bool{}
	for _, it := range a.Plan.Items {
		if it.Kind == sweep.KindRevisionLink {
			planned[it.Digest] = true
		}
	}
	if !planned[old.Digest] || planned[young.Digest] || planned[tagged.Digest] {
		t.Errorf("governed repository: old untagged planned %v (want true), young %v, tagged %v (want false)",
			planned[old.Digest], planned[young.Digest], planned[tagged.Digest])
	}
	if planned[elsewhere.Digest] {
		t.Errorf("an untagged manifest of a repository no rule governs is planned without --delete-untagged")
	}
}

// A rule with allow_empty: true may delete every tag of a repository: the
// tags, the manifests they alone reached and then the repository go in
// one run (its tags' index links are the tag items', not keys the walk
// missed), and a second run plans nothing.
func TestPolicyEmptiesARepositoryItAllows(t *testing.T) {
	ctx := context.Background()
	c := newClocked()
	w := regtree.NewWriter(c, 1)
	for i := 1; i <= 2; i++ {
		img := w.Image("scratch/tmp", []byte(fmt.Sprintf(`{"s":%d}`, i)), []byte(fmt.Sprintf("s-%d", i)))
		w.Tag("scratch/tmp", fmt.Sprintf("t%d", i), img.Digest)
	}
	keep := w.Image("app", []byte(`{"a":1}`), []byte("a-1"))
	w.Tag("app", "v1", keep.Digest)
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	c.at = time.Now()
	policy := mustPolicy(t, "rules:\n  - repositories: [\"scratch/*\"]\n    keep: []\n    allow_empty: true\n")
	run := func() (*gc.Analysis, error) {
		a, _, err := gcWithPolicy(t, c, policy, gc.Options{Grace: time.Minute, MaxDeleteFraction: 1})
		return a, err
	}
	a, err := run()
	if err != nil {
		t.Fatalf("execute: %v", err)
	}
	if a.Plan.Stats.Tags != 2 || a.Plan.Stats.Repositories != 1 {
		t.Errorf("planned %d tags and %d repositories, want 2 and 1", a.Plan.Stats.Tags, a.Plan.Stats.Repositories)
	}
	inv := storecheck.Intact(t, c)
	if _, ok := inv.Repositories["scratch/tmp"]; ok {
		t.Errorf("the emptied repository still has keys")
	}
	if r := inv.Repositories["app"]; r == nil || r.Tags["v1"] == nil {
		t.Errorf("a repository no rule governs lost its tag")
	}
	again, err := run()
	if err != nil || len(again.Plan.Items) != 0 {
		t.Errorf("a second run: %v, plans %v", err, again.Plan.Items)
	}
}

// On a filesystem a deleted tag leaves no directory behind: the registry
// lists a repository's tags by the directories under _manifests/tags, so
// an emptied one would still be listed, and answer 404 to a pull.
func TestPolicyLeavesNoTagDirectoryOnAFilesystem(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	d, err := filesystem.New(root, 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := regtree.NewWriter(d, 1)
	for i := 1; i <= 3; i++ {
		img := w.Image("team-a/app", []byte(fmt.Sprintf(`{"v":%d}`, i)), []byte(fmt.Sprintf("layer-%d", i)))
		w.Tag("team-a/app", fmt.Sprintf("v%d", i), img.Digest)
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	policy := mustPolicy(t, "rules:\n  - repositories: [\"team-a/**\"]\n    keep:\n      - tags: [\"v3\"]\n")
	if _, _, err := gcWithPolicy(t, d, policy, gc.Options{MaxDeleteFraction: 1}); err != nil {
		t.Fatal(err)
	}
	current, err := layout.Path(layout.TagCurrentLink{Repo: "team-a/app", Tag: "v3"})
	if err != nil {
		t.Fatal(err)
	}
	tags := filepath.Join(root, filepath.Dir(filepath.Dir(filepath.Dir(current))))
	entries, err := os.ReadDir(tags)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"v3"}) {
		t.Errorf("%s holds %v, want only the kept tag v3", tags, names)
	}
}
