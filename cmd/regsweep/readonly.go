package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/regsweep/regsweep/sweep"
)

// --require-readonly: a deleting gc runs only while the registry cannot take
// pushes. The registry has no lock regsweep could take, so in plain-registry
// mode its read-only maintenance mode is the one way to close the window
// between the last recheck and the deletions (docs/safety.md).

// guardRegistryNotReadOnly names the refusal in reports and messages.
const guardRegistryNotReadOnly = "registry_not_readonly"

// notReadOnlyError refuses a deleting run. It unwraps to a guard so that it
// exits 6 like the other safety refusals; unlike them --force does not
// override it: the operator asked for this check explicitly.
type notReadOnlyError struct {
	config, reason string
	guard          *sweep.GuardError
}

func newNotReadOnlyError(config, reason string) notReadOnlyError {
	return notReadOnlyError{config: config, reason: reason,
		guard: &sweep.GuardError{Guards: []sweep.Guard{{Name: guardRegistryNotReadOnly, Message: reason}}}}
}

func (e notReadOnlyError) Error() string {
	return fmt.Sprintf("refusing to delete (%s): --require-readonly is set and the registry configured by %s is not in read-only mode: %s; "+
		"set storage.maintenance.readonly.enabled: true and restart the registry for the run, or drop --require-readonly",
		guardRegistryNotReadOnly, e.config, e.reason)
}

func (e notReadOnlyError) Unwrap() error { return e.guard }

// checkRequireReadonly enforces --require-readonly before anything is opened:
// without the registry's config.yml there is nothing to check (a usage
// error); a deleting run against a registry that is not read-only is
// refused; a dry run only warns, since it deletes nothing.
func checkRequireReadonly(require, deleting bool, registryConfig string, env []string, log *slog.Logger) error {
	if !require {
		return nil
	}
	if registryConfig == "" {
		return usageError{errors.New("--require-readonly needs --registry-config FILE: the registry's own config.yml, " +
			"whose storage.maintenance.readonly.enabled must be true")}
	}
	raw, err := os.ReadFile(registryConfig)
	if err != nil {
		return usageError{fmt.Errorf("--require-readonly: reading the registry config: %w", err)}
	}
	ok, reason := registryReadOnly(raw, env)
	switch {
	case ok:
		log.Info("the registry is configured read-only", "registry_config", registryConfig)
		return nil
	case deleting:
		return newNotReadOnlyError(registryConfig, reason)
	}
	log.Warn("a deleting run would refuse: the registry is not configured read-only", "registry_config", registryConfig, "reason", reason)
	return nil
}

// registryReadOnly reports whether distribution would serve read-only with
// config.yml raw and environment env, and if not, why. It follows
// distribution's own reading: the YAML 1.1 scalars of its YAML library, its
// REGISTRY_STORAGE* overrides applied in name order, and the registry's
// start-up check that storage.maintenance.readonly is a YAML mapping whose
// enabled is a boolean. Whatever it cannot tell counts as not read-only.
func registryReadOnly(raw []byte, env []string) (bool, string) {
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return false, fmt.Sprintf("the file is not valid YAML: %v", err)
	}
	storage := &cfgValue{entries: map[string]*cfgValue{}}
	if len(doc.Content) == 1 {
		// The top level sits above storage: depth -1.
		top, err := fromYAML(doc.Content[0], -1)
		if err != nil {
			return false, err.Error()
		}
		// "storage: inmemory" names a driver and nothing else; the
		// environment may still add a maintenance section to it.
		if s := top.entries["storage"]; s != nil && s.entries != nil {
			storage = s
		}
	}
	for _, kv := range sortedStorageEnv(env) {
		if err := applyStorageEnv(&storage, kv[0], kv[1]); err != nil {
			return false, fmt.Sprintf("%s: %v (the registry would not start)", kv[0], err)
		}
	}
	return readOnlyVerdict(storage)
}

func readOnlyVerdict(storage *cfgValue) (bool, string) {
	maintenance := storage.entries["maintenance"]
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
	b, ok := yaml11Bool(enabled.scalar)
	switch {
	case !ok:
		return false, "storage.maintenance.readonly.enabled is not a boolean (the registry would not start)"
	case !b:
		return false, "storage.maintenance.readonly.enabled is false"
	}
	return true, ""
}

// cfgValue is a configuration value as distribution holds it after parsing:
// a mapping (entries non-nil), a scalar, or null (neither).
type cfgValue struct {
	entries map[string]*cfgValue
	// anyKeyed marks a mapping decoded from YAML below storage.<section>
	// (a map[interface{}]interface{} in distribution): environment
	// overrides cannot reach inside it, and only such a readonly mapping
	// passes the registry's start-up check.
	anyKeyed bool
	scalar   *yaml.Node
}

func (v *cfgValue) null() bool {
	return v == nil || (v.entries == nil && (v.scalar == nil || v.scalar.Tag == "!!null"))
}

// fromYAML converts a node at depth (0: storage, 1: its sections, 2 and
// more: inside them) the way distribution's YAML library decodes it:
// aliases resolved, merge keys applied in place, the last duplicate key
// winning.
func fromYAML(n *yaml.Node, depth int) (*cfgValue, error) {
	if n.Kind == yaml.AliasNode {
		return fromYAML(n.Alias, depth)
	}
	switch n.Kind {
	case yaml.ScalarNode:
		return &cfgValue{scalar: n}, nil
	case yaml.MappingNode:
		v := &cfgValue{entries: map[string]*cfgValue{}, anyKeyed: depth >= 2}
		return v, mergeMapping(v, n, depth)
	}
	return &cfgValue{}, nil // a sequence: neither mapping nor boolean
}

func mergeMapping(v *cfgValue, n *yaml.Node, depth int) error {
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
				if err := mergeMapping(v, s, depth); err != nil {
					return err
				}
			}
			continue
		}
		child, err := fromYAML(val, depth+1)
		if err != nil {
			return err
		}
		v.entries[key.Value] = child
	}
	return nil
}

// yaml11Bool reads a scalar as distribution's YAML library (YAML 1.1) does.
// ok is false for anything that is not a boolean there, and for explicitly
// tagged or quoted scalars (strings, or not worth guessing).
func yaml11Bool(n *yaml.Node) (value, ok bool) {
	if n == nil || n.Style&(yaml.TaggedStyle|yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
		return false, false
	}
	switch n.Value {
	case "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON":
		return true, true
	case "n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF":
		return false, true
	}
	return false, false
}

// sortedStorageEnv returns the variables distribution applies to the
// storage section, in the order it applies them (by name).
func sortedStorageEnv(env []string) [][2]string {
	var out [][2]string
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if k == "REGISTRY_STORAGE" || strings.HasPrefix(k, "REGISTRY_STORAGE_") {
			out = append(out, [2]string{k, v})
		}
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
		if v.entries == nil {
			v = &cfgValue{entries: map[string]*cfgValue{}} // a driver name
		}
		*storage = v
		return nil
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
		return nil, fmt.Errorf("not valid YAML: %v", err)
	}
	if len(doc.Content) == 0 {
		return &cfgValue{}, nil
	}
	v, err := fromYAML(doc.Content[0], depth)
	if err == nil && depth == 1 && v.entries == nil && !v.null() {
		err = errors.New("a storage section must be a mapping")
	}
	return v, err
}
