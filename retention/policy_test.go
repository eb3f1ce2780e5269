package retention

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// issueExample is the policy of the issue that specified the format.
const issueExample = `rules:
  - repositories: ["team-a/**", "tools/*"]   # doublestar globs over repository names
    keep:                                    # a tag is kept if ANY clause keeps it
      - tags: ["v*", "release-*"]            # globs over tag names (regex: "re:^v[0-9]+$")
        newest: 10                           # the 10 most recent matching tags
      - tags: ["latest", "stable", "main"]   # no count: every matching tag
      - pushed_within: 720h                  # any tag pushed in the last 30 days
    untagged:
      older_than: 168h                       # manifests left untagged are collected after this age
`

func TestParseIssueExample(t *testing.T) {
	p, err := Parse([]byte(issueExample), "policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Rules) != 1 {
		t.Fatalf("rules: %+v", p.Rules)
	}
	r := p.Rules[0]
	if r.Number != 1 || r.Line != 2 || r.AllowEmpty || r.UntaggedOlderThan != 168*time.Hour {
		t.Errorf("rule: %+v", r)
	}
	if got := quoteAll(r.Repositories); got != `"team-a/**", "tools/*"` {
		t.Errorf("repositories: %s", got)
	}
	want := []struct {
		line   int
		desc   string
		newest int
		within time.Duration
	}{
		{4, `newest 10 of "v*", "release-*"`, 10, 0},
		{6, `every tag matching "latest", "stable", "main"`, 0, 0},
		{7, `pushed within 720h`, 0, 720 * time.Hour},
	}
	if len(r.Keep) != len(want) {
		t.Fatalf("keep: %+v", r.Keep)
	}
	for i, w := range want {
		c := r.Keep[i]
		if c.Number != i+1 || c.Line != w.line || c.String() != w.desc || c.Newest != w.newest || c.PushedWithin != w.within {
			t.Errorf("clause %d: %+v %q, want %+v", i+1, c, c.String(), w)
		}
	}
}

func TestParseDefaultsAndForms(t *testing.T) {
	p, err := Parse([]byte(`
rules:
  - repositories: [scratch/**]
    keep: []
    allow_empty: true
  - repositories: ["apps/*"]
    keep:
      - tags: ["re:^v[0-9]+$", "{a,b}-*"]
        newest: 1_0
        pushed_within: 1h30m
`), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r1, r2 := p.Rules[0], p.Rules[1]
	if !r1.AllowEmpty || r1.Keep == nil || len(r1.Keep) != 0 || r1.UntaggedOlderThan != 0 {
		t.Errorf("rule 1: %+v", r1)
	}
	c := r2.Keep[0]
	if c.Newest != 10 || c.PushedWithin != 90*time.Minute {
		t.Errorf("clause: %+v", c)
	}
	if got := c.String(); got != `newest 10 of "re:^v[0-9]+$", "{a,b}-*", or pushed within 1h30m` {
		t.Errorf("description: %s", got)
	}
	if c.Tags[0].Match("v12x") || !c.Tags[0].Match("v12") || !c.Tags[1].Match("b-1") || c.Tags[1].Match("c-1") {
		t.Error("patterns match wrongly")
	}
}

func TestParseErrorsNameKeyAndLine(t *testing.T) {
	cases := []struct {
		name, doc string
		line      int
		key, msg  string
	}{
		{"empty file", "", 0, "", "the policy is empty"},
		{"only comments", "# nothing\n", 0, "", "the policy is empty"},
		{"not yaml", "rules: [\n", 0, "", "not valid YAML"},
		{"two documents", "rules: []\n---\nrules: []\n", 2, "", "more than one YAML document"},
		{"top is a list", "- a\n", 1, "", "expected a mapping at the top level"},
		{"unknown top key", "rule:\n  - {}\n", 1, "rule", `unknown key (did you mean "rules"?)`},
		{"no rules key", "{}\n", 1, "", "rules: missing"},
		{"rules not a list", "rules: {a: b}\n", 1, "rules", "expected a list, got a mapping"},
		{"no rules", "rules: []\n", 1, "rules", "no rules"},
		{"empty rule", "rules:\n  - {}\n", 2, "rules[1]", "empty rule"},
		{"null rule", "rules:\n  -\n", 2, "rules[1]", "empty rule"},
		{"unknown rule key", "rules:\n  - repositories: [a]\n    keep: []\n    alow_empty: true\n", 4, "rules[1].alow_empty", `unknown key (did you mean "allow_empty"?)`},
		{"key twice", "rules:\n  - repositories: [a]\n    keep: []\n    keep: []\n", 4, "rules[1].keep", "given twice (first at line 3)"},
		{"no repositories", "rules:\n  - keep: []\n", 2, "rules[1].repositories", "missing"},
		{"no keep", "rules:\n  - repositories: [a]\n", 2, "rules[1].keep", "missing: list the tags to keep"},
		{"repositories a string", "rules:\n  - repositories: team-a/**\n    keep: []\n", 2, "rules[1].repositories", `expected a list, got a string (write ["team-a/**"] for one pattern)`},
		{"repositories empty", "rules:\n  - repositories: []\n    keep: []\n", 2, "rules[1].repositories", "empty list"},
		{"bad repository glob", "rules:\n  - repositories:\n      - ok/*\n      - \"team-[a\"\n    keep: []\n", 4, "rules[1].repositories[2]", `"team-[a" is not a valid glob`},
		{"empty repository pattern", "rules:\n  - repositories: [\"\"]\n    keep: []\n", 2, "rules[1].repositories[1]", "empty pattern"},
		{"regexp for repositories", "rules:\n  - repositories: [\"re:^a\"]\n    keep: []\n", 2, "rules[1].repositories[1]", "repositories take doublestar globs"},
		{"repository pattern a list", "rules:\n  - repositories: [[a]]\n    keep: []\n", 2, "rules[1].repositories[1]", "expected a pattern string, got a list"},
		{"keep a mapping", "rules:\n  - repositories: [a]\n    keep: {tags: [v]}\n", 3, "rules[1].keep", "expected a list, got a mapping"},
		{"empty clause", "rules:\n  - repositories: [a]\n    keep:\n      - {}\n", 4, "rules[1].keep[1]", "empty keep clause"},
		{"unknown clause key", "rules:\n  - repositories: [a]\n    keep:\n      - tags: [v]\n        newset: 3\n", 5, "rules[1].keep[1].newset", `unknown key (did you mean "newest"?)`},
		{"bad tag regexp", "rules:\n  - repositories: [a]\n    keep:\n      - tags: [\"re:v(\"]\n", 4, "rules[1].keep[1].tags[1]", `"re:v(" is not a valid regexp: missing closing )`},
		{"empty regexp", "rules:\n  - repositories: [a]\n    keep:\n      - tags: [\"re:\"]\n", 4, "rules[1].keep[1].tags[1]", "empty regexp"},
		{"bad tag glob", "rules:\n  - repositories: [a]\n    keep:\n      - tags: [\"v{1,2\"]\n", 4, "rules[1].keep[1].tags[1]", "not a valid glob"},
		{"tag glob with slash", "rules:\n  - repositories: [a]\n    keep:\n      - tags: [\"a/b\"]\n", 4, "rules[1].keep[1].tags[1]", "a tag name never holds a /"},
		{"tags empty", "rules:\n  - repositories: [a]\n    keep:\n      - tags: []\n", 4, "rules[1].keep[1].tags", "empty list"},
		{"negative count", "rules:\n  - repositories: [a]\n    keep:\n      - tags: [v]\n        newest: -3\n", 5, "rules[1].keep[1].newest", "cannot be negative (-3)"},
		{"zero count", "rules:\n  - repositories: [a]\n    keep:\n      - newest: 0\n", 4, "rules[1].keep[1].newest", "0 keeps nothing"},
		{"count not an integer", "rules:\n  - repositories: [a]\n    keep:\n      - newest: 2.5\n", 4, "rules[1].keep[1].newest", "expected a count of tags such as 10, got a number"},
		{"count too large", "rules:\n  - repositories: [a]\n    keep:\n      - newest: 99999999999999\n", 4, "rules[1].keep[1].newest", "expected a count"},
		{"bad duration", "rules:\n  - repositories: [a]\n    keep:\n      - pushed_within: soon\n", 4, "rules[1].keep[1].pushed_within", `"soon" is not a duration`},
		{"days", "rules:\n  - repositories: [a]\n    keep:\n      - pushed_within: 30d\n", 4, "rules[1].keep[1].pushed_within", "there is no d: 720h is 30 days"},
		{"negative duration", "rules:\n  - repositories: [a]\n    keep:\n      - pushed_within: -1h\n", 4, "rules[1].keep[1].pushed_within", "cannot be negative (-1h)"},
		{"zero pushed_within", "rules:\n  - repositories: [a]\n    keep:\n      - pushed_within: 0s\n", 4, "rules[1].keep[1].pushed_within", "0 keeps nothing"},
		{"duration a list", "rules:\n  - repositories: [a]\n    keep:\n      - pushed_within: [1h]\n", 4, "rules[1].keep[1].pushed_within", "expected a duration such as 720h, got a list"},
		{"untagged empty", "rules:\n  - repositories: [a]\n    keep: []\n    untagged: {}\n", 4, "rules[1].untagged", "empty"},
		{"untagged unknown key", "rules:\n  - repositories: [a]\n    keep: []\n    untagged:\n      older_tan: 1h\n", 5, "rules[1].untagged.older_tan", `unknown key (did you mean "older_than"?)`},
		{"untagged bad duration", "rules:\n  - repositories: [a]\n    keep: []\n    untagged:\n      older_than: 7d\n", 5, "rules[1].untagged.older_than", "not a duration"},
		{"untagged negative", "rules:\n  - repositories: [a]\n    keep: []\n    untagged: {older_than: -5m}\n", 4, "rules[1].untagged.older_than", "cannot be negative"},
		{"allow_empty not a bool", "rules:\n  - repositories: [a]\n    keep: []\n    allow_empty: yes\n", 4, "rules[1].allow_empty", "expected true or false, got a string"},
		{"second rule", "rules:\n  - repositories: [a]\n    keep: []\n  - repositories: [b]\n    keep:\n      - bogus: 1\n", 6, "rules[2].keep[1].bogus", "unknown key"},
		{"merge key", "base: &b {tags: [v]}\nrules: []\n", 1, "base", "unknown key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := Parse([]byte(c.doc), "policy.yaml")
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("want an *Error, got policy %+v, err %v", p, err)
			}
			if e.File != "policy.yaml" || e.Line != c.line || e.Key != c.key || !strings.Contains(e.Msg, c.msg) {
				t.Errorf("got %q (line %d, key %q), want line %d, key %q, message with %q", err, e.Line, e.Key, c.line, c.key, c.msg)
			}
			if c.line > 0 && !strings.HasPrefix(err.Error(), "policy.yaml:") {
				t.Errorf("error does not start with file:line: %q", err)
			}
		})
	}
}

func TestParseAliases(t *testing.T) {
	p, err := Parse([]byte(`
rules:
  - repositories: &repos ["a/**"]
    keep:
      - &releases {tags: ["v*"], newest: 3}
  - repositories: *repos
    keep: [*releases]
`), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Rules[1].Keep[0].String(); got != `newest 3 of "v*"` {
		t.Errorf("aliased clause: %s", got)
	}
}

func TestPolicyJSONKeys(t *testing.T) {
	p, err := Parse([]byte(issueExample), "policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"file":"policy.yaml","rules":[{"rule":1,"line":2,"repositories":["team-a/**","tools/*"],"keep":[` +
		`{"clause":1,"line":4,"tags":["v*","release-*"],"newest":10,"description":"newest 10 of \"v*\", \"release-*\""},` +
		`{"clause":2,"line":6,"tags":["latest","stable","main"],"description":"every tag matching \"latest\", \"stable\", \"main\""},` +
		`{"clause":3,"line":7,"pushed_within":"720h","description":"pushed within 720h"}],` +
		`"untagged":{"older_than":"168h"},"allow_empty":false}]}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 720 * time.Hour: "720h", 90 * time.Minute: "1h30m", time.Minute: "1m", 30 * time.Second: "30s",
		time.Hour + time.Second: "1h0m1s", 1500 * time.Millisecond: "1.5s",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("%v: %q, want %q", d, got, want)
		}
	}
}
