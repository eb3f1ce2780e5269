package retention

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// JSON forms. Their keys are a contract (docs/retention.md lists them):
// they are added to, never renamed.

type ruleJSON struct {
	Rule         int          `json:"rule"`
	Line         int          `json:"line"`
	Repositories []Pattern    `json:"repositories"`
	Keep         []Clause     `json:"keep"`
	Untagged     untaggedJSON `json:"untagged"`
	AllowEmpty   bool         `json:"allow_empty"`
}

type untaggedJSON struct {
	OlderThan string `json:"older_than"`
}

type clauseJSON struct {
	Clause       int       `json:"clause"`
	Line         int       `json:"line"`
	Tags         []Pattern `json:"tags,omitempty"`
	Newest       int       `json:"newest,omitempty"`
	PushedWithin string    `json:"pushed_within,omitempty"`
	Description  string    `json:"description"`
}

type policyJSON struct {
	File  string `json:"file"`
	Rules []Rule `json:"rules"`
}

type repositoryJSON struct {
	Repository string        `json:"repository"`
	Rule       int           `json:"rule"`
	RuleLine   int           `json:"rule_line,omitempty"`
	Pattern    string        `json:"pattern,omitempty"`
	AllowEmpty bool          `json:"allow_empty"`
	Kept       int           `json:"kept"`
	Deleted    int           `json:"deleted"`
	Tags       []TagDecision `json:"tags"`
}

type tagJSON struct {
	Tag      string `json:"tag"`
	Digest   string `json:"digest"`
	Time     string `json:"time,omitempty"`
	Decision string `json:"decision"`
	Clause   int    `json:"clause"`
	Reason   string `json:"reason"`
}

// MarshalJSON writes the policy as policy check --format json prints it.
func (p *Policy) MarshalJSON() ([]byte, error) {
	return json.Marshal(policyJSON{File: p.File, Rules: p.Rules})
}

// MarshalJSON writes the rule with its untagged setting as the file
// spells it.
func (r Rule) MarshalJSON() ([]byte, error) {
	return json.Marshal(ruleJSON{Rule: r.Number, Line: r.Line, Repositories: r.Repositories, Keep: r.Keep,
		Untagged: untaggedJSON{formatDuration(r.UntaggedOlderThan)}, AllowEmpty: r.AllowEmpty})
}

// MarshalJSON writes the clause's keys as the file spells them, leaving
// out those it leaves out, plus its description.
func (c Clause) MarshalJSON() ([]byte, error) {
	v := clauseJSON{Clause: c.Number, Line: c.Line, Tags: c.Tags, Newest: c.Newest, Description: c.String()}
	if c.PushedWithin > 0 {
		v.PushedWithin = formatDuration(c.PushedWithin)
	}
	return json.Marshal(v)
}

// MarshalJSON writes the decision as --explain --format json prints it.
func (d RepositoryDecision) MarshalJSON() ([]byte, error) {
	tags := d.Tags
	if tags == nil {
		tags = []TagDecision{}
	}
	return json.Marshal(repositoryJSON{Repository: d.Repository, Rule: d.Rule, RuleLine: d.RuleLine, Pattern: d.Pattern,
		AllowEmpty: d.AllowEmpty, Kept: d.Kept, Deleted: d.Deleted, Tags: tags})
}

// MarshalJSON writes one tag's verdict; time is left out when unknown.
func (t TagDecision) MarshalJSON() ([]byte, error) {
	v := tagJSON{Tag: t.Name, Digest: t.Digest.String(), Decision: "delete", Clause: t.Clause, Reason: t.Reason}
	if t.Keep {
		v.Decision = "keep"
	}
	if !t.Time.IsZero() {
		v.Time = t.Time.UTC().Format(time.RFC3339Nano)
	}
	return json.Marshal(v)
}

// WriteRules prints the effective rules for people.
func (p *Policy) WriteRules(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d rule(s); the first rule with a pattern that matches a repository governs it, a repository no rule matches keeps every tag\n", p.File, len(p.Rules))
	for _, r := range p.Rules {
		fmt.Fprintf(&b, "rule %d (line %d): repositories %s\n", r.Number, r.Line, quoteAll(r.Repositories))
		if len(r.Keep) == 0 {
			b.WriteString("  keep: nothing (every tag older than the grace is deleted)\n")
		}
		for _, c := range r.Keep {
			fmt.Fprintf(&b, "  keep %d (line %d): %s\n", c.Number, c.Line, c)
		}
		fmt.Fprintf(&b, "  untagged: manifests no remaining tag reaches are collected once older than %s\n", formatDuration(r.UntaggedOlderThan))
		if r.AllowEmpty {
			b.WriteString("  allow_empty: true: may delete every tag of a repository\n")
		} else {
			b.WriteString("  allow_empty: false: a run that would delete every tag of a repository refuses\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteExplanation prints decisions for people, repositories by name: for
// a governed repository every tag with its verdict and reason, newest
// first; for the others one line.
func WriteExplanation(w io.Writer, decisions []RepositoryDecision) error {
	sorted := slices.Clone(decisions)
	slices.SortFunc(sorted, func(a, b RepositoryDecision) int { return strings.Compare(a.Repository, b.Repository) })
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, d := range sorted {
		if !d.Governed() {
			fmt.Fprintf(tw, "%s: no rule matches: %d tag(s) kept\n", d.Repository, len(d.Tags))
			continue
		}
		fmt.Fprintf(tw, "%s: rule %d (line %d, pattern %q): %d kept, %d deleted\n", d.Repository, d.Rule, d.RuleLine, d.Pattern, d.Kept, d.Deleted)
		for _, t := range d.Tags {
			verdict, when := "delete", "time unknown"
			if t.Keep {
				verdict = "keep"
			}
			if !t.Time.IsZero() {
				when = t.Time.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", verdict, t.Name, shortDigest(t.Digest.String()), when, t.Reason)
		}
		tw.Flush() // align each repository's tags on their own
	}
	return tw.Flush()
}

func shortDigest(d string) string {
	if alg, hex, ok := strings.Cut(d, ":"); ok && len(hex) > 12 {
		return alg + ":" + hex[:12]
	}
	return d
}
