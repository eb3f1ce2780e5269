package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/regsweep/regsweep/backend"
	"github.com/regsweep/regsweep/config"
	"github.com/regsweep/regsweep/storage"
)

// configTree is the command tree whose flags REGSWEEP_* variables and
// regsweep.yaml can set: all of it but what must work whatever the
// configuration holds.
func configTree(root *cobra.Command) config.Tree {
	return config.Tree{Root: root, Search: config.DefaultSearch(), Exempt: []string{"version", genManCommandName}}
}

// resolveFlags fills every flag of cmd not given on the command line from
// its REGSWEEP_* variable, else from regsweep.yaml (config.Tree.Resolve).
func (g *globalOptions) resolveFlags(cmd *cobra.Command) error {
	layers, err := configTree(cmd.Root()).Resolve(cmd)
	var schema *config.SchemaError
	if err != nil && !errors.As(err, &schema) {
		return usageError{err}
	}
	g.layers = layers
	return err
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
	flags, err := g.layers.ResolveAll()
	if err != nil {
		return usageError{err}
	}
	cfg, err := g.storageConfig()
	if err != nil {
		return err
	}
	rep := configReport{ConfigFrom: g.layers.From, RegistryConfig: g.registryConfig, Storage: map[string]string{}}
	if g.layers.File != nil {
		rep.ConfigFile = g.layers.File.Path
	}
	for k, v := range cfg.Redacted() {
		rep.Storage[k] = config.RedactValue(k, v)
	}
	secrets := cfg.Secrets()
	for _, fl := range flags {
		value := fl.Flag.Value.String()
		if config.IsSecretName(fl.Flag.Name) && value != "" {
			secrets = append(secrets, value)
		}
		rep.Flags = append(rep.Flags, effectiveFlag{Key: fl.Name, Command: fl.Command, Flag: fl.Flag.Name,
			Value: config.RedactValue(fl.Flag.Name, value), Source: fl.Source, Env: fl.Env, Line: fl.Line})
	}
	if o.connect {
		d, err := backend.Open(cmd.Context(), cfg, backend.OpenOptions{Concurrency: 1, ReadOnly: true, Retry: storage.DefaultRetry()})
		if err != nil {
			return storageOpenError{config.ScrubError(err, secrets)}
		}
		rep.Connected = true
		rep.Storage["location"] = config.RedactValue("location", d.Location())
	}
	var out bytes.Buffer
	if err := writeReport(&out, o.format, rep.writeJSON, rep.writeText); err != nil {
		return err
	}
	// Last line of defence: no secret value leaves, whatever printed it.
	_, err = io.WriteString(g.stdout, config.Scrub(out.String(), secrets))
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
	for _, k := range slices.Sorted(maps.Keys(r.Storage)) {
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
		origin := config.Origin{Source: f.Source, Env: f.Env, Line: f.Line}
		v := f.Value
		if v == "" {
			v = `""`
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", f.Key, v, origin)
	}
	return tw.Flush()
}

// ---------------------------------------------------------- config example

func newConfigExampleCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "example",
		Short: "Print a configuration file template with every key, commented out, at its default",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return configTree(cmd.Root()).WriteTemplate(cmd.OutOrStdout())
		},
	}
}
