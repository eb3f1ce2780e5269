package backend

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// RegistryStorage is the storage section of distribution's configuration
// as the registry holds it once started: config.yml's storage with the
// REGISTRY_STORAGE* environment overrides applied. It follows
// distribution's own reading: the YAML 1.1 scalars of its YAML library
// (yes/on/y are booleans), overrides applied in name order, each path
// element matching an existing key by its upper case and creating a
// lower-cased key otherwise, and a payload that is itself YAML. Both
// --registry-config (the driver and its parameters) and --require-readonly
// (the maintenance mode) read it, so the two cannot disagree.
type RegistryStorage struct{ root *cfgValue }

// ReadRegistryStorage reads the storage section from config.yml's content
// raw and the environment env (e.g. os.Environ()). An error means the
// registry would not start with them; it never holds a value from the file
// or the environment.
func ReadRegistryStorage(raw []byte, env []string) (RegistryStorage, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return RegistryStorage{}, fmt.Errorf("registry config is not valid YAML: %s", yamlError(err))
	}
	storage := &cfgValue{entries: map[string]*cfgValue{}}
	if len(doc.Content) == 1 {
		// The top level sits above storage: depth -1.
		top, err := new(yamlDecoder).fromYAML(doc.Content[0], -1)
		if err != nil {
			return RegistryStorage{}, fmt.Errorf("registry config: %w", err)
		}
		if s := top.entries["storage"]; s != nil {
			if storage, err = storageSection(s); err != nil {
				return RegistryStorage{}, fmt.Errorf("registry config: %w", err)
			}
		}
	}
	for _, kv := range sortedStorageEnv(env) {
		if err := applyStorageEnv(&storage, kv[0], kv[1]); err != nil {
			return RegistryStorage{}, fmt.Errorf("environment variable %s: %w (the registry would not start)", kv[0], err)
		}
	}
	return RegistryStorage{root: storage}, nil
}

// storageSection is v as the storage section: a mapping of mappings (or
// nulls), or a bare driver name ("storage: inmemory"), which distribution
// reads as that driver with no parameters.
func storageSection(v *cfgValue) (*cfgValue, error) {
	switch {
	case v.entries != nil:
		keys := make([]string, 0, len(v.entries))
		for k := range v.entries {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if s := v.entries[k]; s.entries == nil && !s.null() {
				return nil, fmt.Errorf("storage.%s must be a mapping (the registry would not start)", k)
			}
		}
		return v, nil
	case v.null():
		return &cfgValue{entries: map[string]*cfgValue{}}, nil
	case v.sequence:
		return nil, errors.New("storage must be a mapping or a driver name (the registry would not start)")
	}
	return &cfgValue{entries: map[string]*cfgValue{v.scalar.Value: {entries: map[string]*cfgValue{}}}}, nil
}

// storage sections that are settings, not drivers.
var nonDriverKeys = map[string]bool{"delete": true, "redirect": true, "cache": true, "maintenance": true, "tag": true}

// driver returns the one driver the storage section names, as distribution
// requires, and its parameters.
func (s RegistryStorage) driver() (string, *cfgValue, error) {
	var drivers []string
	for k := range s.root.entries {
		if !nonDriverKeys[k] {
			drivers = append(drivers, k)
		}
	}
	sort.Strings(drivers)
	switch len(drivers) {
	case 0:
		return "", nil, errors.New("registry config has no storage driver in its storage section")
	case 1:
		return drivers[0], s.root.entries[drivers[0]], nil
	}
	return "", nil, fmt.Errorf("registry config names several storage drivers (%s), counting the REGISTRY_STORAGE* environment overrides; "+
		"distribution requires exactly one", strings.Join(drivers, ", "))
}

// ReadOnly reports whether the registry serves read-only, and if not, why:
// the registry's start-up check wants storage.maintenance.readonly to be a
// YAML mapping whose enabled is a boolean. Whatever it cannot tell counts
// as not read-only.
func (s RegistryStorage) ReadOnly() (bool, string) {
	maintenance := s.root.entries["maintenance"]
	if maintenance == nil || maintenance.entries == nil {
		return false, "storage.maintenance.readonly is not set"
	}
	ro := maintenance.entries["readonly"]
	switch {
	case ro == nil:
		return false, "storage.maintenance.readonly is not set"
	case ro.entries == nil || !ro.anyKeyed:
		// A mapping made by REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED
		// alone is not one distribution accepts.
		return false, "storage.maintenance.readonly is not a YAML mapping (the registry would not start); " +
			`set it in the file or as REGISTRY_STORAGE_MAINTENANCE_READONLY='{"enabled": true}'`
	}
	enabled := ro.entries["enabled"]
	if enabled == nil {
		return false, "storage.maintenance.readonly.enabled is not set"
	}
	// An explicitly tagged scalar is not worth guessing at here.
	b, err := enabled.value()
	switch b, ok := b.(bool); {
	case err != nil || !ok || enabled.scalar.Style&yaml.TaggedStyle != 0:
		return false, "storage.maintenance.readonly.enabled is not a boolean (the registry would not start)"
	case !b:
		return false, "storage.maintenance.readonly.enabled is false"
	}
	return true, ""
}

// cfgValue is a configuration value as distribution holds it after parsing:
// a mapping (entries non-nil), a scalar, a sequence, or null (none).
type cfgValue struct {
	entries map[string]*cfgValue
	// anyKeyed marks a mapping decoded from YAML below storage.<section>
	// (a map[interface{}]interface{} in distribution): environment
	// overrides cannot reach inside it, and only such a readonly mapping
	// passes the registry's start-up check.
	anyKeyed bool
	scalar   *yaml.Node
	sequence bool // its items are never read
}

func (v *cfgValue) null() bool {
	switch {
	case v == nil:
		return true
	case v.entries != nil || v.sequence:
		return false
	}
	x, err := v.value()
	return x == nil && err == nil
}

// value is a scalar as distribution's YAML library decodes it into an
// interface{}: nil, bool, int, int64, uint64, float64 or string (YAML 1.1:
// yes, on and y are true; 010 is octal). Explicitly tagged scalars other
// than !!str must resolve to their tag.
func (v *cfgValue) value() (any, error) {
	switch {
	case v == nil:
		return nil, nil
	case v.entries != nil:
		return nil, errors.New("a mapping")
	case v.sequence:
		return nil, errors.New("a sequence")
	case v.scalar == nil:
		return nil, nil
	}
	n := v.scalar
	switch {
	case n.Style&yaml.TaggedStyle != 0:
		if n.Tag == "!!str" {
			return n.Value, nil
		}
		if x := yaml11Resolve(n.Value); yaml11Tag(x) == n.Tag {
			return x, nil
		}
		return nil, fmt.Errorf("a value tagged %s that is not one", n.Tag)
	case n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) != 0:
		return n.Value, nil
	}
	return yaml11Resolve(n.Value), nil
}

func yaml11Tag(x any) string {
	switch x.(type) {
	case nil:
		return "!!null"
	case bool:
		return "!!bool"
	case int, int64, uint64:
		return "!!int"
	case float64:
		return "!!float"
	}
	return "!!str"
}

var yaml11Float = regexp.MustCompile(`^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`)

// yaml11Resolve resolves a plain scalar as distribution's YAML library
// (YAML 1.1) does.
func yaml11Resolve(s string) any {
	switch s {
	case "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON":
		return true
	case "n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF":
		return false
	case "", "~", "null", "Null", "NULL":
		return nil
	case ".nan", ".NaN", ".NAN":
		return math.NaN()
	case ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF":
		return math.Inf(1)
	case "-.inf", "-.Inf", "-.INF":
		return math.Inf(-1)
	}
	switch c := s[0]; {
	case c == '.':
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return f
		}
	case c == '+' || c == '-' || c >= '0' && c <= '9':
		plain := strings.ReplaceAll(s, "_", "")
		// Base 0 reads YAML 1.1's 0x, 0 (octal) and 0b prefixes too.
		if i, err := strconv.ParseInt(plain, 0, 64); err == nil {
			if i == int64(int(i)) {
				return int(i)
			}
			return i
		}
		if u, err := strconv.ParseUint(plain, 0, 64); err == nil {
			return u
		}
		if yaml11Float.MatchString(plain) {
			if f, err := strconv.ParseFloat(plain, 64); err == nil {
				return f
			}
		}
	}
	return s
}

// yamlDecoder converts YAML nodes the way distribution's YAML library
// decodes them, and refuses what that library refuses to expand: a mapping
// that contains itself through an alias (which would recurse forever) and
// aliases that blow a small file up (which would exhaust memory).
type yamlDecoder struct {
	open   map[*yaml.Node]bool // mappings being converted
	values int                 // cfgValues made so far
}

// maxConfigValues bounds a storage section once its aliases are expanded;
// a real one holds a few dozen values.
const maxConfigValues = 100_000

// fromYAML converts a node at depth (0: storage, 1: its sections, 2 and
// more: inside them): aliases resolved, merge keys applied in place, the
// last duplicate key winning.
func (d *yamlDecoder) fromYAML(n *yaml.Node, depth int) (*cfgValue, error) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if d.values++; d.values > maxConfigValues {
		return nil, fmt.Errorf("more than %d values once its aliases are expanded", maxConfigValues)
	}
	switch n.Kind {
	case yaml.ScalarNode:
		return &cfgValue{scalar: n}, nil
	case yaml.MappingNode:
		v := &cfgValue{entries: map[string]*cfgValue{}, anyKeyed: depth >= 2}
		return v, d.mergeMapping(v, n, depth)
	case yaml.SequenceNode:
		return &cfgValue{sequence: true}, nil
	}
	return &cfgValue{}, nil
}

func (d *yamlDecoder) mergeMapping(v *cfgValue, n *yaml.Node, depth int) error {
	if d.open[n] {
		// No anchor name: it may be part of a secret.
		return errors.New("a mapping contains itself through an alias")
	}
	if d.open == nil {
		d.open = map[*yaml.Node]bool{}
	}
	d.open[n] = true
	defer delete(d.open, n)
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		if key.Kind == yaml.ScalarNode && key.Tag == "!!merge" {
			for val.Kind == yaml.AliasNode {
				val = val.Alias
			}
			srcs := []*yaml.Node{val}
			if val.Kind == yaml.SequenceNode {
				// Earlier mappings of a merge sequence win: apply them last.
				srcs = nil
				for j := len(val.Content) - 1; j >= 0; j-- {
					srcs = append(srcs, val.Content[j])
				}
			}
			for _, s := range srcs {
				for s.Kind == yaml.AliasNode {
					s = s.Alias
				}
				if s.Kind != yaml.MappingNode {
					return errors.New("a merge key (<<) that is not a mapping")
				}
				if err := d.mergeMapping(v, s, depth); err != nil {
					return err
				}
			}
			continue
		}
		child, err := d.fromYAML(val, depth+1)
		if err != nil {
			return err
		}
		v.entries[key.Value] = child
	}
	return nil
}

// sortedStorageEnv returns the variables distribution applies to the
// storage section, in the order it applies them (by name); of a name given
// twice the last counts, as in a process environment.
func sortedStorageEnv(env []string) [][2]string {
	last := map[string]string{}
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if ok && (k == "REGISTRY_STORAGE" || strings.HasPrefix(k, "REGISTRY_STORAGE_")) {
			last[k] = v
		}
	}
	out := make([][2]string, 0, len(last))
	for k, v := range last {
		out = append(out, [2]string{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

// applyStorageEnv applies one override as distribution's configuration
// parser does: path elements match existing keys by their upper case; a
// key not found (or null) is created, lower-cased; a mapping decoded from
// YAML below a section is left alone; the last element's value is YAML.
func applyStorageEnv(storage **cfgValue, name, payload string) error {
	path := strings.Split(name, "_")[2:] // after REGISTRY, STORAGE
	if len(path) == 0 {
		v, err := parsePayload(payload, 0)
		if err != nil {
			return err
		}
		*storage, err = storageSection(v)
		return err
	}
	return setPath(*storage, 0, path, payload)
}

// setPath sets path below m, a string-keyed mapping at depth.
func setPath(m *cfgValue, depth int, path []string, payload string) error {
	if len(path) > 1 {
		for k, child := range m.entries {
			if strings.ToUpper(k) != path[0] || child.null() {
				continue
			}
			if child.entries == nil || child.anyKeyed {
				return nil // a scalar, or a map distribution will not enter
			}
			return setPath(child, depth+1, path[1:], payload)
		}
	}
	var child *cfgValue
	if len(path) > 1 {
		child = &cfgValue{entries: map[string]*cfgValue{}}
		if err := setPath(child, depth+1, path[1:], payload); err != nil {
			return err
		}
	} else {
		var err error
		if child, err = parsePayload(payload, depth+1); err != nil {
			return err
		}
	}
	m.entries[strings.ToLower(path[0])] = child
	return nil
}

func parsePayload(payload string, depth int) (*cfgValue, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(payload), &doc); err != nil {
		return nil, fmt.Errorf("not valid YAML: %s", yamlError(err))
	}
	if len(doc.Content) == 0 {
		return &cfgValue{}, nil
	}
	v, err := new(yamlDecoder).fromYAML(doc.Content[0], depth)
	if err == nil && depth == 1 && v.entries == nil && !v.null() {
		err = errors.New("a storage section must be a mapping")
	}
	return v, err
}

var yamlQuoted = regexp.MustCompile(`'[^']*'`)

// yamlError is a YAML parse error without the names it quotes: an unknown
// anchor's name is the text after a "*", which may be part of a secret.
func yamlError(err error) string {
	return yamlQuoted.ReplaceAllString(strings.TrimPrefix(err.Error(), "yaml: "), "'…'")
}

// RegistryReadOnly reports whether distribution would serve read-only with
// config.yml's content raw and the environment env, and if not, why. It
// reads the storage section exactly as --registry-config does; a
// configuration the registry would not start with counts as not
// read-only.
func RegistryReadOnly(raw []byte, env []string) (bool, string) {
	s, err := ReadRegistryStorage(raw, env)
	if err != nil {
		return false, err.Error()
	}
	return s.ReadOnly()
}
