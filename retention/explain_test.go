package retention

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

func explained(t *testing.T) []RepositoryDecision {
	t.Helper()
	p := mustParse(t, issueExample)
	gov, err := p.Decide("team-a/app", []Tag{tag("v2", time.Hour), tag("v1", 800*time.Hour), tag("old", 900*time.Hour), tag("mystery", -1)}, Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	free, err := p.Decide("other", []Tag{tag("x", time.Hour)}, Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return []RepositoryDecision{gov, free}
}

func TestExplanationJSONKeys(t *testing.T) {
	b, err := json.Marshal(explained(t))
	if err != nil {
		t.Fatal(err)
	}
	const want = `[{"repository":"team-a/app","rule":1,"rule_line":2,"pattern":"team-a/**","allow_empty":false,"kept":3,"deleted":1,"tags":[` +
		`{"tag":"v2","digest":"` + `sha256:` + `%s","time":"2026-03-01T11:00:00Z","decision":"keep","clause":1,"reason":"kept: newest 10 of \"v*\", \"release-*\""},` +
		`{"tag":"v1","digest":"sha256:%s","time":"2026-01-27T04:00:00Z","decision":"keep","clause":1,"reason":"kept: newest 10 of \"v*\", \"release-*\""},` +
		`{"tag":"old","digest":"sha256:%s","time":"2026-01-23T00:00:00Z","decision":"delete","clause":0,"reason":"deleted: no keep clause matched"},` +
		`{"tag":"mystery","digest":"sha256:%s","decision":"keep","clause":0,"reason":"kept: its time is unknown (current link unreadable)"}]},` +
		`{"repository":"other","rule":0,"allow_empty":false,"kept":1,"deleted":0,"tags":[` +
		`{"tag":"x","digest":"sha256:%s","time":"2026-03-01T11:00:00Z","decision":"keep","clause":0,"reason":"kept: no rule matches the repository"}]}]`
	hex := func(s string) any { return dg(s).Encoded() }
	if got, w := string(b), fmt.Sprintf(want, hex("v2"), hex("v1"), hex("old"), hex("mystery"), hex("x")); got != w {
		t.Errorf("got  %s\nwant %s", got, w)
	}
}

func TestExplanationText(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteExplanation(&buf, explained(t)); err != nil {
		t.Fatal(err)
	}
	short := func(s string) string { return "sha256:" + dg(s).Encoded()[:12] }
	want := "other: no rule matches: 1 tag(s) kept\n" +
		"team-a/app: rule 1 (line 2, pattern \"team-a/**\"): 3 kept, 1 deleted\n" +
		"  keep    v2       " + short("v2") + "  2026-03-01T11:00:00Z  kept: newest 10 of \"v*\", \"release-*\"\n" +
		"  keep    v1       " + short("v1") + "  2026-01-27T04:00:00Z  kept: newest 10 of \"v*\", \"release-*\"\n" +
		"  delete  old      " + short("old") + "  2026-01-23T00:00:00Z  deleted: no keep clause matched\n" +
		"  keep    mystery  " + short("mystery") + "  time unknown          kept: its time is unknown (current link unreadable)\n"
	if buf.String() != want {
		t.Errorf("got\n%s\nwant\n%s", buf.String(), want)
	}
}

func TestWriteRules(t *testing.T) {
	p := mustParse(t, issueExample+"  - repositories: [scratch/**]\n    keep: []\n    allow_empty: true\n")
	var buf bytes.Buffer
	if err := p.WriteRules(&buf); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"policy.yaml: 2 rule(s); the first rule with a pattern that matches a repository governs it",
		`rule 1 (line 2): repositories "team-a/**", "tools/*"`,
		`  keep 1 (line 4): newest 10 of "v*", "release-*"`,
		`  keep 2 (line 6): every tag matching "latest", "stable", "main"`,
		`  keep 3 (line 7): pushed within 720h`,
		"  untagged: manifests no remaining tag reaches are collected once older than 168h",
		"  allow_empty: false: a run that would delete every tag of a repository refuses",
		`rule 2 (line 10): repositories "scratch/**"`,
		"  keep: nothing (every tag older than the grace is deleted)",
		"  untagged: manifests no remaining tag reaches are collected once older than 0s",
		"  allow_empty: true: may delete every tag of a repository",
	} {
		if !strings.Contains(buf.String(), line+"\n") && !strings.HasPrefix(buf.String(), line) {
			t.Errorf("missing %q in\n%s", line, buf.String())
		}
	}
}
