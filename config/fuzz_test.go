package config

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParse: any file either parses, or fails with an *Error naming the
// file; a parsed file's settings each apply or fail naming their key,
// without a panic; and a secret given to a secret flag never shows in an
// error, whatever else the file holds.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"concurrency: 8\ngc:\n  grace: 4h\n",
		"s3-secret-key: SECRET\nquiet: yes\n",
		"s3-secret-key: SECRET\nconcurrency: [1, 2]\n",
		"s3-secret-key: SECRET\ns3-secret-key: SECRET\n",
		"labels: [a, b]\nannotations: {a: b}\nretries: -1\n",
		"gc: {grace: soon, delete: maybe}\n",
		"config:\n  check:\n    format: json\n",
		"concurency: 8\n",
		"s3-secret-key: &a SECRET\ns3-region: *a\n",
		"--- \n...\n",
		"s3-secret-key: SECRET\n\t- broken",
	} {
		f.Add(seed, "hunter2hunter2")
	}
	f.Fuzz(func(t *testing.T, doc, secret string) {
		schema, _, _ := testSchema()
		const placeholder = "s3-secret-key: SECRET"
		hidden := len(secret) >= 8 && strings.Contains(doc, placeholder) && !strings.Contains(doc, secret) &&
			strings.Trim(secret, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") == ""
		data := doc
		if hidden {
			data = strings.ReplaceAll(doc, placeholder, "s3-secret-key: "+secret)
			// Only where the placeholder put it: elsewhere the file shows it.
			hidden = strings.Count(data, secret) == strings.Count(doc, placeholder)
		}
		leaks := func(err error) bool { return hidden && strings.Contains(err.Error(), secret) }
		file, err := Parse([]byte(data), "regsweep.yaml", schema)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.File != "regsweep.yaml" {
				t.Fatalf("error %v is not an *Error naming the file", err)
			}
			if leaks(err) {
				t.Fatalf("error shows the secret: %v", err)
			}
			return
		}
		for _, s := range file.Settings() {
			if err := s.Apply(); err != nil {
				if !strings.Contains(err.Error(), s.Key) {
					t.Fatalf("applying %s: error %v does not name the key", s.Key, err)
				}
				if leaks(err) {
					t.Fatalf("applying %s: error shows the secret: %v", s.Key, err)
				}
			} else if !s.Flag.Changed {
				t.Fatalf("applying %s left the flag unchanged", s.Key)
			}
		}
	})
}
