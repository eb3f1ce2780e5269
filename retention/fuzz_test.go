package retention

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzParse: any file either parses or fails with an *Error naming the
// file, never a panic. A parsed policy decides any tag list without a
// panic: every tag comes back once with a verdict, a repository no rule
// governs keeps everything, nothing younger than the grace or of unknown
// time is deleted, only a refused decision empties a repository without
// allow_empty, and the policy and the decision marshal to JSON.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		issueExample,
		"rules:\n  - repositories: [\"**\"]\n    keep: []\n    allow_empty: true\n",
		"rules:\n  - repositories: [a]\n    keep:\n      - tags: [\"re:^v[0-9]+$\", \"{a,b}*\"]\n        newest: 2\n        pushed_within: 1h\n",
		"rules:\n  - repositories: &r [a]\n    keep: [&c {newest: 1}]\n  - repositories: *r\n    keep: [*c]\n",
		"rules:\n  - repositories: [a]\n    keep:\n      - newest: -1\n",
		"rules:\n  - {}\n",
		"rules: [\n",
		"rules:\n  - repositories: [\"[\"]\n    keep: []\n",
		"rules:\n  - repositories: [a]\n    keep: []\n    untagged: {older_than: 30d}\n",
		"--- \n...\n",
	} {
		f.Add(seed, "a/b", "v1", "latest")
	}
	f.Fuzz(func(t *testing.T, doc, repo, tag1, tag2 string) {
		p, err := Parse([]byte(doc), "policy.yaml")
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.File != "policy.yaml" || e.Line < 0 {
				t.Fatalf("error %v is not an *Error naming the file", err)
			}
			return
		}
		if len(p.Rules) == 0 {
			t.Fatal("a parsed policy has no rules")
		}
		for _, r := range p.Rules {
			if len(r.Repositories) == 0 || r.Keep == nil || r.UntaggedOlderThan < 0 {
				t.Fatalf("rule %d is malformed: %+v", r.Number, r)
			}
			for _, c := range r.Keep {
				if c.Newest < 0 || c.PushedWithin < 0 || (len(c.Tags) == 0 && c.Newest == 0 && c.PushedWithin == 0) {
					t.Fatalf("rule %d clause %d is malformed: %+v", r.Number, c.Number, c)
				}
			}
		}
		if _, err := json.Marshal(p); err != nil {
			t.Fatal(err)
		}
		grace := time.Hour
		tags := []Tag{tag(tag1, 2*time.Hour), tag(tag2, 3*time.Hour), tag(tag1+"x", 30*time.Minute), tag(tag2+"y", -1)}
		d, err := p.Decide(repo, tags, Options{Now: now, Grace: grace})
		var empty *EmptyRepositoryError
		if err != nil && !errors.As(err, &empty) {
			t.Fatal(err)
		}
		if len(d.Tags) != len(tags) || d.Kept+d.Deleted != len(tags) {
			t.Fatalf("decision lost tags: %+v", d)
		}
		for _, td := range d.Tags {
			young := td.Time.IsZero() || td.Time.After(now.Add(-grace))
			if !td.Keep && young {
				t.Fatalf("%q deleted though young or of unknown time: %+v", td.Name, td)
			}
			if !d.Governed() && !td.Keep {
				t.Fatalf("%q deleted though no rule governs %q", td.Name, repo)
			}
			if td.Keep != strings.HasPrefix(td.Reason, "kept: ") {
				t.Fatalf("%q: verdict and reason disagree: %+v", td.Name, td)
			}
		}
		if (empty != nil) != (d.Kept == 0 && d.Deleted > 0 && !d.AllowEmpty) {
			t.Fatalf("refusal %v for %d kept, %d deleted, allow_empty %v", err, d.Kept, d.Deleted, d.AllowEmpty)
		}
		if _, err := json.Marshal(d); err != nil {
			t.Fatal(err)
		}
	})
}
