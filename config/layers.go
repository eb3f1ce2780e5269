package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// The flag and the variable that name the file; the file cannot hold them.
const (
	FileFlag = "config"
	FileEnv  = "REGSWEEP_CONFIG"
)

// Where a flag's effective value came from, highest precedence first.
const (
	FromFlag    = "flag"
	FromEnv     = "env"
	FromFile    = "file"
	FromDefault = "default"
)

// Origin is where a flag's effective value came from.
type Origin struct {
	Source string // FromFlag, FromEnv, FromFile or FromDefault
	Env    string // the variable, when Source is FromEnv
	Line   int    // the file's line, when Source is FromFile
}

func (o Origin) String() string {
	switch o.Source {
	case FromEnv:
		return "env " + o.Env
	case FromFile:
		return fmt.Sprintf("file line %d", o.Line)
	}
	return o.Source
}

// EnvName is the variable of a flag: --s3-secret-key is REGSWEEP_S3_SECRET_KEY.
func EnvName(flag string) string {
	return "REGSWEEP_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// DefaultSearch is where the file is looked for when neither --config nor
// REGSWEEP_CONFIG names one, first found first.
func DefaultSearch() []string {
	paths := []string{"regsweep.yaml"}
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" {
		paths = append(paths, filepath.Join(d, "regsweep", "regsweep.yaml"))
	} else if h, err := os.UserHomeDir(); err == nil {
		paths = append(paths, filepath.Join(h, ".config", "regsweep", "regsweep.yaml"))
	}
	return append(paths, "/etc/regsweep/regsweep.yaml")
}

// Tree is a command tree whose flags REGSWEEP_* variables and the file can
// set. Its root defines FileFlag as a persistent flag.
type Tree struct {
	Root *cobra.Command
	// Search is where the file is looked for (DefaultSearch).
	Search []string
	// Exempt names the commands besides cobra's help and completion that
	// must work whatever the configuration holds (version, a man page
	// generator): neither they nor their subcommands read it, and the file
	// has no section for them.
	Exempt []string
}

// uses is false for a command that must work whatever the configuration
// holds, or one under it.
func (t Tree) uses(cmd *cobra.Command) bool {
	for c := cmd; c.HasParent(); c = c.Parent() {
		switch name := c.Name(); name {
		case "help", "completion", cobra.ShellCompRequestCmd, cobra.ShellCompNoDescRequestCmd:
			return false
		default:
			for _, e := range t.Exempt {
				if name == e {
					return false
				}
			}
		}
	}
	return true
}

// configurable says whether a flag can come from env and file.
func configurable(fl *pflag.Flag) bool { return fl.Name != "help" && fl.Name != FileFlag }

// Commands are the commands whose flags the file can hold, root first,
// parents before children.
func (t Tree) Commands() []*cobra.Command { return t.commands(t.Root) }

func (t Tree) commands(c *cobra.Command) []*cobra.Command {
	out := []*cobra.Command{c}
	for _, sub := range c.Commands() {
		if !sub.Hidden && t.uses(sub) {
			out = append(out, t.commands(sub)...)
		}
	}
	return out
}

// Key is a flag as the file holds it.
type Key struct {
	Name    string // dotted path: gc.grace; concurrency for a global flag
	Command string // the defining command's path without the program's name: "config check", "" for the root
	Flag    *pflag.Flag
}

// Keys are every key the file can hold, in the order of Commands and of
// each command's flags.
func (t Tree) Keys() []Key {
	var out []Key
	for _, c := range t.Commands() {
		path := strings.Fields(c.CommandPath())[1:]
		c.LocalFlags().VisitAll(func(fl *pflag.Flag) {
			if configurable(fl) {
				out = append(out, Key{Name: strings.Join(append(path, fl.Name), "."), Command: strings.Join(path, " "), Flag: fl})
			}
		})
	}
	return out
}

// SchemaError is a command tree the file cannot describe: a mistake in the
// program, not in the configuration.
type SchemaError struct{ msg string }

func (e *SchemaError) Error() string { return e.msg }

// Schema is the file's shape: a command's own flags (those it defines,
// persistent or not) are keys of its section, and its subcommands are
// nested sections. The root's section is the top of the file.
func (t Tree) Schema() (*Section, error) { return t.schema(t.Root) }

func (t Tree) schema(c *cobra.Command) (*Section, error) {
	s := &Section{Flags: map[string]*pflag.Flag{}, Sections: map[string]*Section{}}
	c.LocalFlags().VisitAll(func(fl *pflag.Flag) {
		if configurable(fl) {
			s.Flags[fl.Name] = fl
		}
	})
	for _, sub := range c.Commands() {
		if sub.Hidden || !t.uses(sub) {
			continue
		}
		if _, clash := s.Flags[sub.Name()]; clash {
			return nil, &SchemaError{fmt.Sprintf("command %q has a flag and a subcommand both named %q: the configuration file cannot tell them apart", c.CommandPath(), sub.Name())}
		}
		nested, err := t.schema(sub)
		if err != nil {
			return nil, err
		}
		s.Sections[sub.Name()] = nested
	}
	return s, nil
}

// Layers are the layers beneath the command line as one run resolved them:
// the file, and where each flag's value came from.
type Layers struct {
	File *File  // nil when no file is used
	From string // what named the file: --config, REGSWEEP_CONFIG or search
	tree Tree
	// origins holds every flag resolved so far, each exactly once.
	origins map[*pflag.Flag]Origin
}

// Resolve fills every flag of cmd not given on the command line: from its
// REGSWEEP_* variable, else from the file. The whole file is validated
// whatever the command, so a broken file never half-applies. A command
// exempt from the configuration gets nil Layers. Errors other than a
// *SchemaError are the operator's.
func (t Tree) Resolve(cmd *cobra.Command) (*Layers, error) {
	if !t.uses(cmd) {
		return nil, nil
	}
	schema, err := t.Schema()
	if err != nil {
		return nil, err
	}
	path, from, err := t.filePath()
	if err != nil {
		return nil, err
	}
	l := &Layers{From: from, tree: t, origins: map[*pflag.Flag]Origin{}}
	if path != "" {
		if l.File, err = Load(path, schema); err != nil {
			return nil, err
		}
	}
	var flags []*pflag.Flag
	cmd.Flags().VisitAll(func(fl *pflag.Flag) {
		if configurable(fl) {
			flags = append(flags, fl)
		}
	})
	return l, l.apply(flags)
}

// filePath finds the file: --config, else REGSWEEP_CONFIG, else the first
// of the search paths that exists. Either of the first two set to "" means
// no file.
func (t Tree) filePath() (path, from string, err error) {
	if fl := t.Root.PersistentFlags().Lookup(FileFlag); fl != nil && fl.Changed {
		return fl.Value.String(), "--" + FileFlag, nil
	}
	if v, ok := os.LookupEnv(FileEnv); ok {
		return v, FileEnv, nil
	}
	for _, p := range t.Search {
		_, err := os.Stat(p)
		if err == nil {
			return p, "search", nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			// An operator's file that cannot be read is not silently skipped.
			return "", "", fmt.Errorf("config file: %w", err)
		}
	}
	return "", "", nil
}

// Resolved is a key with where its value came from.
type Resolved struct {
	Key
	Origin
}

// ResolveAll resolves the flags of every command of the tree, not only the
// running command's, and returns them in the order of Keys: what the file
// sets is all applied once and can be shown.
func (l *Layers) ResolveAll() ([]Resolved, error) {
	keys := l.tree.Keys()
	flags := make([]*pflag.Flag, len(keys))
	for i, k := range keys {
		flags[i] = k.Flag
	}
	if err := l.apply(flags); err != nil {
		return nil, err
	}
	out := make([]Resolved, len(keys))
	for i, k := range keys {
		out[i] = Resolved{Key: k, Origin: l.origins[k.Flag]}
	}
	return out, nil
}

// apply resolves each flag not resolved yet. Values are set through the
// flag and marked changed, so code that asks whether a flag was given (the
// storage's layering over the registry's config.yml) treats env and file
// values as flags.
func (l *Layers) apply(flags []*pflag.Flag) error {
	for _, fl := range flags {
		if _, done := l.origins[fl]; done {
			continue
		}
		if fl.Changed {
			l.origins[fl] = Origin{Source: FromFlag}
			continue
		}
		env := EnvName(fl.Name)
		if v, ok := os.LookupEnv(env); ok {
			if err := fl.Value.Set(v); err != nil {
				if IsSecretName(fl.Name) {
					err = fmt.Errorf("not a valid %s", fl.Value.Type())
				}
				return fmt.Errorf("%s: %v", env, err)
			}
			fl.Changed = true
			l.origins[fl] = Origin{Source: FromEnv, Env: env}
			continue
		}
		if s, ok := l.File.Lookup(fl); ok {
			if err := s.Apply(); err != nil {
				return err
			}
			l.origins[fl] = Origin{Source: FromFile, Line: s.Line}
			continue
		}
		l.origins[fl] = Origin{Source: FromDefault}
	}
	return nil
}
