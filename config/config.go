// Package config owns the layers beneath regsweep's command line:
// REGSWEEP_* variables and regsweep.yaml, the file that can hold every
// flag: global flags as top-level keys, a command's flags in a mapping
// under the command's name (gc: {grace: 4h}), subcommands nested the same
// way. The schema is the command tree's flags (Tree), so a flag added to a
// command is a valid key and variable without any change here.
//
// Tree.Resolve finds and validates the file and fills each flag not given
// on the command line, from its variable, else from the file, and
// remembers where each value came from; Tree.WriteTemplate prints every
// key. It also redacts secrets from what is shown (RedactValue, Scrub).
//
// It may not define flags or print reports (cmd does) nor read the
// storage's configuration (backend does).
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"

	"github.com/regsweep/regsweep/internal/yamlnode"
)

// Section is what one level of the file may hold: flags by name and
// nested sections by command name.
type Section struct {
	Flags    map[string]*pflag.Flag
	Sections map[string]*Section
}

// Setting is a value the file gives one flag.
type Setting struct {
	Key  string // dotted path from the top of the file: gc.grace
	Line int
	Flag *pflag.Flag
	file string
	set  func() error
}

// Apply sets the flag to the file's value and marks it changed, so code
// that asks "was this flag given?" treats the file like the command line.
func (s Setting) Apply() error {
	if err := s.set(); err != nil {
		return s.err("%v", err)
	}
	s.Flag.Changed = true
	return nil
}

func (s Setting) err(format string, args ...any) error {
	return &Error{File: s.file, Line: s.Line, Key: s.Key, Msg: fmt.Sprintf(format, args...)}
}

// File is a parsed, validated configuration file.
type File struct {
	Path     string
	settings map[*pflag.Flag]Setting
}

// Lookup returns the file's value for a flag, if it has one.
func (f *File) Lookup(fl *pflag.Flag) (Setting, bool) {
	if f == nil {
		return Setting{}, false
	}
	s, ok := f.settings[fl]
	return s, ok
}

// Settings returns every value the file holds, in file order.
func (f *File) Settings() []Setting {
	if f == nil {
		return nil
	}
	out := make([]Setting, 0, len(f.settings))
	for _, s := range f.settings {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Line < out[j].Line })
	return out
}

// Error is a problem at one key of the file. It never holds the key's value:
// the value may be a secret.
type Error = yamlnode.Error

// Load reads and validates the file at path.
func Load(path string, schema *Section) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config file: %w", err)
	}
	return Parse(data, path, schema)
}

// Parse validates data (named path in errors) against schema: every key
// must be a flag or a section at its level, every value of the flag's type.
// Empty values (key: or key: null) leave the flag alone.
func Parse(data []byte, path string, schema *Section) (*File, error) {
	f := &File{Path: path, settings: map[*pflag.Flag]Setting{}}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return f, nil // an empty file sets nothing
		}
		return nil, &Error{File: path, Msg: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	var more yaml.Node
	if err := dec.Decode(&more); err == nil {
		return nil, &Error{File: path, Line: more.Line, Msg: "holds more than one YAML document"}
	}
	top := &doc
	if top.Kind == yaml.DocumentNode && len(top.Content) == 1 {
		top = top.Content[0]
	}
	if yamlnode.IsNull(top) {
		return f, nil // only comments
	}
	if err := f.section(top, "", schema); err != nil {
		err.File = path
		return nil, err
	}
	return f, nil
}

func (f *File) section(n *yaml.Node, prefix string, s *Section) *Error {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	where := "the top level"
	if prefix != "" {
		where = strings.TrimSuffix(prefix, ".")
	}
	if n.Kind != yaml.MappingNode {
		return &Error{Line: n.Line, Key: strings.TrimSuffix(prefix, "."), Msg: fmt.Sprintf("expected a mapping of keys at %s, got %s", where, yamlnode.KindName(n))}
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return &Error{Line: k.Line, Key: strings.TrimSuffix(prefix, "."), Msg: "keys must be plain names"}
		}
		key := prefix + k.Value
		if first, dup := seen[k.Value]; dup {
			return &Error{Line: k.Line, Key: key, Msg: fmt.Sprintf("given twice (first at line %d)", first)}
		}
		seen[k.Value] = k.Line
		if fl, ok := s.Flags[k.Value]; ok {
			if yamlnode.IsNull(v) {
				continue
			}
			set, err := setter(fl, v)
			if err != nil {
				return &Error{Line: v.Line, Key: key, Msg: err.Error()}
			}
			f.settings[fl] = Setting{Key: key, Line: k.Line, Flag: fl, file: f.Path, set: set}
			continue
		}
		if sub, ok := s.Sections[k.Value]; ok {
			if yamlnode.IsNull(v) {
				continue
			}
			if err := f.section(v, key+".", sub); err != nil {
				return err
			}
			continue
		}
		return &Error{Line: k.Line, Key: key, Msg: "unknown key" + yamlnode.Suggest(k.Value, append(keys(s.Flags), keys(s.Sections)...))}
	}
	return nil
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// setter checks the node against the flag's type and returns what sets
// it. Values are checked here, not when applied, so a broken value is
// reported even when a flag or variable overrides it.
func setter(fl *pflag.Flag, n *yaml.Node) (func() error, error) {
	typ := fl.Value.Type()
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	want := func(what string) error { return fmt.Errorf("expected %s, got %s", what, yamlnode.KindName(n)) }
	scalar := n.Kind == yaml.ScalarNode
	switch {
	case typ == "bool":
		if !scalar || n.Tag != "!!bool" {
			return nil, want("a boolean (true or false)")
		}
		v := strings.ToLower(n.Value)
		return func() error { return fl.Value.Set(v) }, nil
	case isInt(typ):
		if !scalar || n.Tag != "!!int" {
			return nil, want("an integer")
		}
		v := strings.ReplaceAll(n.Value, "_", "")
		var err error
		if strings.HasPrefix(typ, "uint") {
			_, err = strconv.ParseUint(v, 0, 64)
		} else {
			_, err = strconv.ParseInt(v, 0, 64)
		}
		if err != nil {
			return nil, fmt.Errorf("expected an integer in range for %s", typ)
		}
		return scalarSetter(fl, v), nil
	case typ == "float64" || typ == "float32":
		if !scalar || (n.Tag != "!!int" && n.Tag != "!!float") {
			return nil, want("a number")
		}
		if _, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64); err != nil {
			return nil, want("a number such as 0.5")
		}
		return scalarSetter(fl, strings.ReplaceAll(n.Value, "_", "")), nil
	case typ == "duration":
		if !scalar || (n.Tag != "!!str" && n.Tag != "!!int") {
			return nil, want("a duration such as 90m or 2h")
		}
		if _, err := time.ParseDuration(n.Value); err != nil {
			return nil, fmt.Errorf("expected a duration such as 90m or 2h (units ns, us, ms, s, m, h)")
		}
		return scalarSetter(fl, n.Value), nil
	case typ == "string":
		if !scalar {
			return nil, want("a string")
		}
		return scalarSetter(fl, n.Value), nil
	case strings.HasSuffix(typ, "Slice") || strings.HasSuffix(typ, "Array"):
		return listSetter(fl, n, want)
	case strings.HasPrefix(typ, "stringTo"):
		return mapSetter(fl, n, want)
	}
	if !scalar {
		return nil, want("a single value (" + typ + ")")
	}
	return scalarSetter(fl, n.Value), nil
}

func isInt(typ string) bool {
	switch typ {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64", "count":
		return true
	}
	return false
}

func scalarSetter(fl *pflag.Flag, v string) func() error {
	return func() error { return fl.Value.Set(v) }
}

func listSetter(fl *pflag.Flag, n *yaml.Node, want func(string) error) (func() error, error) {
	if n.Kind == yaml.ScalarNode {
		return scalarSetter(fl, n.Value), nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, want("a list")
	}
	items := make([]string, 0, len(n.Content))
	for _, it := range n.Content {
		if it.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("expected a list of single values, got %s in it", yamlnode.KindName(it))
		}
		items = append(items, it.Value)
	}
	if sv, ok := fl.Value.(pflag.SliceValue); ok {
		return func() error { return sv.Replace(items) }, nil
	}
	return func() error {
		for _, it := range items {
			if err := fl.Value.Set(it); err != nil {
				return err
			}
		}
		return nil
	}, nil
}

func mapSetter(fl *pflag.Flag, n *yaml.Node, want func(string) error) (func() error, error) {
	if n.Kind != yaml.MappingNode {
		return nil, want("a mapping")
	}
	var pairs []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || v.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("expected a mapping of single values")
		}
		pairs = append(pairs, k.Value+"="+v.Value)
	}
	return func() error {
		for _, p := range pairs {
			if err := fl.Value.Set(p); err != nil {
				return err
			}
		}
		return nil
	}, nil
}
