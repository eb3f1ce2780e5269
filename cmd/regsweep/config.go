package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"

	"github.com/regsweep/regsweep/backend"
	"github.com/regsweep/regsweep/config"
	"github.com/regsweep/regsweep/storage"
)

// configFlag names the file; it is the one flag the file cannot hold.
const (
	configFlag = "config"
	configEnv  = "REGSWEEP_CONFIG"
)

// Where a flag's effective value came from, highest precedence first.
const (
	fromFlag    = "flag"
	fromEnv     = "env"
	fromFile    = "file"
	fromDefault = "default"
)

type flagOrigin struct {
	source string
	env    string // the variable, when source is env
	line   int    // the file's line, when source is file
}

func (o flagOrigin) String() string {
	switch o.source {
	case fromEnv:
		return "env " + o.env
	case fromFile:
		return fmt.Sprintf("file line %d", o.line)
	}
	return o.source
}

// flagLayers applies the layers beneath the command line to flags and
// remembers where each value came from.
type flagLayers struct {
	file     *config.File // nil when no file is used
	fileFrom string       // --config, REGSWEEP_CONFIG or search
	origins  map[*pflag.Flag]flagOrigin
}

func defaultConfigSearch() []string {
	paths := []string{"regsweep.yaml"}
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" {
		paths = append(paths, filepath.Join(d, "regsweep", "regsweep.yaml"))
	} else if h, err := os.UserHomeDir(); err == nil {
		paths = append(paths, filepath.Join(h, ".config", "regsweep", "regsweep.yaml"))
	}
	return append(paths, "/etc/regsweep/regsweep.yaml")
}

// usesConfiguration is false for the commands that must work whatever the
// configuration holds: help, version, shell completion and the man page
// generator.
func usesConfiguration(cmd *cobra.Command) bool {
	for c := cmd; c.HasParent(); c = c.Parent() {
		switch c.Name() {
		case "help", "version", "completion", cobra.ShellCompRequestCmd, cobra.ShellCompNoDescRequestCmd, genManCommandName:
			return false
		}
	}
	return true
}

// resolveFlags fills every flag of cmd not given on the command line: from
// its REGSWEEP_* variable, else from the configuration file. The whole file
// is validated whatever the command, so a broken file never half-applies.
func (g *globalOptions) resolveFlags(cmd *cobra.Command) error {
	if !usesConfiguration(cmd) {
		return nil
	}
	schema, err := flagSchema(cmd.Root())
	if err != nil {
		return err
	}
	path, from, err := g.configPath(cmd.Root())
	if err != nil {
		return usageError{err}
	}
	layers := &flagLayers{fileFrom: from, origins: map[*pflag.Flag]flagOrigin{}}
	if path != "" {
		if layers.file, err = config.Load(path, schema); err != nil {
			return usageError{err}
		}
	}
	g.layers = layers
	return layers.apply(commandFlags(cmd))
}

// configPath finds the file: --config, else REGSWEEP_CONFIG, else the first
// of the search paths that exists. Either of the first two set to "" means
// no file.
func (g *globalOptions) configPath(root *cobra.Command) (path, from string, err error) {
	if root.PersistentFlags().Changed(configFlag) {
		return g.configFile, "--" + configFlag, nil
	}
	if v, ok := os.LookupEnv(configEnv); ok {
		g.configFile = v
		return v, configEnv, nil
	}
	for _, p := range g.configSearch {
		_, err := os.Stat(p)
		if err == nil {
			g.configFile = p
			return p, "search", nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			// An operator's file that cannot be read is not silently skipped.
			return "", "", fmt.Errorf("config file: %w", err)
		}
	}
	return "", "", nil
}

// apply resolves each flag not resolved yet. Values are set through the
// flag and marked changed, so storageConfig lets env and file values
// override the registry's config.yml just as flags do.
func (l *flagLayers) apply(flags []*pflag.Flag) error {
	for _, fl := range flags {
		if _, done := l.origins[fl]; done {
			continue
		}
		if fl.Changed {
			l.origins[fl] = flagOrigin{source: fromFlag}
			continue
		}
		env := envName(fl.Name)
		if v, ok := os.LookupEnv(env); ok {
			if err := fl.Value.Set(v); err != nil {
				if config.IsSecretName(fl.Name) {
					err = fmt.Errorf("not a valid %s", fl.Value.Type())
				}
				return usageError{fmt.Errorf("%s: %v", env, err)}
			}
			fl.Changed = true
			l.origins[fl] = flagOrigin{source: fromEnv, env: env}
			continue
		}
		if s, ok := l.file.Lookup(fl); ok {
			if err := s.Apply(); err != nil {
				return usageError{err}
			}
			l.origins[fl] = flagOrigin{source: fromFile, line: s.Line}
			continue
		}
		l.origins[fl] = flagOrigin{source: fromDefault}
	}
	return nil
}

// envName is the variable of a flag: --s3-secret-key is REGSWEEP_S3_SECRET_KEY.
func envName(flag string) string {
	return "REGSWEEP_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// configurable says whether a flag can come from env and file.
func configurable(fl *pflag.Flag) bool { return fl.Name != "help" && fl.Name != configFlag }

// commandFlags are the flags cmd runs with: its own and those inherited.
func commandFlags(cmd *cobra.Command) []*pflag.Flag {
	var out []*pflag.Flag
	cmd.Flags().VisitAll(func(fl *pflag.Flag) {
		if configurable(fl) {
			out = append(out, fl)
		}
	})
	return out
}

// configCommands are the commands whose flags the file can hold, root first,
// parents before children.
func configCommands(root *cobra.Command) []*cobra.Command {
	out := []*cobra.Command{root}
	for _, c := range root.Commands() {
		if c.Hidden || !usesConfiguration(c) {
			continue
		}
		out = append(out, configCommands(c)...)
	}
	return out
}

// flagSchema walks the command tree: a command's own flags (those it
// defines, persistent or not) are keys of its section, and its subcommands
// are nested sections. The root's section is the top of the file.
func flagSchema(root *cobra.Command) (*config.Section, error) {
	s := &config.Section{Flags: map[string]*pflag.Flag{}, Sections: map[string]*config.Section{}}
	root.LocalFlags().VisitAll(func(fl *pflag.Flag) {
		if configurable(fl) {
			s.Flags[fl.Name] = fl
		}
	})
	for _, c := range root.Commands() {
		if c.Hidden || !usesConfiguration(c) {
			continue
		}
		if _, clash := s.Flags[c.Name()]; clash {
			return nil, fmt.Errorf("command %q has a flag and a subcommand both named %q: the configuration file cannot tell them apart", root.CommandPath(), c.Name())
		}
		sub, err := flagSchema(c)
		if err != nil {
			return nil, err
		}
		s.Sections[c.Name()] = sub
	}
	return s, nil
}

// fileKey is a flag's key in the file: its name under the sections of the
// command that defines it (gc.grace; concurrency for a global flag).
func fileKey(owner *cobra.Command, fl *pflag.Flag) string {
	path := strings.Fields(owner.CommandPath())[1:]
	return strings.Join(append(path, fl.Name), ".")
}

// subcommandPath is a command's path without the program's name ("" for
// the root, "config check").
func subcommandPath(c *cobra.Command) string {
	return strings.Join(strings.Fields(c.CommandPath())[1:], " ")
}

// ------------------------------------------------------------ config command

func newConfigCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check the configuration file, or print a template of it",
		Long: `regsweep reads flag values from a YAML file: --config FILE, else REGSWEEP_CONFIG, else the
first of ./regsweep.yaml, $XDG_CONFIG_HOME/regsweep/regsweep.yaml (~/.config when unset) and
/etc/regsweep/regsweep.yaml that exists. Global flags are top-level keys named like the flag; a
command's flags go in a mapping under the command's name (gc: {grace: 4h}).
Precedence: flags, then ` + "`REGSWEEP_*`" + ` variables, then the file, then defaults.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newConfigCheckCommand(g), newConfigExampleCommand())
	return cmd
}

type configCheckOptions struct {
	format  string
	connect bool
}

func newConfigCheckCommand(g *globalOptions) *cobra.Command {
	o := &configCheckOptions{}
	cmd := &cobra.Command{
		Use:   "check [--config FILE]",
		Short: "Validate the configuration and print the effective value of every flag, secrets redacted",
		Long: `Validate the configuration file (unknown keys and values of the wrong type are errors that
name the key and its line), resolve the storage (--registry-config and distribution's
` + "`REGISTRY_STORAGE_*`" + ` overrides included) and print every flag's effective value and where it
came from: flag, env (the variable), file (the line) or default. Secrets are redacted: flags
whose name contains key, secret, password or token, and the user info of URLs.

With --connect it also opens the storage read-only, which checks the endpoint, the credentials
and that the bucket or container exists (exit 4 when not). Exits 2 on configuration errors.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runConfigCheck(cmd, o, g) },
	}
	addFormatFlag(cmd.Flags(), &o.format)
	cmd.Flags().BoolVar(&o.connect, "connect", false, "also open the storage read-only to check that it answers and the credentials work")
	return cmd
}

// effectiveFlag is one line of config check's output.
type effectiveFlag struct {
	Key     string `json:"key"`
	Command string `json:"command"`
	Flag    string `json:"flag"`
	Value   string `json:"value"`
	Source  string `json:"source"`
	Env     string `json:"env,omitempty"`
	Line    int    `json:"line,omitempty"`
}

type configReport struct {
	ConfigFile     string            `json:"config_file"`
	ConfigFrom     string            `json:"config_file_from,omitempty"`
	RegistryConfig string            `json:"registry_config,omitempty"`
	Storage        map[string]string `json:"storage"`
	Connected      bool              `json:"connected"`
	Flags          []effectiveFlag   `json:"flags"`
}

func runConfigCheck(cmd *cobra.Command, o *configCheckOptions, g *globalOptions) error {
	if err := checkFormat(o.format); err != nil {
		return err
	}
	if g.layers == nil {
		return errors.New("the configuration was not resolved") // cannot happen: PersistentPreRunE did it
	}
	// Resolve every command's flags, not only this command's, so the file's
	// values are all applied once and shown.
	root := cmd.Root()
	var owners []*cobra.Command
	var flags []*pflag.Flag
	for _, c := range configCommands(root) {
		c.LocalFlags().VisitAll(func(fl *pflag.Flag) {
			if configurable(fl) {
				owners, flags = append(owners, c), append(flags, fl)
			}
		})
	}
	if err := g.layers.apply(flags); err != nil {
		return err
	}
	cfg, err := g.storageConfig()
	if err != nil {
		return err
	}
	rep := configReport{ConfigFrom: g.layers.fileFrom, RegistryConfig: g.registryConfig, Storage: map[string]string{}}
	if g.layers.file != nil {
		rep.ConfigFile = g.layers.file.Path
	}
	for k, v := range cfg.Redacted() {
		rep.Storage[k] = config.RedactValue(k, v)
	}
	secrets := cfg.Secrets()
	for i, fl := range flags {
		value := fl.Value.String()
		if config.IsSecretName(fl.Name) && value != "" {
			secrets = append(secrets, value)
		}
		origin := g.layers.origins[fl]
		rep.Flags = append(rep.Flags, effectiveFlag{
			Key: fileKey(owners[i], fl), Command: subcommandPath(owners[i]),
			Flag: fl.Name, Value: config.RedactValue(fl.Name, value), Source: origin.source, Env: origin.env, Line: origin.line,
		})
	}
	if o.connect {
		d, err := backend.Open(cmd.Context(), cfg, backend.OpenOptions{Concurrency: 1, ReadOnly: true, Retry: storage.DefaultRetry()})
		if err != nil {
			return storageOpenError{scrubError{err, secrets}}
		}
		rep.Connected = true
		rep.Storage["location"] = config.RedactValue("location", d.Location())
	}
	var out bytes.Buffer
	if err := writeReport(&out, o.format, rep.writeJSON, rep.writeText); err != nil {
		return err
	}
	// Last line of defence: no secret value leaves, whatever printed it.
	_, err = io.WriteString(g.stdout, scrub(out.String(), secrets))
	return err
}

func (r configReport) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // <redacted> stays readable
	return enc.Encode(r)
}

func (r configReport) writeText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	file := "none"
	if r.ConfigFile != "" {
		file = fmt.Sprintf("%s (from %s)", r.ConfigFile, r.ConfigFrom)
	}
	fmt.Fprintf(tw, "config file:\t%s\n", file)
	from := "flags, env and file"
	if r.RegistryConfig != "" {
		from = "registry config " + r.RegistryConfig + ", then flags, env and file"
	}
	fmt.Fprintf(tw, "storage:\t%s (%s)\n", r.Storage["driver"], from)
	for _, k := range sortedKeys(r.Storage) {
		if k != "driver" {
			fmt.Fprintf(tw, "  %s:\t%s\n", k, r.Storage[k])
		}
	}
	if r.Connected {
		fmt.Fprintf(tw, "  connected:\tyes (opened read-only)\n")
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "KEY\tVALUE\tSOURCE")
	for _, f := range r.Flags {
		origin := flagOrigin{source: f.Source, env: f.Env, line: f.Line}
		v := f.Value
		if v == "" {
			v = `""`
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", f.Key, v, origin)
	}
	return tw.Flush()
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// scrub replaces every secret value in s, the longest first so a secret
// that contains another is hidden whole. Very short values are left: they
// would garble the output and cannot be meaningful secrets.
func scrub(s string, secrets []string) string {
	secrets = slices.Clone(secrets)
	sort.SliceStable(secrets, func(i, j int) bool { return len(secrets[i]) > len(secrets[j]) })
	for _, sec := range secrets {
		if len(sec) >= 4 {
			s = strings.ReplaceAll(s, sec, config.Redacted)
		}
	}
	return s
}

// scrubError hides secrets in an error from a driver.
type scrubError struct {
	err     error
	secrets []string
}

func (e scrubError) Error() string { return scrub(e.err.Error(), e.secrets) }
func (e scrubError) Unwrap() error { return e.err }

// ---------------------------------------------------------- config example

func newConfigExampleCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "example",
		Short: "Print a configuration file template with every key, commented out, at its default",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return writeConfigTemplate(cmd.OutOrStdout(), cmd.Root())
		},
	}
}

// writeConfigTemplate writes every key the file can hold, each line
// commented out with its default and help, sections as YAML mappings.
func writeConfigTemplate(w io.Writer, root *cobra.Command) error {
	var b strings.Builder
	b.WriteString("# regsweep configuration: every key, commented out, at its default.\n")
	b.WriteString("# Precedence: flags, then REGSWEEP_* variables, then this file, then defaults.\n")
	b.WriteString("# Uncomment what you set. Prefer REGSWEEP_* variables (or a file only the job can read) for secrets.\n")
	for _, c := range configCommands(root) {
		depth := len(strings.Fields(c.CommandPath())) - 1
		indent := strings.Repeat("  ", depth)
		if depth > 0 {
			fmt.Fprintf(&b, "\n%s# %s\n%s%s:\n", strings.Repeat("  ", depth-1), c.Short, strings.Repeat("  ", depth-1), c.Name())
		} else {
			b.WriteString("\n# global flags\n")
		}
		c.LocalFlags().VisitAll(func(fl *pflag.Flag) {
			if !configurable(fl) || fl.Hidden {
				return
			}
			fmt.Fprintf(&b, "%s# %s\n%s# %s: %s\n", indent, oneLine(fl.Usage), indent, fl.Name, yamlDefault(fl))
		})
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// yamlDefault writes a flag's default as a YAML value of the flag's type.
func yamlDefault(fl *pflag.Flag) string {
	typ := fl.Value.Type()
	switch {
	case typ == "string":
		out, err := yaml.Marshal(fl.DefValue)
		if err != nil {
			return strconv.Quote(fl.DefValue)
		}
		return strings.TrimSpace(string(out))
	case strings.HasPrefix(typ, "stringTo"):
		return "{}"
	}
	return fl.DefValue
}
