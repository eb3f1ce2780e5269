package yamlnode

import (
	"testing"

	"gopkg.in/yaml.v3"
)

func TestSuggest(t *testing.T) {
	names := []string{"newest", "tags", "pushed_within"}
	for key, want := range map[string]string{
		"newst":        ` (did you mean "newest"?)`,
		"tag":          ` (did you mean "tags"?)`,
		"pushed-withn": ` (did you mean "pushed_within"?)`,
		"older_than":   "",
	} {
		if got := Suggest(key, names); got != want {
			t.Errorf("%s: %q, want %q", key, got, want)
		}
	}
	if got := Suggest("ab", []string{"ax", "ay"}); got != ` (did you mean "ax"?)` {
		t.Errorf("equals: the first in order wins, got %q", got)
	}
}

func TestKindName(t *testing.T) {
	for doc, want := range map[string]string{
		"{a: 1}": "a mapping", "[1]": "a list", "true": "a boolean", "3": "an integer", "2.5": "a number", "x": "a string", "~": "a null",
	} {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(doc), &n); err != nil {
			t.Fatal(err)
		}
		v := n.Content[0]
		if got := KindName(v); got != want {
			t.Errorf("%s: %q, want %q", doc, got, want)
		}
		if IsNull(v) != (want == "a null") {
			t.Errorf("%s: IsNull %v", doc, IsNull(v))
		}
	}
}

func TestErrorNamesFileLineAndKey(t *testing.T) {
	for _, c := range []struct {
		e    Error
		want string
	}{
		{Error{File: "p.yaml", Line: 4, Key: "rules[1].keep", Msg: "missing"}, "p.yaml:4: rules[1].keep: missing"},
		{Error{File: "p.yaml", Msg: "the policy is empty"}, "p.yaml: the policy is empty"},
		{Error{File: "p.yaml", Line: 2, Msg: "holds more than one YAML document"}, "p.yaml:2: holds more than one YAML document"},
	} {
		if got := c.e.Error(); got != c.want {
			t.Errorf("%q, want %q", got, c.want)
		}
	}
}
