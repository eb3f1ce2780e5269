// Package yamlnode holds what regsweep's YAML validators (regsweep.yaml,
// retention policies) share in their messages: a node's kind in words and
// the allowed key nearest a misspelt one, and the error that names the
// file, line and key. It owns those messages; it reads no files and may
// not know either file's schema.
package yamlnode

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// Error is a problem at one key of a file: "file:line: key: msg", the
// line and key left out when unknown.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		b.WriteString(": " + e.Key)
	}
	b.WriteString(": " + e.Msg)
	return b.String()
}

// IsNull reports an empty value (key: or key: null).
func IsNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// KindName names what a node holds, for "expected X, got Y" messages.
func KindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	switch n.Tag {
	case "!!bool":
		return "a boolean"
	case "!!int":
		return "an integer"
	case "!!float":
		return "a number"
	case "!!str":
		return "a string"
	}
	return "a " + strings.TrimPrefix(n.Tag, "!!")
}

// Suggest returns ` (did you mean "name"?)` for the name nearest key
// within two edits, the first in names order among equals, or "".
func Suggest(key string, names []string) string {
	best, bestDist := "", 3
	for _, name := range names {
		if d := distance(key, name); d < bestDist {
			best, bestDist = name, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// distance is the Levenshtein distance.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
