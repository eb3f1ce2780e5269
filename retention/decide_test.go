package retention

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// now is the fixed clock of these tests; tags are placed by age from it.
var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func dg(s string) digest.Digest { return digest.FromString(s) }

// tag makes a tag pushed age ago (age < 0: time unknown).
func tag(name string, age time.Duration) Tag {
	t := Tag{Name: name, Digest: dg(name)}
	if age >= 0 {
		t.Time = now.Add(-age)
	}
	return t
}

func mustParse(t *testing.T, doc string) *Policy {
	t.Helper()
	p, err := Parse([]byte(doc), "policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// verdicts renders a decision as "name=reason" lines, newest first.
func verdicts(d RepositoryDecision) []string {
	var out []string
	for _, t := range d.Tags {
		out = append(out, t.Name+"="+t.Reason)
	}
	return out
}

func TestDecide(t *testing.T) {
	const h = time.Hour
	cases := []struct {
		name   string
		policy string
		repo   string
		grace  time.Duration
		tags   []Tag
		want   []string // name=reason, newest first
		rule   int
	}{
		{
			name:   "newest N of a glob",
			policy: "rules:\n  - repositories: [app]\n    keep:\n      - tags: [\"v*\"]\n        newest: 2\n",
			repo:   "app",
			tags:   []Tag{tag("v1", 5*h), tag("v3", 3*h), tag("v2", 4*h), tag("dev", 1*h), tag("v4", 2*h)},
			want: []string{`dev=deleted: no keep clause matched`, `v4=kept: newest 2 of "v*"`, `v3=kept: newest 2 of "v*"`,
				`v2=deleted: no keep clause matched`, `v1=deleted: no keep clause matched`},
			rule: 1,
		},
		{
			name:   "newest N without patterns counts every tag",
			policy: "rules:\n  - repositories: [app]\n    keep:\n      - newest: 1\n",
			repo:   "app",
			tags:   []Tag{tag("old", 2*h), tag("new", 1*h)},
			want:   []string{`new=kept: newest 1`, `old=deleted: no keep clause matched`},
			rule:   1,
		},
		{
			name:   "equal times: the name that sorts last counts as newer",
			policy: "rules:\n  - repositories: [app]\n    keep:\n      - newest: 2\n",
			repo:   "app",
			tags:   []Tag{tag("b", h), tag("a", h), tag("c", h), tag("z", 2*h)},
			want:   []string{`c=kept: newest 2`, `b=kept: newest 2`, `a=deleted: no keep clause matched`, `z=deleted: no keep clause matched`},
			rule:   1,
		},
		{
			name:   "every tag matching a glob, alternatives included",
			policy: "rules:\n  - repositories: [app]\n    keep:\n      - tags: [latest, \"{stable,main}\"]\n",
			repo:   "app",
			tags:   []Tag{tag("latest", 9*h), tag("main", 8*h), tag("stable-1", 7*h), tag("stable", 6*h)},
			want: []string{`stable=kept: matches "{stable,main}"`, `stable-1=deleted: no keep clause matched`,
				`main=kept: matches "{stable,main}"`, `latest=kept: matches "latest"`},
			rule: 1,
		},
		{
			name:   "regexp matches anywhere unless anchored",
			policy: "rules:\n  - repositories: [app]\n    keep:\n      - tags: [\"re:^v[0-9]+$\", \"re:rc\"]\n",
			repo:   "app",
			tags:   []Tag{tag("v10", 4*h), tag("v1.0", 3*h), tag("x-rc1", 2*h), tag("V2", h)},
			want: []string{`V2=deleted: no keep clause matched`, `x-rc1=kept: matches "re:rc"`,
				`v1.0=deleted: no keep clause matched`, `v10=kept: matches "re:^v[0-9]+$"`},
			rule: 1,
		},
		{
			name:   "pushed_within: strictly younger than the limit",
			policy: "rules:\n  - repositories: [app]\n    keep:\n      - pushed_within: 720h\n",
			repo:   "app",
			tags:   []Tag{tag("young", 720*h-time.Second), tag("edge", 720*h), tag("old", 721*h)},
			want:   []string{`young=kept: pushed within 720h`, `edge=deleted: no keep clause matched`, `old=deleted: no keep clause matched`},
			rule:   1,
		},
		{
			name:   "pushed_within restricted to patterns",
			policy: "rules:\n  - repositories: [app]\n    keep:\n      - tags: [\"pr-*\"]\n        pushed_within: 24h\n",
			repo:   "app",
			tags:   []Tag{tag("pr-1", h), tag("main", 2*h), tag("pr-0", 30*h)},
			want: []string{`pr-1=kept: matches "pr-*", pushed within 24h`, `main=deleted: no keep clause matched`,
				`pr-0=deleted: no keep clause matched`},
			rule: 1,
		},
		{
			name:   "newest and pushed_within in one clause: either keeps",
			policy: "rules:\n  - repositories: [app]\n    keep:\n      - tags: [\"v*\"]\n        newest: 1\n        pushed_within: 10h\n",
			repo:   "app",
			tags:   []Tag{tag("v3", h), tag("v2", 5*h), tag("v1", 50*h), tag("x", 2*h)},
			want: []string{`v3=kept: newest 1 of "v*"`, `x=deleted: no keep clause matched`, `v2=kept: matches "v*", pushed within 10h`,
				`v1=deleted: no keep clause matched`},
			rule: 1,
		},
		{
			name:   "any clause keeps; the first that keeps is named",
			policy: "rules:\n  - repositories: [app]\n    keep:\n      - tags: [\"v*\"]\n        newest: 1\n      - tags: [\"v2\", \"v9\"]\n      - newest: 3\n",
			repo:   "app",
			tags:   []Tag{tag("v9", h), tag("v2", 2*h), tag("v1", 3*h), tag("v0", 4*h)},
			want: []string{`v9=kept: newest 1 of "v*"`, `v2=kept: matches "v2"`, `v1=kept: newest 3`,
				`v0=deleted: no keep clause matched`},
			rule: 1,
		},
		{
			name:   "the grace keeps what no clause keeps, strictly younger than it",
			policy: "rules:\n  - repositories: [app]\n    keep:\n      - tags: [keep]\n",
			repo:   "app",
			grace:  2 * h,
			tags:   []Tag{{Name: "future", Digest: dg("f"), Time: now.Add(time.Minute)}, tag("fresh", h), tag("edge", 2*h), tag("keep", 3*h), tag("old", 4*h)},
			want: []string{`future=kept: younger than the grace period (2h)`, `fresh=kept: younger than the grace period (2h)`,
				`edge=deleted: no keep clause matched`, `keep=kept: matches "keep"`, `old=deleted: no keep clause matched`},
			rule: 1,
		},
		{
			name:   "a tag of unknown time is kept and takes no place among the newest",
			policy: "rules:\n  - repositories: [app]\n    keep:\n      - newest: 1\n",
			repo:   "app",
			tags:   []Tag{tag("zzz", -1), tag("b", 2*h), tag("a", 3*h)},
			want:   []string{`b=kept: newest 1`, `a=deleted: no keep clause matched`, `zzz=kept: its time is unknown (current link unreadable)`},
			rule:   1,
		},
		{
			name: "the first rule that matches governs",
			policy: "rules:\n  - repositories: [\"team-a/legacy/**\"]\n    keep:\n      - tags: [\"*\"]\n" +
				"  - repositories: [\"team-a/**\"]\n    keep:\n      - newest: 1\n",
			repo: "team-a/legacy/app",
			tags: []Tag{tag("b", h), tag("a", 2*h)},
			want: []string{`b=kept: matches "*"`, `a=kept: matches "*"`},
			rule: 1,
		},
		{
			name: "a later rule governs what earlier ones do not match",
			policy: "rules:\n  - repositories: [\"team-a/legacy/**\"]\n    keep:\n      - tags: [\"*\"]\n" +
				"  - repositories: [\"team-a/**\"]\n    keep:\n      - newest: 1\n",
			repo: "team-a/x/y",
			tags: []Tag{tag("b", h), tag("a", 2*h)},
			want: []string{`b=kept: newest 1`, `a=deleted: no keep clause matched`},
			rule: 2,
		},
		{
			name:   "no rule matches: every tag is kept",
			policy: "rules:\n  - repositories: [\"tools/*\"]\n    keep:\n      - newest: 1\n",
			repo:   "tools/x/y",
			tags:   []Tag{tag("b", h), tag("a", 2*h)},
			want:   []string{`b=` + ReasonNoRule, `a=` + ReasonNoRule},
			rule:   0,
		},
		{
			name:   "a digest shared by a kept and a deleted tag: only the tag is judged",
			policy: "rules:\n  - repositories: [app]\n    keep:\n      - tags: [stable]\n",
			repo:   "app",
			tags:   []Tag{{Name: "stable", Digest: dg("img"), Time: now.Add(-3 * h)}, {Name: "v1", Digest: dg("img"), Time: now.Add(-3 * h)}},
			want:   []string{`v1=deleted: no keep clause matched`, `stable=kept: matches "stable"`},
			rule:   1,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := mustParse(t, c.policy)
			d, err := p.Decide(c.repo, c.tags, Options{Now: now, Grace: c.grace})
			if err != nil {
				t.Fatal(err)
			}
			if got := verdicts(d); !slices.Equal(got, c.want) {
				t.Errorf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(c.want, "\n  "))
			}
			if d.Rule != c.rule || d.Governed() != (c.rule > 0) {
				t.Errorf("rule %d, want %d", d.Rule, c.rule)
			}
			kept, deleted := 0, 0
			for _, tg := range d.Tags {
				if tg.Keep != strings.HasPrefix(tg.Reason, "kept: ") {
					t.Errorf("%s: keep %v but reason %q", tg.Name, tg.Keep, tg.Reason)
				}
				if tg.Keep {
					kept++
				} else {
					deleted++
				}
				if tg.Digest != c.tags[slices.IndexFunc(c.tags, func(x Tag) bool { return x.Name == tg.Name })].Digest {
					t.Errorf("%s: digest changed", tg.Name)
				}
			}
			if d.Kept != kept || d.Deleted != deleted || len(d.DeletedTags()) != deleted {
				t.Errorf("counts %d kept %d deleted, tags say %d and %d", d.Kept, d.Deleted, kept, deleted)
			}
		})
	}
}

func TestDecideNamesRuleAndPattern(t *testing.T) {
	p := mustParse(t, "rules:\n  - repositories: [x]\n    keep: []\n    allow_empty: true\n"+
		"  - repositories: [\"other\", \"team-a/**\"]\n    keep:\n      - newest: 1\n      - tags: [main]\n")
	d, err := p.Decide("team-a/app", []Tag{tag("main", 5*time.Hour), tag("new", time.Hour)}, Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if d.Rule != 2 || d.RuleLine != 5 || d.Pattern != "team-a/**" || d.AllowEmpty {
		t.Errorf("decision names rule %d line %d pattern %q allow_empty %v", d.Rule, d.RuleLine, d.Pattern, d.AllowEmpty)
	}
	if d.Tags[0].Clause != 1 || d.Tags[1].Clause != 2 {
		t.Errorf("clauses: %+v", d.Tags)
	}
}

func TestRepositoryGlobs(t *testing.T) {
	p := mustParse(t, "rules:\n  - repositories: [\"team-a/**\"]\n    keep: []\n  - repositories: [\"tools/*\"]\n    keep: []\n")
	for repo, rule := range map[string]int{
		"team-a": 1, "team-a/x": 1, "team-a/x/y": 1, "team-ab/x": 0,
		"tools/x": 2, "tools/x/y": 0, "tools": 0, "x/tools/y": 0,
	} {
		r, _ := p.Govern(repo)
		got := 0
		if r != nil {
			got = r.Number
		}
		if got != rule {
			t.Errorf("%s: governed by rule %d, want %d", repo, got, rule)
		}
	}
}

func TestDecideRefusesToEmptyARepository(t *testing.T) {
	const policy = "rules:\n  - repositories: [\"scratch/*\"]\n    keep:\n      - tags: [keep]\n"
	tags := []Tag{tag("a", 3*time.Hour), tag("b", 4*time.Hour)}

	p := mustParse(t, policy)
	d, err := p.Decide("scratch/app", tags, Options{Now: now})
	var empty *EmptyRepositoryError
	if !errors.As(err, &empty) {
		t.Fatalf("want *EmptyRepositoryError, got %v", err)
	}
	if empty.Repository != "scratch/app" || empty.Rule != 1 || empty.Tags != 2 || !strings.Contains(err.Error(), `repository "scratch/app"`) ||
		!strings.Contains(err.Error(), "allow_empty: true") {
		t.Errorf("error %+v: %v", empty, err)
	}
	if d.Deleted != 2 || d.Repository != "scratch/app" {
		t.Errorf("the refused decision is still explained: %+v", d)
	}

	// The grace keeping one tag means the repository does not go empty.
	if _, err := p.Decide("scratch/app", append(tags, tag("c", time.Minute)), Options{Now: now, Grace: time.Hour}); err != nil {
		t.Errorf("a young tag stays, so no refusal: %v", err)
	}
	// A repository without tags loses nothing.
	if _, err := p.Decide("scratch/app", nil, Options{Now: now}); err != nil {
		t.Errorf("no tags: %v", err)
	}
	// allow_empty: true lets it go.
	p = mustParse(t, policy+"    allow_empty: true\n")
	if d, err := p.Decide("scratch/app", tags, Options{Now: now}); err != nil || d.Deleted != 2 {
		t.Errorf("allow_empty: %+v, %v", d, err)
	}
}

func TestDecideNeedsTheClock(t *testing.T) {
	p := mustParse(t, issueExample)
	if _, err := p.Decide("team-a/x", []Tag{tag("a", time.Hour)}, Options{}); !errors.Is(err, ErrNoTime) {
		t.Errorf("want ErrNoTime, got %v", err)
	}
}

func TestCheckFraction(t *testing.T) {
	p := mustParse(t, "rules:\n  - repositories: [gov]\n    keep:\n      - newest: 1\n")
	var decisions []RepositoryDecision
	for _, repo := range []string{"gov", "free"} {
		var tags []Tag
		for i := range 5 {
			tags = append(tags, tag(fmt.Sprint("t", i), time.Duration(i+1)*time.Hour))
		}
		d, err := p.Decide(repo, tags, Options{Now: now})
		if err != nil {
			t.Fatal(err)
		}
		decisions = append(decisions, d)
	}
	// 4 of 10 tags go: the ungoverned repository's tags count in the total.
	cases := []struct {
		max    float64
		refuse bool
	}{{0.5, false}, {0.4, false}, {0.39, true}, {0, false}}
	for _, c := range cases {
		err := CheckFraction(decisions, c.max)
		var fe *FractionError
		if errors.As(err, &fe) != c.refuse {
			t.Errorf("max %v: %v", c.max, err)
		}
		if c.refuse && (fe.Deleted != 4 || fe.Total != 10 || !strings.Contains(err.Error(), "4 of 10 tags (40%)")) {
			t.Errorf("max %v: %+v %v", c.max, fe, err)
		}
	}
	if err := CheckFraction(nil, 0.1); err != nil {
		t.Errorf("no tags: %v", err)
	}
}

// TestComplementRegexp proves the docs' spelling of "every tag not
// starting with prod" (what ECR keeps outside a tagPrefixList rule).
func TestComplementRegexp(t *testing.T) {
	p := mustParse(t, "rules:\n  - repositories: [app]\n    keep:\n      - tags: [\"re:^(?:[^p]|p(?:[^r]|$)|pr(?:[^o]|$)|pro(?:[^d]|$))\"]\n")
	c := p.Rules[0].Keep[0]
	for name, want := range map[string]bool{
		"prod": false, "prod-1": false, "production": false,
		"p": true, "pr": true, "pro": true, "prxd": true, "v1": true, "pod": true, "pro-d": true, "xprod": true,
	} {
		if _, got := c.match(name); got != want {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
}

func TestReferrerTagsFollowTheirSubject(t *testing.T) {
	const h = time.Hour
	img := func(name string, age time.Duration, content string) Tag {
		return Tag{Name: name, Digest: dg(content), Time: now.Add(-age)}
	}
	ref := func(subject, suffix string, age time.Duration) Tag {
		return Tag{Name: "sha256-" + dg(subject).Encoded() + suffix, Digest: dg(subject + suffix), Time: now.Add(-age)}
	}
	short := func(content string) string { return "sha256:" + dg(content).Encoded()[:12] }
	p := mustParse(t, "rules:\n  - repositories: [app]\n    keep:\n      - tags: [\"v*\", \"sha256-*\"]\n        newest: 1\n")
	tags := []Tag{
		img("v2", 5*h, "image-2"),
		img("v1", 6*h, "image-1"),
		ref("image-2", ".sig", 1*h),       // newer than v2: takes no place among the newest
		ref("image-1", ".sig", 2*h),       // its image goes, so it goes
		ref("image-2", ".sbom", 3*h),      // an SBOM of the kept image
		ref("image-2"+".sbom", ".sig", h), // the SBOM's signature: kept through the SBOM
		ref("image-1"+".sbom", ".sig", h), // a signature of a deleted image's SBOM tag that is not here: not judged
		ref("child", ".att", 7*h),         // refers to a manifest no tag names (an index child)
		ref("image-1", "", 8*h),           // referrers index tag of the deleted image
	}
	d, err := p.Decide("app", tags, Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"v2":         `kept: newest 1 of "v*", "sha256-*"`,
		"v1":         ReasonNoClause,
		tags[2].Name: `kept: refers to ` + short("image-2") + `, which kept tag "v2" names`,
		tags[3].Name: `deleted: refers to ` + short("image-1") + `, whose tags are all deleted`,
		tags[4].Name: `kept: refers to ` + short("image-2") + `, which kept tag "v2" names`,
		tags[5].Name: `kept: refers to ` + short("image-2.sbom") + `, which kept tag "` + tags[4].Name + `" names`,
		tags[6].Name: `kept: refers to ` + short("image-1.sbom") + `, which no tag here names (not judged)`,
		tags[7].Name: `kept: refers to ` + short("child") + `, which no tag here names (not judged)`,
		tags[8].Name: `deleted: refers to ` + short("image-1") + `, whose tags are all deleted`,
	}
	for _, td := range d.Tags {
		if td.Reason != want[td.Name] {
			t.Errorf("%s: %q, want %q", td.Name, td.Reason, want[td.Name])
		}
	}
	if d.Kept != 6 || d.Deleted != 3 {
		t.Errorf("%d kept, %d deleted", d.Kept, d.Deleted)
	}

	// The grace keeps a young signature of a deleted image, and what
	// refers to that signature with it.
	young := []Tag{img("v1", 6*h, "image-1"), img("v0", 7*h, "image-0"), ref("image-0", ".sig", h/2), ref("image-0.sig", ".sig", 5*h)}
	d, err = p.Decide("app", young, Options{Now: now, Grace: h})
	if err != nil {
		t.Fatal(err)
	}
	if got := verdicts(d); !slices.Equal(got, []string{
		young[2].Name + "=kept: younger than the grace period (1h)",
		young[3].Name + `=kept: refers to ` + short("image-0.sig") + `, which kept tag "` + young[2].Name + `" names`,
		`v1=kept: newest 1 of "v*", "sha256-*"`,
		"v0=" + ReasonNoClause,
	}) {
		t.Errorf("got %q", got)
	}

	// Signatures do not save a repository from emptying: they follow.
	p = mustParse(t, "rules:\n  - repositories: [app]\n    keep:\n      - tags: [keep]\n")
	_, err = p.Decide("app", []Tag{img("v1", 6*h, "image-1"), ref("image-1", ".sig", 5*h)}, Options{Now: now})
	var empty *EmptyRepositoryError
	if !errors.As(err, &empty) || empty.Tags != 2 {
		t.Errorf("want an *EmptyRepositoryError for 2 tags, got %v", err)
	}
}

func TestReferredDigest(t *testing.T) {
	hex := dg("x").Encoded()
	long := strings.Repeat("0f", 64)
	for name, want := range map[string]bool{
		"sha256-" + hex: true, "sha256-" + hex + ".sig": true, "sha256-" + hex + ".att": true, "sha512-" + long + ".sbom": true,
		"sha256-" + hex[:63]: false, "sha256-" + strings.ToUpper(hex): false, "sha384-" + hex: false, "sha256-" + hex + "x": false,
		"sha256": false, "v1": false, "sha256-": false,
	} {
		if _, got := referredDigest(name); got != want {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
}
