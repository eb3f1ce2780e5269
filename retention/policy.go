// Package retention reads a retention policy (which tags to keep) and
// decides, per tag of a repository, whether the policy keeps or deletes it
// and which clause made that decision. It owns the policy file's format and
// the decision, and its part in a gc run (Participant: the guards, the
// roots that keep kept tags, the tag items). It reads no storage and
// deletes nothing: the gc engine walks, asks Decide for each repository,
// and plans.
//
// What a decision deletes is a tag directory, never a manifest: a digest
// that a kept tag and a deleted tag share stays, because the engine marks
// from the tags that remain, and so do the index children and referrers of
// every kept image. Nothing here emits "delete manifest". Tags named in
// the referrers tag schema (cosign's sha256-<hex>.sig, .att, .sbom) follow
// the manifest they refer to rather than the clauses, so a kept image
// keeps its signatures (Decide).
//
// The policy file (docs/retention.md is the reference):
//
//	rules:
//	  - repositories: ["team-a/**", "tools/*"]  # doublestar globs over repository names
//	    keep:                                   # a tag is kept if ANY clause keeps it
//	      - tags: ["v*", "re:^release-[0-9]+$"] # globs, or Go regexps after "re:"
//	        newest: 10                          # the 10 most recent matching tags
//	      - tags: ["latest", "stable"]          # no count: every matching tag
//	      - pushed_within: 720h                 # any tag pushed in the last 30 days
//	    untagged:
//	      older_than: 168h                      # manifests left untagged: collected after this age
//	    allow_empty: false                      # true: the rule may delete every tag of a repository
//
// The first rule with a pattern that matches a repository governs it; a
// repository no rule matches keeps every tag. Rules and clauses are
// numbered from 1 in file order, in errors and in explanations alike.
package retention

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bmatcuk/doublestar/v4"
	"gopkg.in/yaml.v3"

	"github.com/regsweep/regsweep/internal/yamlnode"
)

// Policy is a parsed, validated policy file.
type Policy struct {
	File  string
	Rules []Rule
}

// Rule says how the tags of the repositories it governs are kept.
type Rule struct {
	Number       int // 1-based, in file order
	Line         int
	Repositories []Pattern
	// Keep is never nil; empty only when the file says keep: [] (then
	// every tag older than the grace goes, if AllowEmpty lets it).
	Keep []Clause
	// UntaggedOlderThan is untagged.older_than: a manifest no remaining
	// tag reaches is collected once its revision link is older (0 when
	// the file leaves it out).
	UntaggedOlderThan time.Duration
	AllowEmpty        bool
}

// Clause is one entry of a rule's keep list. A clause keeps the tags that
// match Tags (every tag when Tags is empty) and, when Newest or
// PushedWithin is set, only those among the Newest most recent matching
// tags or pushed within PushedWithin (either one is enough). Tags in the
// referrers tag schema are never matched: they follow their subject.
type Clause struct {
	Number       int // 1-based, within its rule
	Line         int
	Tags         []Pattern
	Newest       int           // 0: no count
	PushedWithin time.Duration // 0: no age limit
}

// Pattern matches names: a doublestar glob, or a Go regular expression
// when written with the "re:" prefix (tags only). A regexp matches
// anywhere in the name unless anchored with ^ and $.
type Pattern struct {
	text string
	re   *regexp.Regexp
}

// String is the pattern as the file wrote it.
func (p Pattern) String() string { return p.text }

// MarshalText writes the pattern as the file wrote it.
func (p Pattern) MarshalText() ([]byte, error) { return []byte(p.text), nil }

// Match reports whether name matches the pattern.
func (p Pattern) Match(name string) bool {
	if p.re != nil {
		return p.re.MatchString(name)
	}
	return doublestar.MatchUnvalidated(p.text, name)
}

// regexPrefix marks a tag pattern as a Go regular expression.
const regexPrefix = "re:"

// Error is a problem at one place of the policy file: File, Line (0 for
// the whole file), Key (where in the file, e.g. rules[2].keep[1].newest,
// numbered from 1) and Msg.
type Error = yamlnode.Error

// Parse validates a policy file's content (file names it in errors).
// Unknown keys, keys given twice, bad patterns, bad durations, counts below
// 1, empty rules and clauses are errors naming the key and its line.
func Parse(data []byte, file string) (*Policy, error) {
	p, err := parse(data)
	if err != nil {
		err.File = file
		return nil, err
	}
	p.File = file
	return p, nil
}

func parse(data []byte) (*Policy, *Error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{Msg: "the policy is empty: it needs rules"}
		}
		return nil, &Error{Msg: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	var more yaml.Node
	if err := dec.Decode(&more); err == nil {
		return nil, &Error{Line: more.Line, Msg: "holds more than one YAML document"}
	}
	top := &doc
	if top.Kind == yaml.DocumentNode && len(top.Content) == 1 {
		top = top.Content[0]
	}
	top = deref(top)
	if yamlnode.IsNull(top) {
		return nil, &Error{Msg: "the policy is empty: it needs rules"}
	}
	fields, err := mapping(top, "", map[string]bool{"rules": true})
	if err != nil {
		return nil, err
	}
	rules, ok := fields["rules"]
	if !ok {
		return nil, &Error{Line: top.Line, Msg: "rules: missing"}
	}
	items, err := list(rules.value, "rules")
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, &Error{Line: rules.key.Line, Key: "rules", Msg: "no rules: a policy that keeps every tag needs no file"}
	}
	p := &Policy{Rules: make([]Rule, 0, len(items))}
	for i, n := range items {
		r, err := parseRule(n, i+1)
		if err != nil {
			return nil, err
		}
		p.Rules = append(p.Rules, r)
	}
	return p, nil
}

func parseRule(n *yaml.Node, number int) (Rule, *Error) {
	key := fmt.Sprintf("rules[%d]", number)
	r := Rule{Number: number, Line: n.Line}
	if yamlnode.IsNull(n) || (n.Kind == yaml.MappingNode && len(n.Content) == 0) {
		return r, &Error{Line: n.Line, Key: key, Msg: "empty rule: it needs repositories and keep"}
	}
	fields, err := mapping(n, key, map[string]bool{"repositories": true, "keep": true, "untagged": true, "allow_empty": true})
	if err != nil {
		return r, err
	}
	repos, ok := fields["repositories"]
	if !ok {
		return r, &Error{Line: n.Line, Key: key + ".repositories", Msg: "missing: a rule names the repositories it governs"}
	}
	if r.Repositories, err = patterns(repos, key+".repositories", false); err != nil {
		return r, err
	}
	keep, ok := fields["keep"]
	if !ok {
		// A rule without keep would delete every tag: say so rather than guess.
		return r, &Error{Line: n.Line, Key: key + ".keep", Msg: "missing: list the tags to keep (keep: [] with allow_empty: true deletes every tag)"}
	}
	clauses, err := list(keep.value, key+".keep")
	if err != nil {
		return r, err
	}
	r.Keep = make([]Clause, 0, len(clauses))
	for i, c := range clauses {
		cl, err := parseClause(c, fmt.Sprintf("%s.keep[%d]", key, i+1), i+1)
		if err != nil {
			return r, err
		}
		r.Keep = append(r.Keep, cl)
	}
	if u, ok := fields["untagged"]; ok {
		uk := key + ".untagged"
		v := deref(u.value)
		if yamlnode.IsNull(v) || (v.Kind == yaml.MappingNode && len(v.Content) == 0) {
			return r, &Error{Line: u.key.Line, Key: uk, Msg: "empty: give older_than, or leave untagged out (default older_than: 0s)"}
		}
		uf, err := mapping(v, uk, map[string]bool{"older_than": true})
		if err != nil {
			return r, err
		}
		if o, ok := uf["older_than"]; ok {
			if r.UntaggedOlderThan, err = duration(o, uk+".older_than", true); err != nil {
				return r, err
			}
		}
	}
	if a, ok := fields["allow_empty"]; ok {
		v := deref(a.value)
		if v.Kind != yaml.ScalarNode || v.Tag != "!!bool" {
			return r, &Error{Line: v.Line, Key: key + ".allow_empty", Msg: "expected true or false, got " + yamlnode.KindName(v)}
		}
		r.AllowEmpty = v.Value == "true"
	}
	return r, nil
}

func parseClause(n *yaml.Node, key string, number int) (Clause, *Error) {
	n = deref(n)
	c := Clause{Number: number, Line: n.Line}
	if yamlnode.IsNull(n) || (n.Kind == yaml.MappingNode && len(n.Content) == 0) {
		return c, &Error{Line: n.Line, Key: key, Msg: "empty keep clause: give tags, newest or pushed_within"}
	}
	fields, err := mapping(n, key, map[string]bool{"tags": true, "newest": true, "pushed_within": true})
	if err != nil {
		return c, err
	}
	if t, ok := fields["tags"]; ok {
		if c.Tags, err = patterns(t, key+".tags", true); err != nil {
			return c, err
		}
	}
	if f, ok := fields["newest"]; ok {
		v := deref(f.value)
		nk := key + ".newest"
		if v.Kind != yaml.ScalarNode || v.Tag != "!!int" {
			return c, &Error{Line: v.Line, Key: nk, Msg: "expected a count of tags such as 10, got " + yamlnode.KindName(v)}
		}
		count, perr := strconv.ParseInt(strings.ReplaceAll(v.Value, "_", ""), 0, 32)
		switch {
		case perr != nil:
			return c, &Error{Line: v.Line, Key: nk, Msg: "expected a count of tags such as 10"}
		case count < 0:
			return c, &Error{Line: v.Line, Key: nk, Msg: fmt.Sprintf("cannot be negative (%d)", count)}
		case count == 0:
			return c, &Error{Line: v.Line, Key: nk, Msg: "0 keeps nothing: leave newest out to keep every matching tag"}
		}
		c.Newest = int(count)
	}
	if f, ok := fields["pushed_within"]; ok {
		if c.PushedWithin, err = duration(f, key+".pushed_within", false); err != nil {
			return c, err
		}
	}
	return c, nil
}

// field is a key of a mapping and its value.
type field struct{ key, value *yaml.Node }

// mapping checks that n is a mapping of allowed, distinct keys.
func mapping(n *yaml.Node, key string, allowed map[string]bool) (map[string]field, *Error) {
	n = deref(n)
	where := key
	if where == "" {
		where = "the top level"
	}
	if n.Kind != yaml.MappingNode {
		return nil, &Error{Line: n.Line, Key: key, Msg: fmt.Sprintf("expected a mapping at %s, got %s", where, yamlnode.KindName(n))}
	}
	out := map[string]field{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name := join(key, k.Value)
		if k.Kind != yaml.ScalarNode {
			return nil, &Error{Line: k.Line, Key: key, Msg: "keys must be plain names"}
		}
		if !allowed[k.Value] {
			return nil, &Error{Line: k.Line, Key: name, Msg: "unknown key" + yamlnode.Suggest(k.Value, slices.Sorted(maps.Keys(allowed)))}
		}
		if first, dup := out[k.Value]; dup {
			return nil, &Error{Line: k.Line, Key: name, Msg: fmt.Sprintf("given twice (first at line %d)", first.key.Line)}
		}
		out[k.Value] = field{k, v}
	}
	return out, nil
}

func list(n *yaml.Node, key string) ([]*yaml.Node, *Error) {
	n = deref(n)
	if n.Kind != yaml.SequenceNode {
		return nil, &Error{Line: n.Line, Key: key, Msg: "expected a list, got " + yamlnode.KindName(n)}
	}
	out := make([]*yaml.Node, len(n.Content))
	for i, c := range n.Content {
		out[i] = deref(c)
	}
	return out, nil
}

// patterns reads a non-empty list of patterns: globs, and for tags also
// "re:" regexps.
func patterns(f field, key string, tags bool) ([]Pattern, *Error) {
	items, err := list(f.value, key)
	if err != nil {
		if n := deref(f.value); n.Kind == yaml.ScalarNode && !yamlnode.IsNull(n) {
			err.Msg += fmt.Sprintf(" (write [%q] for one pattern)", n.Value)
		}
		return nil, err
	}
	if len(items) == 0 {
		return nil, &Error{Line: f.key.Line, Key: key, Msg: "empty list: give at least one pattern"}
	}
	out := make([]Pattern, 0, len(items))
	for i, n := range items {
		pk := fmt.Sprintf("%s[%d]", key, i+1)
		if n.Kind != yaml.ScalarNode || yamlnode.IsNull(n) {
			return nil, &Error{Line: n.Line, Key: pk, Msg: "expected a pattern string, got " + yamlnode.KindName(n)}
		}
		p, msg := compile(n.Value, tags)
		if msg != "" {
			return nil, &Error{Line: n.Line, Key: pk, Msg: msg}
		}
		out = append(out, p)
	}
	return out, nil
}

func compile(text string, tags bool) (Pattern, string) {
	if text == "" {
		return Pattern{}, "empty pattern"
	}
	if expr, ok := strings.CutPrefix(text, regexPrefix); ok {
		if !tags {
			return Pattern{}, fmt.Sprintf("%q: repositories take doublestar globs, regexps (re:) are for tags", text)
		}
		if expr == "" {
			return Pattern{}, "empty regexp after re:"
		}
		re, err := regexp.Compile(expr)
		if err != nil {
			return Pattern{}, fmt.Sprintf("%q is not a valid regexp: %v", text, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
		}
		return Pattern{text: text, re: re}, ""
	}
	if !doublestar.ValidatePattern(text) {
		return Pattern{}, fmt.Sprintf("%q is not a valid glob (an unclosed [ or {, or a trailing \\)", text)
	}
	if tags && strings.Contains(text, "/") {
		return Pattern{}, fmt.Sprintf("%q: a tag name never holds a /", text)
	}
	return Pattern{text: text}, ""
}

// duration reads a Go duration; zero is allowed only where it means
// "no delay" (untagged.older_than).
func duration(f field, key string, zeroOK bool) (time.Duration, *Error) {
	v := deref(f.value)
	if v.Kind != yaml.ScalarNode || (v.Tag != "!!str" && v.Tag != "!!int") {
		return 0, &Error{Line: v.Line, Key: key, Msg: "expected a duration such as 720h, got " + yamlnode.KindName(v)}
	}
	d, err := time.ParseDuration(v.Value)
	if err != nil {
		msg := fmt.Sprintf("%q is not a duration (units ns, us, ms, s, m, h", v.Value)
		if strings.HasSuffix(v.Value, "d") {
			msg += "; there is no d: 720h is 30 days"
		}
		return 0, &Error{Line: v.Line, Key: key, Msg: msg + ")"}
	}
	switch {
	case d < 0:
		return 0, &Error{Line: v.Line, Key: key, Msg: fmt.Sprintf("cannot be negative (%s)", v.Value)}
	case d == 0 && !zeroOK:
		return 0, &Error{Line: v.Line, Key: key, Msg: "0 keeps nothing: leave pushed_within out, or give a duration such as 720h"}
	}
	return d, nil
}

// String says what the clause keeps, as policy check prints it: newest
// 10 of "v*", every tag matching "latest", pushed within 720h. (A tag's
// reason in --explain names only the part and pattern that kept it.)
func (c Clause) String() string {
	of := ""
	if len(c.Tags) > 0 {
		of = quoteAll(c.Tags)
	}
	var parts []string
	if c.Newest > 0 {
		s := fmt.Sprintf("newest %d", c.Newest)
		if of != "" {
			s += " of " + of
		}
		parts = append(parts, s)
	}
	if c.PushedWithin > 0 {
		s := "pushed within " + formatDuration(c.PushedWithin)
		if of != "" && c.Newest == 0 {
			s = "matching " + of + " and " + s
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return "every tag matching " + of
	}
	return strings.Join(parts, ", or ")
}

func quoteAll(ps []Pattern) string {
	q := make([]string, len(ps))
	for i, p := range ps {
		q[i] = strconv.Quote(p.text)
	}
	return strings.Join(q, ", ")
}

// formatDuration writes d as a file would: 720h, 1h30m, 0s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// deref follows aliases (*name) to the node they name.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}
