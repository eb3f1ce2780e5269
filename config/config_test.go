package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// testSchema mirrors the CLI's shape: global flags at the top, gc's flags
// in a section, a nested subcommand.
func testSchema() (*Section, *pflag.FlagSet, *pflag.FlagSet) {
	global := pflag.NewFlagSet("regsweep", pflag.ContinueOnError)
	global.Int("concurrency", 32, "")
	global.Float64("rate-limit", 0, "")
	global.String("s3-secret-key", "", "")
	global.String("s3-region", "", "")
	global.Bool("quiet", false, "")
	global.StringSlice("labels", nil, "")
	global.StringToString("annotations", nil, "")
	global.Uint("retries", 3, "")
	gc := pflag.NewFlagSet("gc", pflag.ContinueOnError)
	gc.Duration("grace", 2*time.Hour, "")
	gc.Bool("delete", false, "")
	check := pflag.NewFlagSet("check", pflag.ContinueOnError)
	check.String("format", "text", "")
	flags := func(fs *pflag.FlagSet) map[string]*pflag.Flag {
		m := map[string]*pflag.Flag{}
		fs.VisitAll(func(f *pflag.Flag) { m[f.Name] = f })
		return m
	}
	s := &Section{Flags: flags(global), Sections: map[string]*Section{
		"gc": {Flags: flags(gc)},
		"config": {Flags: map[string]*pflag.Flag{}, Sections: map[string]*Section{
			"check": {Flags: flags(check)},
		}},
	}}
	return s, global, gc
}

func applyAll(t *testing.T, f *File) {
	t.Helper()
	for _, s := range f.Settings() {
		if err := s.Apply(); err != nil {
			t.Fatalf("applying %s: %v", s.Key, err)
		}
	}
}

func TestParseSetsEveryTypeAndMarksChanged(t *testing.T) {
	schema, global, gc := testSchema()
	f, err := Parse([]byte(`
concurrency: &n 0x10
rate-limit: 2.5
s3-secret-key: 012345  # digits stay a string, as written
s3-region: ~           # empty: left at the default
quiet: True
labels: [a, b]
annotations: {team: infra, env: prod}
retries: *n            # aliases resolve
gc:
  grace: 90m
  delete: false
config:
  check:
    format: json
`), "regsweep.yaml", schema)
	if err != nil {
		t.Fatal(err)
	}
	applyAll(t, f)
	want := map[string]string{"concurrency": "16", "rate-limit": "2.5", "s3-secret-key": "012345", "quiet": "true",
		"labels": "[a,b]", "annotations": "[env=prod,team=infra]", "retries": "16", "s3-region": ""}
	for name, v := range want {
		if got := global.Lookup(name).Value.String(); got != v {
			t.Errorf("%s = %q, want %q", name, got, v)
		}
	}
	if global.Lookup("s3-region").Changed {
		t.Error("a null value marked s3-region changed")
	}
	if !global.Lookup("concurrency").Changed || !gc.Lookup("grace").Changed {
		t.Error("applied flags are not marked changed")
	}
	if got := gc.Lookup("grace").Value.String(); got != "1h30m0s" {
		t.Errorf("gc.grace = %s", got)
	}
	s, ok := f.Lookup(gc.Lookup("grace"))
	if !ok || s.Key != "gc.grace" || s.Line != 11 {
		t.Errorf("gc.grace setting = %+v, %v; want key gc.grace at line 11", s, ok)
	}
	if _, ok := f.Lookup(gc.Lookup("delete")); !ok {
		t.Error("gc.delete: false was not kept as a setting")
	}
}

func TestParseErrorsNameKeyLineAndType(t *testing.T) {
	cases := []struct {
		name, doc string
		want      []string
	}{
		{"unknown top-level key", "concurrency: 4\nconcurency: 3\n", []string{"regsweep.yaml:2", `concurency`, "unknown key", `did you mean "concurrency"`}},
		{"unknown command key", "gc:\n  grace: 1h\n  gracee: 2h\n", []string{":3", "gc.gracee", "unknown key", `"grace"`}},
		{"unknown command", "gcc:\n  grace: 1h\n", []string{":1", "gcc", "unknown key"}},
		{"command flag at the top", "grace: 1h\n", []string{":1", "grace", "unknown key"}},
		{"unknown nested key", "config:\n  check:\n    fromat: json\n", []string{":3", "config.check.fromat", "unknown key"}},
		{"bool as string", "quiet: \"yes\"\n", []string{":1", "quiet", "expected a boolean", "got a string"}},
		{"int as string", "concurrency: many\n", []string{"concurrency", "expected an integer", "got a string"}},
		{"int as float", "concurrency: 1.5\n", []string{"concurrency", "expected an integer", "got a number"}},
		{"negative uint", "retries: -1\n", []string{"retries", "expected an integer in range for uint"}},
		{"bad duration", "gc:\n  grace: 2 hours\n", []string{":2", "gc.grace", "expected a duration"}},
		{"duration as mapping", "gc:\n  grace: {h: 2}\n", []string{"gc.grace", "expected a duration", "got a mapping"}},
		{"string as list", "s3-region: [a]\n", []string{"s3-region", "expected a string", "got a list"}},
		{"section as scalar", "gc: 3\n", []string{"gc", "expected a mapping", "got an integer"}},
		{"duplicate key", "gc:\n  grace: 1h\n  grace: 2h\n", []string{":3", "gc.grace", "given twice (first at line 2)"}},
		{"top level is a list", "- a\n", []string{"expected a mapping", "got a list"}},
		{"not YAML", "gc: [\n", []string{"regsweep.yaml", "not valid YAML"}},
		{"two documents", "quiet: true\n---\nquiet: false\n", []string{"more than one YAML document"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			schema, _, _ := testSchema()
			_, err := Parse([]byte(c.doc), "regsweep.yaml", schema)
			if err == nil {
				t.Fatalf("no error for %q", c.doc)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Errorf("error %T is not a *config.Error", err)
			}
		})
	}
}

func TestErrorsNeverHoldTheValue(t *testing.T) {
	schema, _, _ := testSchema()
	_, err := Parse([]byte("s3-secret-key: {nested: hunter2secret}\n"), "f.yaml", schema)
	if err == nil || strings.Contains(err.Error(), "hunter2secret") {
		t.Fatalf("error %v: want one without the value", err)
	}
	_, err = Parse([]byte("gc:\n  grace: hunter2secret\n"), "f.yaml", schema)
	if err == nil || strings.Contains(err.Error(), "hunter2secret") {
		t.Fatalf("error %v: want one without the value", err)
	}
}

func TestEmptyAndCommentOnlyFiles(t *testing.T) {
	for _, doc := range []string{"", "# nothing set\n", "gc:\n", "---\n"} {
		schema, _, _ := testSchema()
		f, err := Parse([]byte(doc), "f.yaml", schema)
		if err != nil {
			t.Errorf("%q: %v", doc, err)
			continue
		}
		if n := len(f.Settings()); n != 0 {
			t.Errorf("%q: %d settings", doc, n)
		}
	}
}

func TestRedactValue(t *testing.T) {
	cases := []struct{ name, value, secret string }{
		{"s3-secret-key", "abcd1234", "abcd1234"},
		{"s3-access-key", "AKIAX", "AKIAX"},
		{"swift-password", "pw-1", "pw-1"},
		{"api-token", "tok", "tok"},
		{"harbor-db", "postgres://harbor:dbpass99@db:5432/registry?sslmode=disable", "dbpass99"},
		{"harbor-redis", "redis://:redispass77@redis:6379/0", "redispass77"},
		{"pushgateway", "https://tokenuser123@push.example/", "tokenuser123"},
		{"harbor-db", "host=db user=harbor password=kwpass55 dbname=registry", "kwpass55"},
		{"harbor-db", "host=db password='quoted pass66'", "quoted pass66"},
		{"webhook", "https://x.example/hook?token=qtok44&a=b", "qtok44"},
	}
	for _, c := range cases {
		got := RedactValue(c.name, c.value)
		if strings.Contains(got, c.secret) || !strings.Contains(got, Redacted) {
			t.Errorf("RedactValue(%q, %q) = %q", c.name, c.value, got)
		}
	}
	for _, plain := range [][2]string{{"s3-endpoint", "http://127.0.0.1:9000"}, {"concurrency", "32"}, {"harbor-db", "postgres://db:5432/registry"}} {
		if got := RedactValue(plain[0], plain[1]); got != plain[1] {
			t.Errorf("RedactValue(%q, %q) = %q: nothing secret in it", plain[0], plain[1], got)
		}
	}
	if got := RedactValue("s3-secret-key", ""); got != "" {
		t.Errorf("an empty secret shows as %q; want empty (not set)", got)
	}
}

// A secret that contains another is hidden whole, whichever comes first
// in the list (an access key can be the start of a secret key).
func TestScrubHidesASecretThatContainsAnother(t *testing.T) {
	for _, secrets := range [][]string{{"AKIA1234", "AKIA1234-rest-of-secret"}, {"AKIA1234-rest-of-secret", "AKIA1234"}} {
		if got := Scrub("key AKIA1234-rest-of-secret, id AKIA1234", secrets); got != "key <redacted>, id <redacted>" {
			t.Errorf("Scrub with %q: %q", secrets, got)
		}
	}
}

func TestScrubErrorHidesAndUnwraps(t *testing.T) {
	cause := errors.New("auth to http://u:Passw0rd-x@host failed, key Passw0rd-x; id abc")
	err := ScrubError(cause, []string{"Passw0rd-x", "abc"})
	if got := err.Error(); got != "auth to http://u:<redacted>@host failed, key <redacted>; id abc" {
		t.Errorf("scrubbed: %q (values shorter than 4 are left)", got)
	}
	if !errors.Is(err, cause) {
		t.Error("the scrubbed error does not unwrap to its cause")
	}
	if ScrubError(nil, []string{"x"}) != nil {
		t.Error("no error scrubbed is an error")
	}
}
