package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writePolicy(t *testing.T, doc string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const policyExample = `rules:
  - repositories: ["team-a/**", "tools/*"]
    keep:
      - tags: ["v*", "re:^release-[0-9]+$"]
        newest: 10
      - tags: ["latest", "stable", "main"]
      - pushed_within: 720h
    untagged:
      older_than: 168h
  - repositories: ["scratch/**"]
    keep: []
    allow_empty: true
`

func TestPolicyCheckPrintsEffectiveRules(t *testing.T) {
	path := writePolicy(t, policyExample)
	stdout, stderr, code := run(t, "policy", "check", "--config", "", path)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, line := range []string{
		`rule 1 (line 2): repositories "team-a/**", "tools/*"`,
		`  keep 1 (line 4): newest 10 of "v*", "re:^release-[0-9]+$"`,
		`  keep 2 (line 6): every tag matching "latest", "stable", "main"`,
		`  keep 3 (line 7): pushed within 720h`,
		`  untagged: manifests no remaining tag reaches are collected once older than 168h`,
		`rule 2 (line 10): repositories "scratch/**"`,
		`  untagged: manifests no remaining tag reaches are collected once older than 0s`,
		`  allow_empty: true: may delete every tag of a repository`,
	} {
		if !strings.Contains(stdout, line+"\n") {
			t.Errorf("stdout lacks %q:\n%s", line, stdout)
		}
	}
}

func TestPolicyCheckJSON(t *testing.T) {
	path := writePolicy(t, policyExample)
	stdout, stderr, code := run(t, "policy", "check", "--config", "", "--format", "json", path)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var doc struct {
		File  string `json:"file"`
		Rules []struct {
			Rule         int      `json:"rule"`
			Line         int      `json:"line"`
			Repositories []string `json:"repositories"`
			Keep         []struct {
				Clause       int      `json:"clause"`
				Line         int      `json:"line"`
				Tags         []string `json:"tags"`
				Newest       int      `json:"newest"`
				PushedWithin string   `json:"pushed_within"`
				Description  string   `json:"description"`
			} `json:"keep"`
			Untagged struct {
				OlderThan string `json:"older_than"`
			} `json:"untagged"`
			AllowEmpty bool `json:"allow_empty"`
		} `json:"rules"`
	}
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields() // a key added here must be added to docs/retention.md too
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("stdout is not the documented JSON: %v\n%s", err, stdout)
	}
	if doc.File != path || len(doc.Rules) != 2 {
		t.Fatalf("%+v", doc)
	}
	r1, r2 := doc.Rules[0], doc.Rules[1]
	if r1.Rule != 1 || r1.Line != 2 || strings.Join(r1.Repositories, " ") != "team-a/** tools/*" || r1.Untagged.OlderThan != "168h" || r1.AllowEmpty {
		t.Errorf("rule 1: %+v", r1)
	}
	if len(r1.Keep) != 3 || r1.Keep[0].Newest != 10 || r1.Keep[0].Tags[1] != "re:^release-[0-9]+$" || r1.Keep[2].PushedWithin != "720h" ||
		r1.Keep[1].Description != `every tag matching "latest", "stable", "main"` || r1.Keep[2].Line != 7 {
		t.Errorf("rule 1 keep: %+v", r1.Keep)
	}
	if r2.Rule != 2 || len(r2.Keep) != 0 || r2.Untagged.OlderThan != "0s" || !r2.AllowEmpty {
		t.Errorf("rule 2: %+v", r2)
	}
}

func TestPolicyCheckRefusesInvalidFiles(t *testing.T) {
	cases := []struct {
		name, doc string
		msg       string // after "<file>:"
	}{
		{"unknown key", "rules:\n  - repositories: [a]\n    keep:\n      - tags: [v]\n        newst: 3\n", `:5: rules[1].keep[1].newst: unknown key (did you mean "newest"?)`},
		{"bad glob", "rules:\n  - repositories: [\"a/[\"]\n    keep: []\n", `:2: rules[1].repositories[1]: "a/[" is not a valid glob`},
		{"bad regexp", "rules:\n  - repositories: [a]\n    keep:\n      - tags: [\"re:(\"]\n", `:4: rules[1].keep[1].tags[1]: "re:(" is not a valid regexp`},
		{"bad duration", "rules:\n  - repositories: [a]\n    keep: []\n    untagged:\n      older_than: 7d\n", `:5: rules[1].untagged.older_than: "7d" is not a duration`},
		{"negative count", "rules:\n  - repositories: [a]\n    keep:\n      - newest: -2\n", `:4: rules[1].keep[1].newest: cannot be negative (-2)`},
		{"empty rule", "rules:\n  - {}\n", `:2: rules[1]: empty rule`},
		{"empty file", "", `: the policy is empty`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writePolicy(t, c.doc)
			stdout, stderr, code := run(t, "policy", "check", "--config", "", path)
			if code != exitUsage || !strings.Contains(stderr, "invalid policy: "+path+c.msg) {
				t.Errorf("exit %d (want %d), stderr %q (want %q)", code, exitUsage, stderr, path+c.msg)
			}
			if stdout != "" {
				t.Errorf("an invalid policy prints no rules: %q", stdout)
			}
		})
	}
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	if _, stderr, code := run(t, "policy", "check", "--config", "", missing); code != exitUsage || !strings.Contains(stderr, missing) {
		t.Errorf("missing file: exit %d, stderr %q", code, stderr)
	}
	if _, stderr, code := run(t, "policy", "check", "--config", ""); code != exitUsage || !strings.Contains(stderr, "accepts 1 arg") {
		t.Errorf("no file: exit %d, stderr %q", code, stderr)
	}
	if _, stderr, code := run(t, "policy", "check", "--config", "", "--format", "xml", writePolicy(t, policyExample)); code != exitUsage || !strings.Contains(stderr, "--format") {
		t.Errorf("bad format: exit %d, stderr %q", code, stderr)
	}
}

// --policy in Harbor mode (--harbor-db, or harbor-core's POSTGRESQL_*
// environment) is refused as a usage error before the storage or the
// database is opened: neither is reachable here.
func TestGCPolicyRefusedInHarborMode(t *testing.T) {
	policy := writePolicy(t, policyExample)
	missing := filepath.Join(t.TempDir(), "no-such-root")
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
	}{
		{"--harbor-db", nil, []string{"--harbor-db", "postgres://harbor@127.0.0.1:1/registry?sslmode=disable"}},
		{"POSTGRESQL_HOST", map[string]string{"POSTGRESQL_HOST": "127.0.0.1", "POSTGRESQL_PORT": "1"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			args := append([]string{"gc", "--config", "", "--fs-root", missing, "--policy", policy, "--delete"}, tc.args...)
			_, stderr, code := run(t, args...)
			if code != exitUsage || !strings.Contains(stderr, "--policy is for a plain registry") || !strings.Contains(stderr, "Tag Retention") {
				t.Errorf("exit %d, want %d with a pointer to Harbor's tag retention: %s", code, exitUsage, stderr)
			}
		})
	}
}
