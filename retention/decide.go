package retention

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// Tag is one tag of a repository as storage holds it.
type Tag struct {
	Name   string
	Digest digest.Digest // what its current link holds
	// Time is the modification time of its current link: when it was last
	// pushed or moved. The zero time means unknown (the link could not be
	// read): such a tag is kept and ranks below every tag with a time, so
	// no other tag's fate depends on it.
	Time time.Time
}

// Options are the run's inputs to a decision.
type Options struct {
	Now   time.Time     // the storage's clock, as the engine measured it
	Grace time.Duration // a tag whose time is after Now-Grace is never deleted
}

// RepositoryDecision is the policy's verdict on every tag of one repository.
type RepositoryDecision struct {
	Repository string
	Rule       int    // the governing rule's number; 0 when no rule matches
	RuleLine   int    // its line in the file
	Pattern    string // its repository pattern that matched
	AllowEmpty bool
	// Tags are ordered newest first (the order "newest N" counts in):
	// time descending, then, for equal times, name descending, so among
	// tags pushed in the same second the one whose name sorts last counts
	// as the newer; tags of unknown time come last.
	Tags    []TagDecision
	Kept    int
	Deleted int
}

// Governed reports whether a rule governs the repository.
func (d RepositoryDecision) Governed() bool { return d.Rule > 0 }

// DeletedTags are the tags to delete, newest first.
func (d RepositoryDecision) DeletedTags() []TagDecision {
	var out []TagDecision
	for _, t := range d.Tags {
		if !t.Keep {
			out = append(out, t)
		}
	}
	return out
}

// TagDecision is the verdict on one tag and what made it.
type TagDecision struct {
	Tag
	Keep bool
	// Clause is the number of the first keep clause that keeps the tag
	// (0 when none does: kept by the grace, an unknown time or no rule;
	// or deleted).
	Clause int
	// Reason is "kept: ..." or "deleted: ...", naming the clause.
	Reason string
}

// Reasons that name no clause.
const (
	ReasonNoRule      = "kept: no rule matches the repository"
	ReasonNoClause    = "deleted: no keep clause matched"
	ReasonUnknownTime = "kept: its time is unknown (current link unreadable)"
	reasonGrace       = "kept: younger than the grace period (%s)"
)

// Guard names the engine reports these refusals under (a contract, like
// the gc's other guards).
const (
	GuardEmptyRepository = "policy_empty_repository"
	GuardTagFraction     = "policy_delete_fraction"
)

// EmptyRepositoryError refuses a decision that deletes every tag of a
// repository whose rule does not say allow_empty: true.
type EmptyRepositoryError struct {
	Repository string
	Rule       int
	RuleLine   int
	Tags       int
}

func (e *EmptyRepositoryError) Error() string {
	return fmt.Sprintf("policy rule %d (line %d) would delete all %d tags of repository %q; add allow_empty: true to the rule if that is meant",
		e.Rule, e.RuleLine, e.Tags, e.Repository)
}

// FractionError refuses decisions that delete more than the allowed
// fraction of all tags.
type FractionError struct {
	Deleted, Total int
	Max            float64
}

func (e *FractionError) Error() string {
	return fmt.Sprintf("the policy would delete %d of %d tags (%.0f%%), more than --max-delete-fraction %.2f",
		e.Deleted, e.Total, 100*float64(e.Deleted)/float64(e.Total), e.Max)
}

// ErrNoTime means Options.Now was not set: without it no age can be judged.
var ErrNoTime = errors.New("retention: Options.Now is not set")

// Govern returns the rule that governs repo (the first one with a
// matching pattern) and that pattern; nil when no rule matches.
func (p *Policy) Govern(repo string) (*Rule, string) {
	for i := range p.Rules {
		for _, pat := range p.Rules[i].Repositories {
			if pat.Match(repo) {
				return &p.Rules[i], pat.text
			}
		}
	}
	return nil, ""
}

// Decide judges every tag of repo. A tag is kept when any clause of the
// governing rule keeps it, when it is younger than the grace, or when its
// time is unknown; otherwise it is deleted. A repository no rule matches
// keeps every tag.
//
// Tags named in the referrers tag schema (sha256-<hex>, and cosign's
// sha256-<hex>.sig, .att, .sbom) are not judged by the clauses and take no
// place among the newest: they follow the manifest they refer to. Such a
// tag is kept while a kept tag (of either kind) names that digest, or when
// no tag of the repository names it (an index child or an untagged
// manifest: not judged here); it is deleted, the grace and unknown times
// permitting, when every tag that names the digest is deleted.
//
// The decision is returned in full even with an *EmptyRepositoryError
// (every tag would go and the rule does not allow it), so that it can be
// explained; the engine must then delete nothing.
func (p *Policy) Decide(repo string, tags []Tag, o Options) (RepositoryDecision, error) {
	if o.Now.IsZero() {
		return RepositoryDecision{}, ErrNoTime
	}
	d := RepositoryDecision{Repository: repo, Tags: make([]TagDecision, len(tags))}
	for i, t := range tags {
		d.Tags[i] = TagDecision{Tag: t}
	}
	sort.SliceStable(d.Tags, func(i, j int) bool { return newer(d.Tags[i].Tag, d.Tags[j].Tag) })
	rule, pattern := p.Govern(repo)
	if rule == nil {
		for i := range d.Tags {
			d.Tags[i].Keep, d.Tags[i].Reason = true, ReasonNoRule
		}
		d.Kept = len(d.Tags)
		return d, nil
	}
	d.Rule, d.RuleLine, d.Pattern, d.AllowEmpty = rule.Number, rule.Line, pattern, rule.AllowEmpty
	var plain []TagDecision
	var referrers []int // indexes into d.Tags
	for i, t := range d.Tags {
		if _, ok := referredDigest(t.Name); ok {
			referrers = append(referrers, i)
		} else {
			plain = append(plain, t)
		}
	}
	for _, c := range rule.Keep {
		c.apply(plain, o.Now)
	}
	graceCutoff := o.Now.Add(-o.Grace)
	young := func(t *TagDecision) bool {
		switch {
		case t.Time.IsZero():
			t.Keep, t.Reason = true, ReasonUnknownTime
		case t.Time.After(graceCutoff):
			t.Keep, t.Reason = true, fmt.Sprintf(reasonGrace, formatDuration(o.Grace))
		}
		return t.Keep
	}
	keptBy := map[digest.Digest]string{} // digest -> a kept tag naming it
	named := map[digest.Digest]bool{}    // digests some tag names
	j := 0
	for i := range d.Tags {
		t := &d.Tags[i]
		named[t.Digest] = true
		if j < len(referrers) && referrers[j] == i {
			j++
			continue
		}
		*t = plain[i-j]
		if !t.Keep && !young(t) {
			t.Reason = ReasonNoClause
		}
		if t.Keep {
			if _, ok := keptBy[t.Digest]; !ok {
				keptBy[t.Digest] = t.Name
			}
		}
	}
	followReferredManifests(d.Tags, referrers, keptBy, named, young)
	for _, t := range d.Tags {
		if t.Keep {
			d.Kept++
		} else {
			d.Deleted++
		}
	}
	if d.Kept == 0 && d.Deleted > 0 && !rule.AllowEmpty {
		return d, &EmptyRepositoryError{Repository: repo, Rule: rule.Number, RuleLine: rule.Line, Tags: d.Deleted}
	}
	return d, nil
}

// followReferredManifests decides the referrer-schema tags: kept while a
// kept tag names their subject (which may itself be such a tag: a
// signature of an SBOM), or when no tag names it; otherwise deleted unless
// young keeps them.
func followReferredManifests(tags []TagDecision, referrers []int, keptBy map[digest.Digest]string, named map[digest.Digest]bool, young func(*TagDecision) bool) {
	open := slices.Clone(referrers)
	keep := func(t *TagDecision) {
		if _, ok := keptBy[t.Digest]; !ok {
			keptBy[t.Digest] = t.Name
		}
	}
	for _, i := range open {
		t := &tags[i]
		if subject, _ := referredDigest(t.Name); !named[subject] {
			t.Keep, t.Reason = true, fmt.Sprintf("kept: refers to %s, which no tag here names (not judged)", shortDigest(subject.String()))
			keep(t)
		}
	}
	for {
		// Propagate from kept subjects until nothing changes, then let the
		// grace keep the young undecided tags and propagate again.
		progress := false
		for _, i := range open {
			t := &tags[i]
			if t.Keep {
				continue
			}
			subject, _ := referredDigest(t.Name)
			if by, ok := keptBy[subject]; ok {
				t.Keep, t.Reason = true, fmt.Sprintf("kept: refers to %s, which kept tag %q names", shortDigest(subject.String()), by)
				keep(t)
				progress = true
			}
		}
		if progress {
			continue
		}
		for _, i := range open {
			if t := &tags[i]; !t.Keep && young(t) {
				keep(t)
				progress = true
			}
		}
		if !progress {
			break
		}
	}
	for _, i := range open {
		if t := &tags[i]; !t.Keep {
			subject, _ := referredDigest(t.Name)
			t.Reason = fmt.Sprintf("deleted: refers to %s, whose tags are all deleted", shortDigest(subject.String()))
		}
	}
}

// referredDigest parses a tag of the referrers tag schema: <alg>-<hex>,
// optionally with a suffix such as cosign's .sig, .att and .sbom.
func referredDigest(tag string) (digest.Digest, bool) {
	alg, rest, _ := strings.Cut(tag, "-")
	size := map[string]int{"sha256": 64, "sha512": 128}[alg]
	hex, _, _ := strings.Cut(rest, ".")
	if size == 0 || len(hex) != size || strings.Trim(hex, "0123456789abcdef") != "" {
		return "", false
	}
	return digest.NewDigestFromEncoded(digest.Algorithm(alg), hex), true
}

// apply marks the tags the clause keeps that no earlier clause kept.
// tags are ordered newest first.
func (c Clause) apply(tags []TagDecision, now time.Time) {
	pushedAfter := now.Add(-c.PushedWithin)
	rank := 0 // among the tags this clause's patterns match, known times only
	for i := range tags {
		t := &tags[i]
		pattern, ok := c.match(t.Name)
		if !ok {
			continue
		}
		known := !t.Time.IsZero()
		if known {
			rank++
		}
		if t.Keep {
			continue // an earlier clause's reason stands
		}
		var reason string
		switch {
		case c.Newest == 0 && c.PushedWithin == 0:
			reason = "matches " + strconv.Quote(pattern)
		case c.Newest > 0 && known && rank <= c.Newest:
			reason = c.newestReason()
		case c.PushedWithin > 0 && known && t.Time.After(pushedAfter):
			reason = "pushed within " + formatDuration(c.PushedWithin)
			if len(c.Tags) > 0 {
				reason = "matches " + strconv.Quote(pattern) + ", " + reason
			}
		default:
			continue
		}
		t.Keep, t.Clause, t.Reason = true, c.Number, "kept: "+reason
	}
}

func (c Clause) newestReason() string {
	s := fmt.Sprintf("newest %d", c.Newest)
	if len(c.Tags) > 0 {
		s += " of " + quoteAll(c.Tags)
	}
	return s
}

// match returns the clause's first pattern that matches name; a clause
// without patterns matches every tag.
func (c Clause) match(name string) (string, bool) {
	if len(c.Tags) == 0 {
		return "", true
	}
	for _, p := range c.Tags {
		if p.Match(name) {
			return p.text, true
		}
	}
	return "", false
}

// newer orders tags newest first: by time, then by name descending; tags
// of unknown (zero) time after all others.
func newer(a, b Tag) bool {
	if az, bz := a.Time.IsZero(), b.Time.IsZero(); az != bz {
		return bz
	}
	if !a.Time.Equal(b.Time) {
		return a.Time.After(b.Time)
	}
	return a.Name > b.Name
}

// CheckFraction refuses decisions that would delete more than max of all
// the tags they cover (every repository's, governed or not). max <= 0
// disables the check, as --max-delete-fraction 0 does for blobs.
func CheckFraction(decisions []RepositoryDecision, max float64) error {
	total, deleted := 0, 0
	for _, d := range decisions {
		total += len(d.Tags)
		deleted += d.Deleted
	}
	if max > 0 && total > 0 && float64(deleted)/float64(total) > max {
		return &FractionError{Deleted: deleted, Total: total, Max: max}
	}
	return nil
}
