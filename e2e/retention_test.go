package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/internal/testenv"
	"github.com/regsweep/regsweep/layout"
)

// policyYAML is the e2e retention policy: every kind of clause, nested and
// single-segment repository globs, a rule shadowed by an earlier one
// (tools/x is governed by rule 2's "tools/*", not by rule 3), and a rule
// that may empty a repository.
const policyYAML = `rules:
  - repositories: ["team-a/**"]
    keep:
      - tags: ["v*"]
        newest: 2
      - tags: ["re:^release-[0-9]+$"]
      - tags: ["latest", "stable"]
      - tags: ["nightly-*"]
        pushed_within: 720h
    untagged:
      older_than: 0s
  - repositories: ["tools/*"]
    keep:
      - tags: ["v*"]
        newest: 1
    untagged:
      older_than: 720h
  - repositories: ["scratch/*", "tools/x"]
    keep: []
    allow_empty: true
`

// policyCorpus is what was pushed for the policy tests and what the policy
// must leave.
type policyCorpus struct {
	// aged: the tags' (and one revision's) times were set back days
	// (filesystem); on object stores every time is the push's.
	aged    bool
	digests map[string]string   // "repo:tag" -> the digest it names
	remain  map[string][]string // repository -> its tags after the run, sorted
	deleted map[string][]string // repository -> the tags the policy deletes, sorted
	// kept are the references (tags, and digests of untagged manifests
	// that must stay) that pull after the run; keptBlobs what they need.
	kept      [][2]string
	keptBlobs map[string]bool
	emptied   string // the repository whose only tag goes
}

func (c *policyCorpus) deletedCount() int {
	n := 0
	for _, tags := range c.deleted {
		n += len(tags)
	}
	return n
}

// remainingRefs are "repo:tag" of every tag the run leaves, sorted.
func (c *policyCorpus) remainingRefs() []string {
	var out []string
	for repo, tags := range c.remain {
		for _, tag := range tags {
			out = append(out, repo+":"+tag)
		}
	}
	slices.Sort(out)
	return out
}

// pushPolicyCorpus pushes through b's registry, tag after tag; the tags a
// "newest" clause counts are pushed in the order their names sort, so that
// it decides the same whether pushes land in one second or several (equal
// times break ties by name):
//
//	team-a/app       latest (a0, then moved to v1's a1), v1..v4 (a1..a4),
//	                 release-1a (shares v2's a2), release-1 (r1),
//	                 nightly-1 (n1), nightly-2 (shares v3's a3)
//	team-a/sub/deep  an index tagged stable with two untagged children and
//	                 a referrer, and old (d1)
//	tools/x          v1 (x1), v2 (x2)
//	tools/x/y        old (y0, then y1: y0 is left untagged)
//	scratch/tmp      t1 (s1)
//
// On a filesystem it then sets the tags' times apart, days back: each an
// hour after the one pushed before it, from 100 days ago; nightly-2 a day
// ago and release-1a 3 hours ago (a grace of 6h keeps it); and x1's
// revision 40 days back (older than tools/*'s untagged.older_than).
func pushPolicyCorpus(t *testing.T, b *backendUnderTest) *policyCorpus {
	t.Helper()
	began := time.Now()
	reg := b.reg
	r := func(n int) []byte { return testenv.RandomBytes(t, n) }
	c := &policyCorpus{aged: b.fsRoot != "", digests: map[string]string{}, emptied: "scratch/tmp"}
	var order []string // "repo:tag" in push order
	push := func(ref string, layers ...[]byte) string {
		d := testenv.PushRandomImage(t, reg, ref, layers...)
		if strings.Contains(ref, ":") {
			c.digests[ref] = d
			order = append(order, ref)
		}
		return d
	}
	tag := func(repo, d, tag string) {
		reg.Crane(t, "tag", reg.Ref(repo+"@"+d), tag)
		c.digests[repo+":"+tag] = d
		order = append(order, repo+":"+tag)
	}
	base := r(2000)                         // a layer every team-a/app image shares
	push("team-a/app:latest", base, r(600)) // a0: moved away below, left untagged
	a1 := push("team-a/app:v1", base, r(610))
	a2 := push("team-a/app:v2", base, r(620))
	a3 := push("team-a/app:v3", base, r(630))
	push("team-a/app:v4", base, r(640))
	tag("team-a/app", a1, "latest")
	tag("team-a/app", a2, "release-1a")
	push("team-a/app:release-1", base, r(650))
	push("team-a/app:nightly-1", r(660))
	tag("team-a/app", a3, "nightly-2")

	c1 := push("team-a/sub/deep", r(700))
	c2 := push("team-a/sub/deep", r(710))
	index := testenv.PushIndex(t, reg, "team-a/sub/deep:stable", c1, c2)
	c.digests["team-a/sub/deep:stable"] = index
	order = append(order, "team-a/sub/deep:stable")
	sig := referrer(t, reg, "team-a/sub/deep", index, r(90))
	push("team-a/sub/deep:old", r(720))

	x1 := push("tools/x:v1", r(800))
	push("tools/x:v2", r(810))
	y0 := push("tools/x/y:old", r(900))
	push("tools/x/y:old", r(910))
	push("scratch/tmp:t1", r(1000))

	if c.aged {
		now := time.Now()
		at := map[string]time.Time{}
		for i, ref := range order {
			at[ref] = now.Add(-100*24*time.Hour + time.Duration(i)*time.Hour)
		}
		at["team-a/app:nightly-2"] = now.Add(-24 * time.Hour)
		at["team-a/app:release-1a"] = now.Add(-3 * time.Hour)
		for ref, when := range at {
			repo, tagName, _ := strings.Cut(ref, ":")
			current, err := layout.Path(layout.TagCurrentLink{Repo: repo, Tag: tagName})
			if err != nil {
				t.Fatal(err)
			}
			// The tag's whole directory: its current link and its index
			// links, as a push at that time wrote them.
			chtimesUnder(t, filepath.Join(b.fsRoot, strings.TrimSuffix(current, "current/link")), when)
		}
		revision, err := layout.Path(layout.RevisionLink{Repo: "tools/x", Digest: mustDigest(t, x1)})
		if err != nil {
			t.Fatal(err)
		}
		chtimesUnder(t, filepath.Join(b.fsRoot, revision), now.Add(-40*24*time.Hour))
	}

	c.remain = map[string][]string{
		"team-a/app":      {"latest", "nightly-2", "release-1", "v3", "v4"},
		"team-a/sub/deep": {"stable"},
		"tools/x":         {"v2"},
		"tools/x/y":       {"old"},
	}
	c.deleted = map[string][]string{
		"team-a/app":      {"release-1a", "v1", "v2"},
		"team-a/sub/deep": {"old"},
		"tools/x":         {"v1"},
		"scratch/tmp":     {"t1"},
	}
	if c.aged {
		c.deleted["team-a/app"] = []string{"nightly-1", "release-1a", "v1", "v2"}
	} else {
		c.remain["team-a/app"] = []string{"latest", "nightly-1", "nightly-2", "release-1", "v3", "v4"}
	}
	for repo, tags := range c.remain {
		for _, tg := range tags {
			c.kept = append(c.kept, [2]string{repo, tg})
		}
	}
	// Untagged manifests that stay: the index's children (through it), the
	// referrer of the kept index, y0 in a repository no rule governs (no
	// --delete-untagged), and on object stores x1, younger than tools/*'s
	// untagged.older_than.
	c.kept = append(c.kept, [2]string{"team-a/sub/deep", sig}, [2]string{"team-a/sub/deep", c1}, [2]string{"team-a/sub/deep", c2},
		[2]string{"tools/x/y", y0})
	if !c.aged {
		c.kept = append(c.kept, [2]string{"tools/x", x1})
	}
	c.keptBlobs = map[string]bool{}
	for _, k := range c.kept {
		for _, d := range pull(t, reg, k[0], k[1]) {
			c.keptBlobs[d] = true
		}
	}
	t.Logf("%s: policy corpus pushed in %s", b.name, time.Since(began).Round(time.Millisecond))
	return c
}

// chtimesUnder sets the mtime of path, a file, or of every file under
// it, a directory.
func chtimesUnder(t *testing.T, path string, when time.Time) {
	t.Helper()
	err := filepath.WalkDir(path, func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		return os.Chtimes(p, when, when)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func mustDigest(t *testing.T, s string) digest.Digest {
	t.Helper()
	d, err := digest.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// writeFile writes a file in a fresh directory and returns its path.
func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// policyArgs are gc's flags in the policy tests: nothing is kept for its
// age but by the policy.
func policyArgs(policy string, extra ...string) []string {
	return append([]string{"gc", "--policy", policy, "--grace", "0s", "--upload-grace", "0s", "--max-delete-fraction", "0.9"}, extra...)
}

// policyGCDoc is what the tests read of a gc JSON report with a policy.
type policyGCDoc struct {
	DryRun bool `json:"dry_run"`
	Plan   struct {
		Tags      int   `json:"tags"`
		Blobs     int   `json:"blobs"`
		BlobBytes int64 `json:"blob_bytes"`
		Bytes     int64 `json:"bytes"`
	} `json:"plan"`
	PlanCounts       map[string]any `json:"-"`
	TagsByRepository map[string]int `json:"tags_by_repository"`
	Retention        []struct {
		Repository string         `json:"repository"`
		Rule       int            `json:"rule"`
		RuleLine   int            `json:"rule_line"`
		Pattern    string         `json:"pattern"`
		AllowEmpty bool           `json:"allow_empty"`
		Kept       int            `json:"kept"`
		Deleted    int            `json:"deleted"`
		Tags       []explainedTag `json:"tags"`
	} `json:"retention"`
	Guards []struct {
		Name    string `json:"name"`
		Message string `json:"message"`
	} `json:"guards"`
	Result *struct {
		Deleted    map[string]int `json:"deleted"`
		Kept       map[string]int `json:"kept"`
		FreedBytes int64          `json:"freed_bytes"`
	} `json:"result"`
	Recheck *struct {
		Dropped int `json:"dropped"`
		Changed int `json:"changed"`
	} `json:"recheck"`
}

// explainedTag is a tag's decision in --explain's JSON.
type explainedTag struct {
	Tag      string `json:"tag"`
	Digest   string `json:"digest"`
	Time     string `json:"time"` // whole seconds: the walk's
	Decision string `json:"decision"`
	Clause   int    `json:"clause"`
	Reason   string `json:"reason"`
}

func parsePolicyDoc(t *testing.T, out string) policyGCDoc {
	t.Helper()
	var doc policyGCDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("gc JSON: %v\n%s", err, out)
	}
	var raw struct {
		Plan map[string]any `json:"plan"`
	}
	json.Unmarshal([]byte(out), &raw)
	doc.PlanCounts = raw.Plan
	return doc
}

// decision is the verdict --explain gave on repo:tag.
func (d policyGCDoc) decision(repo, tag string) (decision, reason string, clause, rule int, pattern string, ok bool) {
	for _, r := range d.Retention {
		if r.Repository != repo {
			continue
		}
		for _, tg := range r.Tags {
			if tg.Tag == tag {
				return tg.Decision, tg.Reason, tg.Clause, r.Rule, r.Pattern, true
			}
		}
	}
	return "", "", 0, 0, "", false
}

func (d policyGCDoc) guard(name string) (string, bool) {
	for _, g := range d.Guards {
		if g.Name == name {
			return g.Message, true
		}
	}
	return "", false
}

// TestPolicyFilesystem, TestPolicyS3 and TestPolicySwift run `gc --policy
// --delete` on a pushed corpus: exactly the expected tags remain, every
// kept reference pulls and verifies through a restarted registry, the
// blobs freed are the dry run's figure and a second run plans nothing.
// The filesystem run also checks every refusal through the CLI first, and
// the policy given in regsweep.yaml.
func TestPolicyFilesystem(t *testing.T) {
	b := filesystemBackend(t)
	c := pushPolicyCorpus(t, b)
	policy := writeFile(t, "policy.yaml", policyYAML)
	// Copies before anything is deleted, for the reviewed plan and the
	// kills (cp -a keeps the mtimes).
	reviewed := fsBackendAt(copyTree(t, b.fsRoot))
	killed := copyTree(t, b.fsRoot)
	cloneKilled := func(t *testing.T) *backendUnderTest { return fsBackendAt(copyTree(t, killed)) }
	t.Run("refusals", func(t *testing.T) { checkPolicyRefusals(t, b, c, policy) })
	t.Run("config file", func(t *testing.T) { checkPolicyFromConfigFile(t, b, c, policy) })
	runPolicyScenario(t, b, c, policy)
	t.Run("reviewed plan", func(t *testing.T) { runPolicyReviewedPlan(t, reviewed, c, policy) })
	t.Run("killed in the tag phase", func(t *testing.T) {
		runPolicyKilled(t, cloneKilled, c, policy, 0, 300*time.Millisecond, 700*time.Millisecond)
	})
}

func TestPolicyS3(t *testing.T) {
	m := testenv.MinIO(t)
	b := minioBackend(t)
	c := pushPolicyCorpus(t, b)
	policy := writeFile(t, "policy.yaml", policyYAML)
	clone := cloneS3(t, m, b)
	killed := cloneS3(t, m, b)
	// On an object store every tag is as young as its push: a deleting run
	// with a grace longer than that deletes no tag (nor anything else).
	before := allTags(t, b.reg)
	if _, stderr, code := b.run(t, "gc", "--policy", policy, "--grace", "6h", "--max-delete-fraction", "0.9", "--cache-dir", t.TempDir(), "--delete"); code != 0 {
		t.Fatalf("gc --delete --grace 6h exited %d: %s", code, stderr)
	}
	if after := allTags(t, b.reg); !slices.Equal(after, before) {
		t.Errorf("gc --delete --grace 6h changed the tags: %v, before %v", after, before)
	}
	runPolicyScenario(t, b, c, policy)
	t.Run("reviewed plan", func(t *testing.T) { runPolicyReviewedPlan(t, clone, c, policy) })
	t.Run("killed in the tag phase", func(t *testing.T) {
		// The clone made before the scenario, not a fresh one: keys copied
		// seconds before a run count as a push since its walk, and keep
		// the repository the policy empties.
		runPolicyKilled(t, func(*testing.T) *backendUnderTest { return killed }, c, policy, 100*time.Millisecond)
	})
}

func TestPolicySwift(t *testing.T) {
	b := swiftBackend(t)
	c := pushPolicyCorpus(t, b)
	runPolicyScenario(t, b, c, writeFile(t, "policy.yaml", policyYAML))
}

// runPolicyScenario is the dry run (with --explain and --plan-out), the
// grace, the deleting run, what it leaves and the second run.
func runPolicyScenario(t *testing.T, b *backendUnderTest, c *policyCorpus, policy string) {
	before := b.inventory(t)
	if lost := diff(c.keptBlobs, blobSet(before)); len(lost) > 0 {
		t.Fatalf("kept blobs not in storage before gc: %v", lost)
	}
	garbage := diff(blobSet(before), c.keptBlobs)
	cache := t.TempDir()
	planFile := filepath.Join(t.TempDir(), "plan.json")

	// The dry run: its plan, its explanation, its plan file.
	out, code := b.regsweep(t, policyArgs(policy, "--cache-dir", cache, "--format", "json", "--explain", "--plan-out", planFile)...)
	if code != 0 {
		t.Fatalf("gc --policy dry run exited %d: %s", code, out)
	}
	dry := parsePolicyDoc(t, out)
	if dry.Plan.Tags != c.deletedCount() || dry.Plan.Blobs != len(garbage) {
		t.Errorf("the dry run plans %d tags and %d blobs; the policy deletes %d tags (%v), freeing %d blobs", dry.Plan.Tags, dry.Plan.Blobs, c.deletedCount(), c.deleted, len(garbage))
	}
	want := map[string]int{}
	for repo, tags := range c.deleted {
		want[repo] = len(tags)
	}
	if !maps.Equal(dry.TagsByRepository, want) {
		t.Errorf("tags_by_repository %v, want %v", dry.TagsByRepository, want)
	}
	checkExplanation(t, dry, c)
	checkPlanTagItems(t, b, planFile, c)
	if after := b.inventory(t); after.Keys != before.Keys {
		t.Errorf("the dry run changed storage: %d keys before, %d after", before.Keys, after.Keys)
	}

	// --explain in text.
	text, code := b.regsweep(t, policyArgs(policy, "--cache-dir", cache, "--explain")...)
	if code != 0 {
		t.Fatalf("gc --policy --explain exited %d", code)
	}
	for _, re := range []string{
		`(?m)^team-a/app: rule 1 \(line 2, pattern "team-a/\*\*"\): \d+ kept, \d+ deleted$`,
		`(?m)^team-a/sub/deep: rule 1 \(line 2, pattern "team-a/\*\*"\): 1 kept, 1 deleted$`,
		`(?m)^tools/x: rule 2 \(line 12, pattern "tools/\*"\): 1 kept, 1 deleted$`,
		`(?m)^tools/x/y: no rule matches: 1 tag\(s\) kept$`,
		`(?m)^scratch/tmp: rule 3 \(line 18, pattern "scratch/\*"\): 0 kept, 1 deleted$`,
		`(?m)^\s+keep\s+v4\s+sha256:[0-9a-f]{12}\s+\S+\s+kept: newest 2 of "v\*"$`,
		`(?m)^\s+delete\s+v1\s+sha256:[0-9a-f]{12}\s+\S+\s+deleted: no keep clause matched$`,
		`(?m)^\s+keep\s+latest\s+sha256:[0-9a-f]{12}\s+\S+\s+kept: matches "latest"$`,
		`(?m)^\s+tags\s+\d+, in 4 repositories \(retention policy\)$`,
	} {
		if !regexp.MustCompile(re).MatchString(text) {
			t.Errorf("--explain text does not match %s:\n%s", re, text)
		}
	}

	// A grace longer than a tag's age keeps it, whatever the policy says.
	out, code = b.regsweep(t, append(policyArgs(policy, "--cache-dir", cache, "--format", "json", "--explain"), "--grace", "6h")...)
	if code != 0 {
		t.Fatalf("gc --policy --grace 6h exited %d", code)
	}
	graced := parsePolicyDoc(t, out)
	young := []string{"team-a/app:release-1a"} // 3h old on a filesystem
	if !c.aged {
		young = nil // every tag is as young as its push
		for repo, tags := range c.deleted {
			for _, tg := range tags {
				young = append(young, repo+":"+tg)
			}
		}
	}
	for _, ref := range young {
		repo, tg, _ := strings.Cut(ref, ":")
		if d, reason, _, _, _, _ := graced.decision(repo, tg); d != "keep" || reason != "kept: younger than the grace period (6h)" {
			t.Errorf("--grace 6h: %s: %s %q, want it kept by the grace", ref, d, reason)
		}
	}
	if graced.Plan.Tags != c.deletedCount()-len(young) {
		t.Errorf("--grace 6h plans %d tags, want %d", graced.Plan.Tags, c.deletedCount()-len(young))
	}

	// The deleting run.
	out, code = b.regsweep(t, policyArgs(policy, "--cache-dir", cache, "--format", "json", "--delete")...)
	if code != 0 {
		t.Fatalf("gc --policy --delete exited %d: %s", code, out)
	}
	real := parsePolicyDoc(t, out)
	after := b.inventory(t)
	if lost := diff(c.keptBlobs, blobSet(after)); len(lost) > 0 {
		t.Fatalf("KEPT BLOBS DELETED: %v", lost)
	}
	if left := diff(blobSet(after), c.keptBlobs); len(left) > 0 {
		t.Errorf("garbage blobs left: %v", left)
	}
	if freed := before.BlobBytes - after.BlobBytes; real.Result == nil || freed != dry.Plan.BlobBytes || real.Result.FreedBytes != dry.Plan.Bytes {
		t.Errorf("freed %d blob bytes, the dry run said %d; freed %+v in all, the dry run said %d", freed, dry.Plan.BlobBytes, real.Result, dry.Plan.Bytes)
	} else if real.Result.Deleted["tag"] != c.deletedCount() {
		t.Errorf("deleted %d tags, want %d", real.Result.Deleted["tag"], c.deletedCount())
	}
	if _, ok := after.Repositories[c.emptied]; ok {
		t.Errorf("emptied repository %s still has keys", c.emptied)
	}
	checkNoDanglingAndKept(t, b, c.keptBlobs)

	// Through a restarted registry: exactly the expected tags, every kept
	// reference pulls and verifies, every deleted tag is unknown.
	b.reg.Restart()
	checkPolicyOutcome(t, b.reg, c, true, false)

	// A second run plans nothing.
	out, code = b.regsweep(t, policyArgs(policy, "--cache-dir", cache, "--format", "json")...)
	second := parsePolicyDoc(t, out)
	for k, v := range second.PlanCounts {
		if strings.HasPrefix(k, "total") || k == "kept_blobs" {
			continue
		}
		if f, _ := v.(float64); f != 0 || code != 0 {
			t.Errorf("second run plans %s=%v (exit %d)", k, v, code)
		}
	}
}

// checkPolicyOutcome checks through reg that exactly the expected tags
// remain, that each kept reference pulls and verifies (and, with
// validate, passes crane validate), and that each deleted tag is unknown.
// With phantoms, the registry may also list deleted tags whose emptied
// directory a killed run left on a filesystem (each answers 404): it
// returns them.
func checkPolicyOutcome(t *testing.T, reg *testenv.Registry, c *policyCorpus, validate, phantoms bool) []string {
	t.Helper()
	got, want := allTags(t, reg), c.remainingRefs()
	deleted := deletedRefs(c)
	var extra []string
	for _, ref := range got {
		if !slices.Contains(want, ref) {
			extra = append(extra, ref)
		}
	}
	if !slices.Equal(slices.DeleteFunc(slices.Clone(got), func(r string) bool { return slices.Contains(extra, r) }), want) ||
		len(extra) > 0 && (!phantoms || slices.ContainsFunc(extra, func(r string) bool { return !slices.Contains(deleted, r) })) {
		t.Errorf("the registry lists tags %v, want %v", got, want)
	}
	for _, k := range c.kept {
		pull(t, reg, k[0], k[1])
	}
	for repo, tags := range c.remain {
		for _, tg := range tags {
			if validate {
				reg.Crane(t, "validate", "--remote", reg.Ref(repo+":"+tg))
			}
		}
	}
	for repo, tags := range c.deleted {
		for _, tg := range tags {
			if code, _, _ := testenv.Get(t, reg, "/v2/"+repo+"/manifests/"+tg, acceptAll); code != http.StatusNotFound {
				t.Errorf("deleted tag %s:%s: HTTP %d, want 404", repo, tg, code)
			}
		}
	}
	return extra
}

// checkExplanation checks the decisions --explain gave in JSON.
func checkExplanation(t *testing.T, d policyGCDoc, c *policyCorpus) {
	t.Helper()
	cases := []struct {
		repo, tag, decision, reason string
		clause, rule                int
		pattern                     string
	}{
		{"team-a/app", "v4", "keep", `kept: newest 2 of "v*"`, 1, 1, "team-a/**"},
		{"team-a/app", "v3", "keep", `kept: newest 2 of "v*"`, 1, 1, "team-a/**"},
		{"team-a/app", "v2", "delete", "deleted: no keep clause matched", 0, 1, "team-a/**"},
		{"team-a/app", "v1", "delete", "deleted: no keep clause matched", 0, 1, "team-a/**"},
		{"team-a/app", "release-1", "keep", `kept: matches "re:^release-[0-9]+$"`, 2, 1, "team-a/**"},
		{"team-a/app", "release-1a", "delete", "deleted: no keep clause matched", 0, 1, "team-a/**"},
		{"team-a/app", "latest", "keep", `kept: matches "latest"`, 3, 1, "team-a/**"},
		{"team-a/app", "nightly-2", "keep", `kept: matches "nightly-*", pushed within 720h`, 4, 1, "team-a/**"},
		{"team-a/sub/deep", "stable", "keep", `kept: matches "stable"`, 3, 1, "team-a/**"},
		{"team-a/sub/deep", "old", "delete", "deleted: no keep clause matched", 0, 1, "team-a/**"},
		{"tools/x", "v2", "keep", `kept: newest 1 of "v*"`, 1, 2, "tools/*"},
		{"tools/x", "v1", "delete", "deleted: no keep clause matched", 0, 2, "tools/*"},
		{"tools/x/y", "old", "keep", "kept: no rule matches the repository", 0, 0, ""},
		{"scratch/tmp", "t1", "delete", "deleted: no keep clause matched", 0, 3, "scratch/*"},
	}
	if c.aged {
		cases = append(cases, struct {
			repo, tag, decision, reason string
			clause, rule                int
			pattern                     string
		}{"team-a/app", "nightly-1", "delete", "deleted: no keep clause matched", 0, 1, "team-a/**"})
	}
	for _, w := range cases {
		dec, reason, clause, rule, pattern, ok := d.decision(w.repo, w.tag)
		if !ok || dec != w.decision || reason != w.reason || clause != w.clause || rule != w.rule || pattern != w.pattern {
			t.Errorf("--explain %s:%s: %s %q clause %d rule %d pattern %q (found %v); want %s %q clause %d rule %d pattern %q",
				w.repo, w.tag, dec, reason, clause, rule, pattern, ok, w.decision, w.reason, w.clause, w.rule, w.pattern)
		}
	}
	for _, r := range d.Retention {
		if !slices.IsSortedFunc(r.Tags, func(a, b explainedTag) int {
			return strings.Compare(b.Time+" "+b.Tag, a.Time+" "+a.Tag)
		}) {
			t.Errorf("%s: the tags are not newest first (ties by name, descending): %+v", r.Repository, r.Tags)
		}
		if r.Repository == c.emptied && (!r.AllowEmpty || r.Kept != 0 || r.Deleted != 1) {
			t.Errorf("%s: %+v, want allow_empty, 0 kept, 1 deleted", c.emptied, r)
		}
	}
}

// checkPlanTagItems checks the plan file's items of kind tag: one per
// deleted tag, with its repository, tag, digest, time and reason, ahead of
// every other item.
func checkPlanTagItems(t *testing.T, b *backendUnderTest, planFile string, c *policyCorpus) {
	t.Helper()
	raw, err := os.ReadFile(planFile)
	if err != nil {
		t.Fatal(err)
	}
	var plan struct {
		Items []map[string]any `json:"items"`
	}
	if err := json.Unmarshal(raw, &plan); err != nil {
		t.Fatal(err)
	}
	inv := b.inventory(t)
	seen := map[string]bool{}
	others := false
	for _, it := range plan.Items {
		if it["kind"] != "tag" {
			others = true
			continue
		}
		if others {
			t.Errorf("tag item %v comes after other kinds in the plan", it)
		}
		repo, _ := it["repository"].(string)
		tg, _ := it["tag"].(string)
		ref := repo + ":" + tg
		seen[ref] = true
		key, _ := layout.Path(layout.TagCurrentLink{Repo: repo, Tag: tg})
		mtime, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(it["mtime"]))
		var linkTime int64 = -1
		if r := inv.Repositories[repo]; r != nil && r.Tags[tg] != nil {
			linkTime = r.Tags[tg].CurrentModTime
		}
		reason, _ := it["reason"].(string)
		if it["key"] != key || it["digest"] != c.digests[ref] || mtime.Unix() != linkTime || reason != "retention policy: deleted: no keep clause matched" {
			t.Errorf("plan item %v: want key %s, digest %s, mtime %d (its current link's), the policy's reason", it, key, c.digests[ref], linkTime)
		}
	}
	for repo, tags := range c.deleted {
		for _, tg := range tags {
			if !seen[repo+":"+tg] {
				t.Errorf("the plan has no tag item for %s:%s", repo, tg)
			}
		}
	}
	if len(seen) != c.deletedCount() {
		t.Errorf("the plan has %d tag items, want %d", len(seen), c.deletedCount())
	}
}

// checkPolicyRefusals checks each refusal through the CLI on the corpus,
// before anything is deleted: the storage must be unchanged after each.
func checkPolicyRefusals(t *testing.T, b *backendUnderTest, c *policyCorpus, policy string) {
	keys := b.inventory(t).Keys
	cache := t.TempDir()
	noAllowEmpty := writeFile(t, "policy.yaml", strings.Replace(policyYAML, "    allow_empty: true\n", "", 1))
	cases := []struct {
		name string
		args []string
		code int
		want []string // in stderr
	}{
		{"a repository emptied without allow_empty", policyArgs(noAllowEmpty, "--cache-dir", cache, "--delete"), 6,
			[]string{"policy_empty_repository", `policy rule 3 (line 18) would delete all 1 tags of repository "scratch/tmp"`}},
		{"a repository emptied without allow_empty (dry run)", policyArgs(noAllowEmpty, "--cache-dir", cache), 6,
			[]string{"policy_empty_repository", `"scratch/tmp"`}},
		{"more tags than --max-delete-fraction", append(policyArgs(policy, "--cache-dir", cache, "--delete"), "--max-delete-fraction", "0.3"), 6,
			[]string{"policy_delete_fraction", fmt.Sprintf("the policy would delete %d of 15 tags", c.deletedCount()), "more than --max-delete-fraction 0.30"}},
		{"an invalid policy file", policyArgs(writeFile(t, "bad.yaml", "rules:\n  - repositories: [\"team-a/**\"]\n    keep:\n      - newst: 2\n"), "--cache-dir", cache, "--delete"), 2,
			[]string{"invalid policy:", "bad.yaml:4: rules[1].keep[1].newst: unknown key (did you mean \"newest\"?)"}},
		{"a policy file that is missing", policyArgs(filepath.Join(t.TempDir(), "none.yaml"), "--cache-dir", cache, "--delete"), 2,
			[]string{"reading the policy file", "none.yaml"}},
		{"--policy with --harbor-db", append(policyArgs(policy, "--cache-dir", cache, "--delete"), "--harbor-db", "postgres://regsweep@127.0.0.1:1/registry?sslmode=disable"), 2,
			[]string{"--policy is for a plain registry", "Tag Retention"}},
		{"--explain without --policy", []string{"gc", "--explain", "--cache-dir", cache}, 2,
			[]string{"--explain explains a retention policy: give --policy FILE"}},
	}
	for _, tc := range cases {
		stdout, stderr, code := b.run(t, tc.args...)
		if code != tc.code {
			t.Errorf("%s: exit %d, want %d; stderr:\n%s", tc.name, code, tc.code, stderr)
		}
		for _, w := range tc.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("%s: stderr does not hold %q:\n%s", tc.name, w, stderr)
			}
		}
		if tc.code == 6 && !strings.Contains(stdout, tc.want[0]) {
			t.Errorf("%s: the report does not name the guard %s:\n%s", tc.name, tc.want[0], stdout)
		}
		if n := b.inventory(t).Keys; n != keys {
			t.Fatalf("%s: storage changed: %d keys, %d before", tc.name, n, keys)
		}
	}
	if got, want := allTags(t, b.reg), append(c.remainingRefs(), deletedRefs(c)...); !slices.Equal(got, sortedCopy(want)) {
		t.Errorf("after the refusals the registry lists %v, want every tag pushed %v", got, sortedCopy(want))
	}
}

func deletedRefs(c *policyCorpus) []string {
	var out []string
	for repo, tags := range c.deleted {
		for _, tg := range tags {
			out = append(out, repo+":"+tg)
		}
	}
	return out
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// checkPolicyFromConfigFile runs gc with the policy given as gc.policy in
// regsweep.yaml instead of a flag.
func checkPolicyFromConfigFile(t *testing.T, b *backendUnderTest, c *policyCorpus, policy string) {
	cfg := writeFile(t, "regsweep.yaml", fmt.Sprintf("gc:\n  grace: 0s\n  max-delete-fraction: 0.9\n  policy: %s\n", policy))
	out, code := b.regsweep(t, "gc", "--config", cfg, "--cache-dir", t.TempDir(), "--format", "json", "--explain")
	if code != 0 {
		t.Fatalf("gc with gc.policy in %s exited %d", cfg, code)
	}
	doc := parsePolicyDoc(t, out)
	if doc.Plan.Tags != c.deletedCount() || len(doc.Retention) != 5 {
		t.Errorf("gc.policy from the file: %d tags planned, %d repositories explained; want %d and 5", doc.Plan.Tags, len(doc.Retention), c.deletedCount())
	}
	out, code = b.regsweep(t, "config", "check", "--config", cfg, "--format", "json")
	if code != 0 {
		t.Fatalf("config check exited %d", code)
	}
	var rep struct {
		Flags []struct {
			Key, Value, Source string
			Line               int
		} `json:"flags"`
	}
	json.Unmarshal([]byte(out), &rep)
	found := false
	for _, f := range rep.Flags {
		if f.Key == "gc.policy" {
			found = f.Value == policy && f.Source == "file" && f.Line == 4
		}
	}
	if !found {
		t.Errorf("config check does not show gc.policy from the file's line 4:\n%s", out)
	}
}

// runPolicyReviewedPlan writes a policy plan with --plan-out, moves one of
// the tags it deletes (crane tag, to another digest), and executes it with
// `sweep --plan --delete`: the tag items go first, the moved tag stays and
// pulls as moved, and the rest is what gc --delete leaves.
func runPolicyReviewedPlan(t *testing.T, b *backendUnderTest, c *policyCorpus, policy string) {
	version := testenv.RegistryV3
	if b.name == "swift" {
		version = testenv.RegistryV28
	}
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{Version: version, Storage: b.registry})
	defer reg.Stop()
	planFile := filepath.Join(t.TempDir(), "plan.json")
	cache := t.TempDir()
	if _, stderr, code := b.run(t, policyArgs(policy, "--cache-dir", cache, "--plan-out", planFile)...); code != 0 {
		t.Fatalf("gc --plan-out exited %d: %s", code, stderr)
	}
	moved := "team-a/app:release-1a"
	target := c.digests["team-a/app:release-1"]
	// What the moved tag named before: its index keeps a link to it, and
	// an index link that stays keeps its manifest (the next run collects
	// it once the policy deletes the tag).
	before := map[string]bool{}
	for _, d := range pull(t, reg, "team-a/app", c.digests[moved]) {
		before[d] = true
	}
	reg.Crane(t, "tag", reg.Ref("team-a/app@"+target), "release-1a")

	stdout, stderr, code := b.run(t, "sweep", "--plan", planFile, "--delete", "--cache-dir", cache, "--format", "json", "--log-format", "json")
	if code != 0 {
		t.Fatalf("sweep --plan --delete exited %d: %s", code, stderr)
	}
	doc := parsePolicyDoc(t, stdout)
	if doc.Result == nil || doc.Result.Deleted["tag"] != c.deletedCount()-1 {
		t.Errorf("sweep deleted %+v, want %d tags (all planned but the moved one)", doc.Result, c.deletedCount()-1)
	}
	// The tags went first: the log's first sweeping phase is 0, the tags'.
	var phases []int
	sc := bufio.NewScanner(strings.NewReader(stderr))
	for sc.Scan() {
		var rec struct {
			Msg   string `json:"msg"`
			Phase *int   `json:"phase"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "sweeping" && rec.Phase != nil {
			phases = append(phases, *rec.Phase)
		}
	}
	if len(phases) < 2 || phases[0] != 0 || !slices.IsSorted(phases) {
		t.Errorf("sweep phases in the log: %v, want phase 0 (tags) first, then the others in order", phases)
	}

	// The moved tag stays, pointing where it was moved; the rest is as
	// after gc --delete.
	want := *c
	want.remain = maps.Clone(c.remain)
	want.deleted = maps.Clone(c.deleted)
	want.remain["team-a/app"] = sortedCopy(append(slices.Clone(c.remain["team-a/app"]), "release-1a"))
	want.deleted["team-a/app"] = slices.DeleteFunc(slices.Clone(c.deleted["team-a/app"]), func(s string) bool { return s == "release-1a" })
	reg.Restart()
	checkPolicyOutcome(t, reg, &want, false, false)
	if got := pull(t, reg, "team-a/app", "release-1a"); len(got) == 0 || got[0] != target {
		t.Errorf("%s pulls as %v, want the digest it was moved to, %s", moved, got, target)
	}
	inv := b.inventory(t)
	if left, want := diff(checkInventory(t, inv, c.keptBlobs), c.keptBlobs), diff(before, c.keptBlobs); !slices.Equal(left, want) {
		t.Errorf("blobs left besides the kept ones: %v, want those of the moved tag's former manifest %v", left, want)
	}
}

// runPolicyKilled kills `gc --policy --delete` (SIGKILL) delays into its
// tag phase (phase 0), each on a fresh copy of the corpus: every kept tag
// still pulls, every tag the registry lists pulls, and a second run
// finishes with what an unkilled run leaves.
func runPolicyKilled(t *testing.T, clone func(t *testing.T) *backendUnderTest, c *policyCorpus, policy string, delays ...time.Duration) {
	for _, delay := range delays {
		t.Run(fmt.Sprint("+", delay), func(t *testing.T) {
			b := clone(t)
			version := testenv.RegistryV3
			if b.name == "swift" {
				version = testenv.RegistryV28
			}
			cache := t.TempDir()
			// At 60 storage calls a second the tag phase lasts about a
			// second (each tag is a listing, its deletions and the check
			// before them).
			p := startGC(t, b, policyArgs(policy, "--cache-dir", cache, "--delete", "--log-format", "json", "--concurrency", "1", "--rate-limit", "60"))
			finished := killInPhase(p, "sweep phase 0", delay)
			inv := b.inventory(t)
			goneTags := 0
			for repo, tags := range c.deleted {
				for _, tg := range tags {
					if r := inv.Repositories[repo]; r == nil || r.Tags[tg] == nil || !r.Tags[tg].HasCurrent {
						goneTags++
					}
				}
			}
			t.Logf("%s: killed %s into the tag phase (finished first: %v): %d of %d planned tags gone", b.name, delay, finished, goneTags, c.deletedCount())
			checkInventory(t, inv, c.keptBlobs)
			reg := testenv.StartRegistry(t, testenv.RegistryOptions{Version: version, Storage: b.registry})
			for repo, tags := range c.remain {
				for _, tg := range tags {
					pull(t, reg, repo, tg)
				}
			}
			// A listed tag that does not pull is a deleted one whose emptied
			// directory the kill left (between its current link and the
			// directory): see docs/retention.md.
			deleted := deletedRefs(c)
			for _, ref := range allTags(t, reg) {
				repo, tg, _ := strings.Cut(ref, ":")
				if code, _, _ := testenv.Get(t, reg, "/v2/"+repo+"/manifests/"+tg, acceptAll); code != http.StatusOK && !(b.fsRoot != "" && slices.Contains(deleted, ref)) {
					t.Errorf("after the kill the registry lists %s, which does not pull: HTTP %d", ref, code)
				}
			}
			reg.Stop()
			if _, stderr, code := b.run(t, policyArgs(policy, "--cache-dir", cache, "--delete")...); code != 0 {
				t.Fatalf("the run after the kill exited %d: %s", code, stderr)
			}
			reg = testenv.StartRegistry(t, testenv.RegistryOptions{Version: version, Storage: b.registry})
			defer reg.Stop()
			if left := checkPolicyOutcome(t, reg, c, false, b.fsRoot != ""); len(left) > 0 {
				t.Logf("the kill left the emptied directories of deleted tags %v: listed, 404 to a pull", left)
			}
			if left := diff(checkNoDanglingAndKept(t, b, c.keptBlobs), c.keptBlobs); len(left) > 0 {
				t.Errorf("garbage blobs left: %v", left)
			}
		})
	}
}

// killInPhase sends SIGKILL delay after the process logs the stage whose
// label begins with prefix, and reports whether it finished before that.
func killInPhase(p *gcProcess, prefix string, delay time.Duration) bool {
	for s := range p.stages {
		p.seen = append(p.seen, s)
		if strings.HasPrefix(s.label, prefix) {
			time.Sleep(delay)
			p.cmd.Process.Signal(syscall.SIGKILL)
			break
		}
	}
	_, err := p.wait()
	return err == nil
}
