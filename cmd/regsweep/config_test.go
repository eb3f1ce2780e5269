package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/regsweep/regsweep/config"
)

// isolate keeps the machine's own configuration out of a test: no
// ./regsweep.yaml, no $XDG_CONFIG_HOME file, no REGSWEEP_CONFIG.
func isolate(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Chdir(dir)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "xdg"))
	t.Setenv(config.FileEnv, "") // restored after the test
	os.Unsetenv(config.FileEnv)
	return dir
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkReport runs config check --format json and decodes it.
func checkReport(t *testing.T, args ...string) configReport {
	t.Helper()
	stdout, stderr, code := run(t, append([]string{"config", "check", "--format", "json"}, args...)...)
	if code != 0 {
		t.Fatalf("config check exit %d: %s", code, stderr)
	}
	var rep configReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("config check output is not JSON: %v\n%s", err, stdout)
	}
	return rep
}

func (r configReport) flag(t *testing.T, key string) effectiveFlag {
	t.Helper()
	for _, f := range r.Flags {
		if f.Key == key {
			return f
		}
	}
	t.Fatalf("config check does not show %s", key)
	return effectiveFlag{}
}

func TestPrecedenceFlagEnvFileDefault(t *testing.T) {
	dir := isolate(t)
	// A global flag (concurrency) and a command flag (gc's grace), each
	// given by one more layer at every step.
	file := writeFile(t, dir, "regsweep.yaml", "concurrency: 7\ngc:\n  grace: 3h\n")
	steps := []struct {
		name          string
		env           map[string]string
		args          []string
		conc, grace   string
		cSrc, gSrc    string
		cLine, gLine  int
		useConfigFlag bool
	}{
		{name: "defaults", args: []string{"--config", ""}, conc: "32", grace: "2h0m0s", cSrc: config.FromDefault, gSrc: config.FromDefault},
		{name: "file", conc: "7", grace: "3h0m0s", cSrc: config.FromFile, gSrc: config.FromFile, cLine: 1, gLine: 3},
		{name: "env over file", env: map[string]string{"REGSWEEP_CONCURRENCY": "9", "REGSWEEP_GRACE": "4h"},
			conc: "9", grace: "4h0m0s", cSrc: config.FromEnv, gSrc: config.FromEnv},
		{name: "flag over env", env: map[string]string{"REGSWEEP_CONCURRENCY": "9", "REGSWEEP_GRACE": "4h"},
			args: []string{"--concurrency", "11"}, conc: "11", grace: "4h0m0s", cSrc: config.FromFlag, gSrc: config.FromEnv},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			for k, v := range s.env {
				t.Setenv(k, v)
			}
			rep := checkReport(t, s.args...)
			c, g := rep.flag(t, "concurrency"), rep.flag(t, "gc.grace")
			if c.Value != s.conc || c.Source != s.cSrc || c.Line != s.cLine {
				t.Errorf("concurrency = %+v, want %s from %s (line %d)", c, s.conc, s.cSrc, s.cLine)
			}
			if g.Value != s.grace || g.Source != s.gSrc || g.Line != s.gLine {
				t.Errorf("gc.grace = %+v, want %s from %s (line %d)", g, s.grace, s.gSrc, s.gLine)
			}
			if s.gSrc == config.FromEnv && g.Env != "REGSWEEP_GRACE" {
				t.Errorf("gc.grace from env names %q", g.Env)
			}
			if s.cSrc != config.FromDefault && rep.ConfigFile != "regsweep.yaml" {
				t.Errorf("config file %q, want the one found in the working directory (%s)", rep.ConfigFile, file)
			}
		})
	}
}

// The layers decide what a real command does, not only what check prints.
func TestPrecedenceDrivesARealCommand(t *testing.T) {
	dir := isolate(t)
	tree := sampleTree(t)
	missing := filepath.Join(dir, "missing")
	writeFile(t, dir, "regsweep.yaml", "fs-root: "+missing+"\ninventory:\n  format: json\n")

	// file alone: the missing root fails to open
	if _, stderr, code := run(t, "inventory"); code != exitStorage || !strings.Contains(stderr, missing) {
		t.Fatalf("file's fs-root: exit %d (%s), want %d naming %s", code, stderr, exitStorage, missing)
	}
	// env beats the file: the real tree, and the file's format still applies
	t.Setenv("REGSWEEP_FS_ROOT", tree)
	stdout, stderr, code := run(t, "inventory")
	if code != 0 || !json.Valid([]byte(stdout)) {
		t.Fatalf("env's fs-root with the file's json format: exit %d, %s\n%s", code, stderr, stdout)
	}
	// env beats the file for a command flag too
	t.Setenv("REGSWEEP_FORMAT", "text")
	if stdout, _, code := run(t, "inventory"); code != 0 || json.Valid([]byte(stdout)) {
		t.Fatalf("REGSWEEP_FORMAT=text did not beat the file's json (exit %d)", code)
	}
	// flags beat both
	if stdout, _, code := run(t, "inventory", "--format", "json"); code != 0 || !json.Valid([]byte(stdout)) {
		t.Fatalf("--format json did not beat REGSWEEP_FORMAT (exit %d)", code)
	}
	if _, stderr, code := run(t, "inventory", "--fs-root", missing+"2"); code != exitStorage || !strings.Contains(stderr, missing+"2") {
		t.Fatalf("--fs-root did not beat REGSWEEP_FS_ROOT: exit %d (%s)", code, stderr)
	}
}

func TestConfigFileErrorsNameTheKey(t *testing.T) {
	dir := isolate(t)
	cases := []struct{ doc, args, want string }{
		{"concurrency: 4\ngc:\n  grace: 1h\n  gracee: 2h\n", "gc", `:4: gc.gracee: unknown key (did you mean "grace"?)`},
		{"concurrency: 4\nfrobnicate: true\n", "inventory", ":2: frobnicate: unknown key"},
		{"concurrency: lots\n", "config check", ":1: concurrency: expected an integer, got a string"},
		{"audit:\n  verify: 1\n", "gc", ":2: audit.verify: expected a boolean (true or false), got an integer"},
		{"config: {check: {format: [json]}}\n", "config check", ":1: config.check.format: expected a string, got a list"},
	}
	for _, c := range cases {
		p := writeFile(t, dir, "bad.yaml", c.doc)
		args := append(strings.Fields(c.args), "--config", p)
		_, stderr, code := run(t, args...)
		if code != exitUsage || !strings.Contains(stderr, p+c.want) {
			t.Errorf("%s with %q: exit %d, stderr %q; want %d and %q", c.args, c.doc, code, stderr, exitUsage, p+c.want)
		}
	}
	// A file named explicitly must exist.
	_, stderr, code := run(t, "config", "check", "--config", filepath.Join(dir, "nope.yaml"))
	if code != exitUsage || !strings.Contains(stderr, "nope.yaml") {
		t.Errorf("missing --config file: exit %d, %s", code, stderr)
	}
	t.Setenv(config.FileEnv, filepath.Join(dir, "nope-env.yaml"))
	_, stderr, code = run(t, "config", "check")
	if code != exitUsage || !strings.Contains(stderr, "nope-env.yaml") {
		t.Errorf("missing REGSWEEP_CONFIG file: exit %d, %s", code, stderr)
	}
}

func TestConfigFileLocations(t *testing.T) {
	dir := isolate(t)
	xdg := writeFile(t, dir, "xdg/regsweep/regsweep.yaml", "concurrency: 2\n")
	if rep := checkReport(t); rep.ConfigFile != xdg || rep.flag(t, "concurrency").Value != "2" {
		t.Errorf("XDG file not used: %q", rep.ConfigFile)
	}
	writeFile(t, dir, "regsweep.yaml", "concurrency: 3\n")
	if rep := checkReport(t); rep.ConfigFile != "regsweep.yaml" || rep.flag(t, "concurrency").Value != "3" {
		t.Errorf("./regsweep.yaml does not come before the XDG file: %q", rep.ConfigFile)
	}
	named := writeFile(t, dir, "named.yaml", "concurrency: 4\n")
	t.Setenv(config.FileEnv, named)
	if rep := checkReport(t); rep.ConfigFile != named || rep.ConfigFrom != config.FileEnv || rep.flag(t, "concurrency").Value != "4" {
		t.Errorf("REGSWEEP_CONFIG not used: %+v", rep.ConfigFile)
	}
	other := writeFile(t, dir, "other.yaml", "concurrency: 5\n")
	if rep := checkReport(t, "--config", other); rep.ConfigFile != other || rep.flag(t, "concurrency").Value != "5" {
		t.Errorf("--config does not beat REGSWEEP_CONFIG: %q", rep.ConfigFile)
	}
	if rep := checkReport(t, "--config="); rep.ConfigFile != "" || rep.flag(t, "concurrency").Source != config.FromDefault {
		t.Errorf("--config= still read %q", rep.ConfigFile)
	}
}

func TestConfigCheckRedactsSecrets(t *testing.T) {
	dir := isolate(t)
	secrets := map[string]string{
		"file":     "FileSecretKey-5f1d",
		"env":      "EnvSwiftPassword-8a2c",
		"flag":     "FlagAccessKey-3b9e",
		"url":      "UrlPassword-7c4d",
		"registry": "RegistryEnvSecret-1e6f",
	}
	reg := writeFile(t, dir, "config.yml", "version: 0.1\nstorage:\n  s3:\n    region: us-east-1\n    bucket: frombase\n    accesskey: baseaccess\n")
	file := writeFile(t, dir, "regsweep.yaml", "registry-config: "+reg+"\ns3-secret-key: "+secrets["file"]+
		"\ns3-endpoint: http://minio:"+secrets["url"]+"@127.0.0.1:9000\ns3-bucket: fromfile\n")
	t.Setenv("REGSWEEP_SWIFT_PASSWORD", secrets["env"])
	t.Setenv("REGISTRY_STORAGE_S3_SECRETKEY", secrets["registry"])
	for _, format := range []string{"text", "json"} {
		stdout, stderr, code := run(t, "config", "check", "--config", file, "--format", format, "--s3-access-key", secrets["flag"])
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", format, code, stderr)
		}
		for from, s := range secrets {
			if strings.Contains(stdout+stderr, s) {
				t.Errorf("%s output shows the secret given by %s:\n%s", format, from, stdout)
			}
		}
		if n := strings.Count(stdout, "<redacted>"); n < 5 {
			t.Errorf("%s output redacts %d values, want at least 5 (3 flags, the URL, the storage's keys):\n%s", format, n, stdout)
		}
		// The file's bucket overrides the registry's config.yml.
		if !regexp.MustCompile(`"?bucket"?:?\s+"?fromfile`).MatchString(stdout) {
			t.Errorf("%s output does not show the file's bucket over config.yml's:\n%s", format, stdout)
		}
	}
	rep := checkReport(t, "--config", file, "--s3-access-key", secrets["flag"])
	for key, src := range map[string]string{"s3-secret-key": config.FromFile, "swift-password": config.FromEnv, "s3-access-key": config.FromFlag, "s3-endpoint": config.FromFile} {
		if f := rep.flag(t, key); f.Source != src || !strings.Contains(f.Value, "<redacted>") {
			t.Errorf("%s = %+v; want a redacted value from %s", key, f, src)
		}
	}
	if rep.Storage["driver"] != "s3" || rep.Storage["secretkey"] != "<redacted>" || rep.Storage["accesskey"] != "<redacted>" {
		t.Errorf("storage = %v", rep.Storage)
	}
}

func TestConfigCheckStorageErrors(t *testing.T) {
	dir := isolate(t)
	// --connect opens the storage: a missing root is exit 4, an existing one connects.
	_, stderr, code := run(t, "config", "check", "--connect", "--fs-root", filepath.Join(dir, "missing"))
	if code != exitStorage {
		t.Errorf("--connect to a missing root: exit %d (%s), want %d", code, stderr, exitStorage)
	}
	rep := checkReport(t, "--connect", "--fs-root", sampleTree(t))
	if !rep.Connected || rep.Storage["location"] == "" {
		t.Errorf("--connect to a tree: %+v", rep)
	}
	// Storage that cannot be resolved is a usage error.
	_, stderr, code = run(t, "config", "check", "--storage-driver", "s3")
	if code != exitUsage || !strings.Contains(stderr, "bucket") {
		t.Errorf("s3 without a bucket: exit %d (%s), want %d", code, stderr, exitUsage)
	}
	reg := writeFile(t, dir, "config.yml", "storage:\n  gcs:\n    bucket: b\n")
	_, stderr, code = run(t, "config", "check", "--registry-config", reg)
	if code != exitUsage || !strings.Contains(stderr, "gcs") {
		t.Errorf("unsupported driver: exit %d (%s), want %d", code, stderr, exitUsage)
	}
}

func TestExampleFileIsValid(t *testing.T) {
	example, err := filepath.Abs("../../regsweep.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(example); err != nil {
		t.Fatal(err)
	}
	isolate(t)
	rep := checkReport(t, "--config", example)
	if rep.Storage["driver"] != "s3" || rep.Storage["bucket"] != "registry" {
		t.Errorf("example's storage = %v", rep.Storage)
	}
	applied := 0
	for _, f := range rep.Flags {
		if f.Source == config.FromFile {
			applied++
		}
	}
	if g := rep.flag(t, "gc.grace"); g.Source != config.FromFile || g.Value != "2h0m0s" {
		t.Errorf("example's gc.grace = %+v", g)
	}
	if applied < 20 {
		t.Errorf("only %d keys of the example were applied", applied)
	}
}

// The template has every key of every command; uncommented, each default
// must pass the file's type checks and come back unchanged.
func TestConfigExampleTemplateCoversEveryFlag(t *testing.T) {
	dir := isolate(t)
	tmpl, stderr, code := run(t, "config", "example")
	if code != 0 {
		t.Fatalf("config example: exit %d: %s", code, stderr)
	}
	uncomment := regexp.MustCompile(`(?m)^(\s*)# ([a-z0-9-]+: )`)
	file := writeFile(t, dir, "all.yaml", uncomment.ReplaceAllString(tmpl, "$1$2"))
	rep := checkReport(t, "--config", file)

	root := newRootCommand(&bytes.Buffer{}, &bytes.Buffer{})
	root.InitDefaultCompletionCmd()
	n := 0
	for _, k := range configTree(root).Keys() {
		fl := k.Flag
		if fl.Hidden {
			continue
		}
		n++
		f := rep.flag(t, k.Name)
		if f.Key == "config.check.format" {
			continue // checkReport gives --format json
		}
		if f.Source != config.FromFile {
			t.Errorf("%s: source %s, want file (the template lacks it?)", f.Key, f.Source)
		}
		if strings.Contains(f.Value, "<redacted>") {
			continue
		}
		if f.Value != fl.DefValue && !(f.Value == "" && fl.DefValue == `""`) {
			t.Errorf("%s: the template's default reads back as %q, the flag's default is %q", f.Key, f.Value, fl.DefValue)
		}
	}
	if n < 40 {
		t.Errorf("only %d flags found", n)
	}
}

func TestCompletionScripts(t *testing.T) {
	isolate(t)
	// A broken configuration file must not break completion.
	writeFile(t, ".", "regsweep.yaml", "nonsense: [\n")
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		stdout, stderr, code := run(t, "completion", shell)
		if code != 0 || len(stdout) < 500 || !strings.Contains(stdout, "regsweep") {
			t.Errorf("completion %s: exit %d, %d bytes, stderr %s", shell, code, len(stdout), stderr)
		}
	}
	// Nor version: it is what an operator runs to see what is installed.
	if stdout, stderr, code := run(t, "version"); code != 0 || stdout == "" {
		t.Errorf("version with a broken configuration file: exit %d, %s", code, stderr)
	}
	// Completion of flags works through cobra's hidden request command.
	stdout, _, code := run(t, cobra.ShellCompRequestCmd, "gc", "--gra")
	if code != 0 || !strings.Contains(stdout, "--grace") {
		t.Errorf("completing gc --gra: exit %d: %s", code, stdout)
	}
}

func TestManPages(t *testing.T) {
	dir := t.TempDir()
	isolate(t)
	var stdout, stderr bytes.Buffer
	root := newRootCommand(&stdout, &stderr)
	root.SetArgs([]string{genManCommandName, "--dir", dir})
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("genman: %v: %s", err, stderr.String())
	}
	pages := 0
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if !c.IsAvailableCommand() && c.HasParent() {
			return
		}
		name := strings.ReplaceAll(c.CommandPath(), " ", "-") + ".1"
		body, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("no man page for %q: %v", c.CommandPath(), err)
			return
		}
		pages++
		page := string(body)
		if !strings.HasPrefix(page, ".nh") && !strings.Contains(page, ".TH") {
			t.Errorf("%s is not a man page:\n%.200s", name, page)
		}
		c.Flags().VisitAll(func(fl *pflag.Flag) {
			if fl.Hidden {
				return
			}
			if want := "--" + fl.Name + `\fP`; !strings.Contains(page, want) {
				t.Errorf("%s lacks the flag --%s", name, fl.Name)
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	if pages < 10 {
		t.Errorf("only %d man pages", pages)
	}
	for _, hidden := range []string{"regsweep-genman.1", "regsweep-__complete.1"} {
		if _, err := os.Stat(filepath.Join(dir, hidden)); err == nil {
			t.Errorf("a page for the hidden command %s", hidden)
		}
	}
}

// Every command's flags must be keys of the file, so none may share a name
// with a subcommand at the same level.
func TestSchemaCoversTheCommandTree(t *testing.T) {
	root := newRootCommand(&bytes.Buffer{}, &bytes.Buffer{})
	schema, err := configTree(root).Schema()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"gc", "audit", "sweep", "inventory", "unlock", "config"} {
		if _, ok := schema.Sections[name]; !ok {
			t.Errorf("the file has no section for %s", name)
		}
	}
	if _, ok := schema.Sections["config"].Sections["check"].Flags["connect"]; !ok {
		t.Error("config.check.connect is not a key")
	}
	if _, ok := schema.Flags[config.FileFlag]; ok {
		t.Error("the file can name another config file")
	}
	if _, ok := schema.Sections[genManCommandName]; ok {
		t.Error("the hidden genman command has a section")
	}
}
