package config

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// WriteTemplate writes every key the file can hold, each line commented
// out with its default and help, sections as YAML mappings.
func (t Tree) WriteTemplate(w io.Writer) error {
	var b strings.Builder
	b.WriteString("# regsweep configuration: every key, commented out, at its default.\n")
	b.WriteString("# Precedence: flags, then REGSWEEP_* variables, then this file, then defaults.\n")
	b.WriteString("# Uncomment what you set. Prefer REGSWEEP_* variables (or a file only the job can read) for secrets.\n")
	for _, c := range t.Commands() {
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
