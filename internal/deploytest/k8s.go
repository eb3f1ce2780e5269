package deploytest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// Object is one decoded manifest.
type Object struct {
	Kind   string // apiVersion/kind, e.g. "batch/v1/CronJob"
	Name   string
	Source string // the document's "# Source:" line, or its position
	Value  any    // *batchv1.CronJob, *corev1.ServiceAccount, ...
}

// apiTypes are the objects regsweep's manifests may contain. Anything else
// is an error: there is no schema to check it against offline.
var apiTypes = map[string]func() any{
	"v1/ServiceAccount":                        func() any { return &corev1.ServiceAccount{} },
	"v1/ConfigMap":                             func() any { return &corev1.ConfigMap{} },
	"v1/Secret":                                func() any { return &corev1.Secret{} },
	"batch/v1/CronJob":                         func() any { return &batchv1.CronJob{} },
	"batch/v1/Job":                             func() any { return &batchv1.Job{} },
	"rbac.authorization.k8s.io/v1/Role":        func() any { return &rbacv1.Role{} },
	"rbac.authorization.k8s.io/v1/RoleBinding": func() any { return &rbacv1.RoleBinding{} },
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// DecodeManifests splits a multi-document YAML stream (helm template's
// output, or a manifest file) and decodes every non-empty document into its
// k8s.io/api type strictly: unknown fields, duplicate keys and wrong types
// are errors, as are kinds without a known type.
func DecodeManifests(stream []byte) ([]Object, error) {
	var out []Object
	for i, doc := range docSeparator.Split(string(stream), -1) {
		source := fmt.Sprintf("document %d", i+1)
		empty := true
		for _, line := range strings.Split(doc, "\n") {
			t := strings.TrimSpace(line)
			if s, ok := strings.CutPrefix(t, "# Source: "); ok {
				source = s
			}
			if t != "" && !strings.HasPrefix(t, "#") {
				empty = false
			}
		}
		if empty {
			continue
		}
		obj, err := decodeStrict([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", source, err)
		}
		obj.Source = source
		out = append(out, obj)
	}
	return out, nil
}

func decodeStrict(doc []byte) (Object, error) {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return Object{}, err
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(js, &tm); err != nil {
		return Object{}, err
	}
	kind := tm.APIVersion + "/" + tm.Kind
	newValue, ok := apiTypes[kind]
	if !ok {
		return Object{}, fmt.Errorf("no API type known for %q", kind)
	}
	v := newValue()
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return Object{}, fmt.Errorf("%s: %w", kind, err)
	}
	if dec.More() {
		return Object{}, fmt.Errorf("%s: trailing data", kind)
	}
	meta, ok := v.(metav1.Object)
	if !ok {
		return Object{}, fmt.Errorf("%s has no metadata", kind)
	}
	if meta.GetName() == "" {
		return Object{}, fmt.Errorf("%s without metadata.name", kind)
	}
	return Object{Kind: kind, Name: meta.GetName(), Value: v}, nil
}
