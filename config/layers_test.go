package config

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// testTree mirrors the CLI's shape: persistent global flags on the root, a
// command with flags, a nested subcommand, a command exempt from the
// configuration and a hidden one.
func testTree(search ...string) Tree {
	root := &cobra.Command{Use: "prog", SilenceErrors: true, SilenceUsage: true}
	pf := root.PersistentFlags()
	pf.String(FileFlag, "", "the file")
	pf.Int("concurrency", 32, "requests  in\n flight")
	pf.String("name", "", "a name")
	pf.Int("api-token-ttl", 0, "a number, secret by its name")
	pf.String("mem", "", "hidden")
	pf.MarkHidden("mem")
	noop := func(*cobra.Command, []string) {}
	gc := &cobra.Command{Use: "gc", Short: "Collect", Run: noop}
	gc.Flags().Duration("grace", 2*time.Hour, "keep younger")
	gc.Flags().StringToString("labels", nil, "labels")
	cfg := &cobra.Command{Use: "config", Short: "Check or print"}
	check := &cobra.Command{Use: "check", Short: "Validate", Run: noop}
	check.Flags().String("format", "text", "output format")
	cfg.AddCommand(check)
	version := &cobra.Command{Use: "version", Short: "Version", Run: noop}
	version.Flags().Bool("short", false, "short")
	hidden := &cobra.Command{Use: "debug", Hidden: true, Run: noop}
	hidden.Flags().Bool("dump", false, "dump")
	root.AddCommand(gc, cfg, version, hidden)
	return Tree{Root: root, Search: search, Exempt: []string{"version"}}
}

// execute runs args through the tree with Resolve as the root's
// PersistentPreRunE, as the CLI does.
func execute(t *testing.T, tree Tree, args ...string) (*Layers, error) {
	t.Helper()
	var layers *Layers
	tree.Root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) (err error) {
		layers, err = tree.Resolve(cmd)
		return err
	}
	tree.Root.SetArgs(args)
	err := tree.Root.Execute()
	return layers, err
}

func byKey(t *testing.T, l *Layers) map[string]Resolved {
	t.Helper()
	all, err := l.ResolveAll()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]Resolved{}
	for _, r := range all {
		out[r.Name] = r
	}
	return out
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "regsweep.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestResolvePrecedence(t *testing.T) {
	t.Setenv(FileEnv, "")
	os.Unsetenv(FileEnv)
	file := writeFile(t, "concurrency: 7\nname: from-file\ngc:\n  grace: 3h\nconfig:\n  check:\n    format: json\n")
	t.Setenv("REGSWEEP_NAME", "from-env")
	t.Setenv("REGSWEEP_GRACE", "4h")
	tree := testTree(file)
	l, err := execute(t, tree, "gc", "--concurrency", "11")
	if err != nil {
		t.Fatal(err)
	}
	if l.File == nil || l.File.Path != file || l.From != "search" {
		t.Fatalf("file %+v from %q, want %s from search", l.File, l.From, file)
	}
	// The running command's flags are resolved, the others not yet.
	check, _, _ := tree.Root.Find([]string{"config", "check"})
	format := check.Flags().Lookup("format")
	if format.Changed || format.Value.String() != "text" {
		t.Errorf("config check's format was resolved for gc: %s", format.Value)
	}
	got := byKey(t, l)
	for key, want := range map[string]struct {
		value string
		Origin
	}{
		"concurrency":         {"11", Origin{Source: FromFlag}},
		"name":                {"from-env", Origin{Source: FromEnv, Env: "REGSWEEP_NAME"}},
		"gc.grace":            {"4h0m0s", Origin{Source: FromEnv, Env: "REGSWEEP_GRACE"}},
		"config.check.format": {"json", Origin{Source: FromFile, Line: 7}},
		"api-token-ttl":       {"0", Origin{Source: FromDefault}},
	} {
		r := got[key]
		if r.Flag == nil || r.Flag.Value.String() != want.value || r.Origin != want.Origin {
			t.Errorf("%s = %+v, want %s from %+v", key, r, want.value, want.Origin)
		}
		if (r.Source == FromFile || r.Source == FromEnv) != (r.Flag != nil && r.Flag.Changed && r.Source != FromFlag) {
			t.Errorf("%s from %s: changed %v", key, r.Source, r.Flag.Changed)
		}
	}
	if r := got["config.check.format"]; r.Command != "config check" {
		t.Errorf("config.check.format's command %q", r.Command)
	}
	if r := got["concurrency"]; r.Command != "" {
		t.Errorf("a global flag's command %q", r.Command)
	}
	if _, ok := got["mem"]; !ok {
		t.Error("a hidden flag is not a key: it can be set, only the template leaves it out")
	}
	for _, k := range []string{"config", "help", "version.short", "debug.dump"} {
		if _, ok := got[k]; ok {
			t.Errorf("%s is a key", k)
		}
	}
}

func TestResolveFindsTheFile(t *testing.T) {
	first, second := writeFile(t, "concurrency: 1\n"), writeFile(t, "concurrency: 2\n")
	named := writeFile(t, "concurrency: 3\n")
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	cases := []struct {
		name      string
		env       *string
		args      []string
		search    []string
		file      string // "" for none
		from      string
		errSubstr string
	}{
		{"the first of the search that exists", nil, nil, []string{missing, second, first}, second, "search", ""},
		{"none found", nil, nil, []string{missing}, "", "", ""},
		{"REGSWEEP_CONFIG over the search", &named, nil, []string{first}, named, FileEnv, ""},
		{"--config over REGSWEEP_CONFIG", &first, []string{"--config", named}, nil, named, "--config", ""},
		{"--config= is no file", &first, []string{"--config="}, []string{second}, "", "--config", ""},
		{"REGSWEEP_CONFIG= is no file", new(string), nil, []string{second}, "", FileEnv, ""},
		{"a named file must exist", &missing, nil, nil, "", "", "missing.yaml"},
		{"a search path that cannot be read is an error", nil, nil, []string{filepath.Join(first, "regsweep.yaml"), second}, "", "", "config file: "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(FileEnv, "")
			if c.env == nil {
				os.Unsetenv(FileEnv)
			} else {
				t.Setenv(FileEnv, *c.env)
			}
			l, err := execute(t, testTree(c.search...), append([]string{"gc"}, c.args...)...)
			if c.errSubstr != "" {
				if err == nil || !strings.Contains(err.Error(), c.errSubstr) {
					t.Fatalf("error %v, want one saying %q", err, c.errSubstr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			path := ""
			if l.File != nil {
				path = l.File.Path
			}
			if path != c.file || (c.file != "" || c.from != "") && l.From != c.from {
				t.Errorf("file %q from %q, want %q from %q", path, l.From, c.file, c.from)
			}
		})
	}
}

func TestResolveErrors(t *testing.T) {
	t.Setenv(FileEnv, writeFile(t, "gc:\n  grace: 1h\n  gracee: 2h\n"))
	// The whole file is validated whatever the command.
	_, err := execute(t, testTree(), "config", "check")
	var fe *Error
	if !errors.As(err, &fe) || fe.Line != 3 || fe.Key != "gc.gracee" {
		t.Errorf("a bad key under gc, running config check: %v", err)
	}
	// A bad variable names itself; a secret's value is not repeated.
	t.Setenv(FileEnv, "")
	t.Setenv("REGSWEEP_CONCURRENCY", "lots")
	if _, err := execute(t, testTree(), "gc"); err == nil || !strings.HasPrefix(err.Error(), "REGSWEEP_CONCURRENCY: ") || !strings.Contains(err.Error(), `"lots"`) {
		t.Errorf("REGSWEEP_CONCURRENCY=lots: %v", err)
	}
	os.Unsetenv("REGSWEEP_CONCURRENCY")
	t.Setenv("REGSWEEP_API_TOKEN_TTL", "s3cr3t-value")
	if _, err := execute(t, testTree(), "gc"); err == nil || err.Error() != "REGSWEEP_API_TOKEN_TTL: not a valid int" {
		t.Errorf("a secret variable's bad value: %v", err)
	}
}

// help, version, completion and the rest must work whatever the
// configuration holds: they read none of it.
func TestExemptCommandsReadNothing(t *testing.T) {
	t.Setenv(FileEnv, writeFile(t, "nonsense: [\n"))
	t.Setenv("REGSWEEP_CONCURRENCY", "lots")
	tree := testTree()
	tree.Root.InitDefaultCompletionCmd()
	tree.Root.InitDefaultHelpCmd()
	for _, args := range [][]string{{"version"}, {"completion", "bash"}, {"help"}} {
		cmd, _, err := tree.Root.Find(args)
		if err != nil {
			t.Fatal(err)
		}
		if l, err := tree.Resolve(cmd); l != nil || err != nil {
			t.Errorf("%v: layers %v, error %v", args, l, err)
		}
	}
	// cobra makes its completion request commands as it executes.
	tree.Root.SetOut(io.Discard)
	for _, req := range []string{cobra.ShellCompRequestCmd, cobra.ShellCompNoDescRequestCmd} {
		if l, err := execute(t, tree, req, "gc", "--gr"); l != nil || err != nil {
			t.Errorf("%s: layers %v, error %v", req, l, err)
		}
	}
	if _, err := execute(t, tree, "gc"); err == nil {
		t.Error("gc ran with a broken file")
	}
	schema, err := tree.Schema()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"version", "completion", "help", "debug"} {
		if _, ok := schema.Sections[name]; ok {
			t.Errorf("the file has a section for %s", name)
		}
	}
}

func TestSchemaRefusesAFlagNamedLikeASubcommand(t *testing.T) {
	tree := testTree()
	tree.Root.PersistentFlags().Bool("gc", false, "clashes with the command")
	_, err := tree.Schema()
	var se *SchemaError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), `"prog" has a flag and a subcommand both named "gc"`) {
		t.Fatalf("schema: %v", err)
	}
	gc, _, _ := tree.Root.Find([]string{"gc"})
	if _, err := tree.Resolve(gc); !errors.As(err, &se) {
		t.Errorf("resolve: %v, want the schema error", err)
	}
}

func TestTemplate(t *testing.T) {
	var b strings.Builder
	if err := testTree().WriteTemplate(&b); err != nil {
		t.Fatal(err)
	}
	want := `# regsweep configuration: every key, commented out, at its default.
# Precedence: flags, then REGSWEEP_* variables, then this file, then defaults.
# Uncomment what you set. Prefer REGSWEEP_* variables (or a file only the job can read) for secrets.

# global flags
# a number, secret by its name
# api-token-ttl: 0
# requests in flight
# concurrency: 32
# a name
# name: ""

# Check or print
config:

  # Validate
  check:
    # output format
    # format: text

# Collect
gc:
  # keep younger
  # grace: 2h0m0s
  # labels
  # labels: {}
`
	if b.String() != want {
		t.Errorf("template:\n%s\nwant:\n%s", b.String(), want)
	}
}
