package retention

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/gc"
	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/sweep"
	"github.com/regsweep/regsweep/walker"
)

// Participant is a policy in a gc run (gc --policy): it decides which
// tags go once the walk is in, marks from the tags that stay (and, in the
// repositories a rule governs, from the revisions younger than the rule's
// untagged.older_than), adds a plan item per tag to delete and its
// guards, and checks each tag again just before it is deleted.
type Participant struct {
	// The gc rechecks each tag's current link just before deleting it, as
	// for a reviewed plan: the policy has nothing to check per batch, nor
	// to record of the results (the report counts them).
	gc.Passive

	policy *Policy
	// Decisions are the policy's verdicts on every repository walked,
	// ungoverned ones included: --explain shows them.
	Decisions []RepositoryDecision

	decided map[string]*RepositoryDecision // governed repositories by name
	inv     *walker.Inventory
	now     time.Time
	guards  []sweep.Guard
}

var _ gc.Participant = (*Participant)(nil)

// NewParticipant makes policy a participant of a gc run.
func NewParticipant(policy *Policy) *Participant { return &Participant{policy: policy} }

// At takes part in each stage of the run.
func (p *Participant) At(ctx context.Context, stage gc.Stage, a *gc.Analysis) error {
	switch stage {
	case gc.Walked:
		return p.decide(a)
	case gc.Planned:
		p.plan(a)
	}
	return nil
}

// decide judges every tag of every repository the walk found. A decision
// that would empty a repository, or delete more than the allowed share of
// all tags, becomes a guard (exit 6), not an error: a dry run shows it.
func (p *Participant) decide(a *gc.Analysis) error {
	p.inv, p.now = a.Inventory, a.Now
	p.decided, p.Decisions, p.guards = map[string]*RepositoryDecision{}, nil, nil
	for _, name := range a.Inventory.RepositoryNames() {
		r := a.Inventory.Repositories[name]
		d, err := p.policy.Decide(name, tagsOf(r), Options{Now: a.Now, Grace: a.Options.Grace})
		var empty *EmptyRepositoryError
		switch {
		case errors.As(err, &empty):
			p.guards = append(p.guards, sweep.Guard{Name: GuardEmptyRepository, Message: empty.Error()})
		case err != nil:
			return err
		}
		if _, changing := a.Inventory.Changing[name]; changing && d.Governed() {
			// The registry changed the repository under the walk: no tag of
			// it goes this run.
			for i := range d.Tags {
				if !d.Tags[i].Keep {
					d.Tags[i].Keep, d.Tags[i].Reason = true, "kept: the repository changed during the walk"
					d.Kept, d.Deleted = d.Kept+1, d.Deleted-1
				}
			}
		}
		p.Decisions = append(p.Decisions, d)
	}
	for i := range p.Decisions {
		if p.Decisions[i].Governed() {
			p.decided[p.Decisions[i].Repository] = &p.Decisions[i]
		}
	}
	if err := CheckFraction(p.Decisions, a.Options.MaxDeleteFraction); err != nil {
		var fraction *FractionError
		if !errors.As(err, &fraction) {
			return err
		}
		p.guards = append(p.guards, sweep.Guard{Name: GuardTagFraction, Message: fraction.Error()})
	}
	return nil
}

// tagsOf is a repository's tags as the policy judges them. A tag without
// a current link is not served, and has no time: it is left to the gc.
func tagsOf(r *walker.Repository) []Tag {
	var tags []Tag
	for name, t := range r.Tags {
		if !t.HasCurrent {
			continue
		}
		tag := Tag{Name: name, Digest: t.Current}
		if t.CurrentCorrupt == "" && t.Current != "" {
			tag.Time = time.Unix(t.CurrentModTime, 0)
		}
		tags = append(tags, tag)
	}
	slices.SortFunc(tags, func(a, b Tag) int { return strings.Compare(a.Name, b.Name) })
	return tags
}

// Roots are, in a repository a rule governs, the manifests its kept tags
// name and its revisions younger than the rule's untagged.older_than:
// a manifest no remaining tag reaches is collected once it is older.
func (p *Participant) Roots(repo string) ([]digest.Digest, bool, bool) {
	d := p.decided[repo]
	if d == nil {
		return nil, false, false
	}
	var roots []digest.Digest
	for _, t := range d.Tags {
		if t.Keep && t.Digest != "" {
			roots = append(roots, t.Digest)
		}
	}
	rule, _ := p.policy.Govern(repo)
	cutoff := p.now.Add(-rule.UntaggedOlderThan).Unix()
	if r := p.inv.Repositories[repo]; r != nil {
		for m, l := range r.Revisions.All() {
			if l.ModTime > cutoff {
				roots = append(roots, m)
			}
		}
	}
	return roots, false, true
}

// plan replaces, for each tag the policy deletes, the gc's items for its
// links with one item for the tag, and adds the policy's guards.
func (p *Participant) plan(a *gc.Analysis) {
	a.Plan.Guards = append(a.Plan.Guards, p.guards...)
	var items []sweep.Item
	deleted := map[string]bool{} // tag directories
	for _, d := range p.Decisions {
		for _, t := range d.DeletedTags() {
			key, err := layout.Path(layout.TagCurrentLink{Repo: d.Repository, Tag: t.Name})
			if err != nil {
				continue // a name the walk parsed always has a path
			}
			deleted[d.Repository+"\x00"+t.Name] = true
			items = append(items, sweep.Item{Kind: sweep.KindTag, Key: key, Repo: d.Repository, Tag: t.Name, Digest: t.Digest,
				ModTime: t.Time.UTC(), Reason: "retention policy: " + t.Reason})
		}
	}
	if len(items) == 0 {
		return
	}
	a.Plan.Drop(func(it sweep.Item) bool {
		switch it.Kind {
		case sweep.KindTagCurrentLink, sweep.KindTagIndexLink:
			spec, err := layout.Parse(it.Key)
			if err != nil {
				return false
			}
			var tag string
			switch s := spec.(type) {
			case layout.TagCurrentLink:
				tag = s.Tag
			case layout.TagIndexLink:
				tag = s.Tag
			}
			return deleted[it.Repo+"\x00"+tag]
		}
		return false
	})
	a.Plan.Add(items...)
}
