package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Each case's verdict was checked against distribution v3.1.2 itself
// (`registry serve` with that file and environment, then POST
// /v2/x/blobs/uploads/: 405 is read-only, 202 writable, or no start at
// all); e2e's TestReadOnlyVerdictMatchesRegistry re-checks a set of them
// against the real registry on every run.
func TestRegistryReadOnlyFollowsDistribution(t *testing.T) {
	file := func(readonly string) string {
		return "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /r\n  maintenance:\n    uploadpurging:\n      enabled: false\n" + readonly
	}
	cases := []struct {
		name   string
		config string
		env    []string
		want   bool
		reason string // part of the reason when not read-only
	}{
		{"enabled true", file("    readonly:\n      enabled: true\n"), nil, true, ""},
		{"enabled false", file("    readonly:\n      enabled: false\n"), nil, false, "is false"},
		{"no readonly section", file(""), nil, false, "not set"},
		{"no maintenance", "version: 0.1\nstorage:\n  filesystem: {}\n", nil, false, "not set"},
		{"YAML 1.1 yes", file("    readonly:\n      enabled: yes\n"), nil, true, ""},
		{"YAML 1.1 Y", file("    readonly:\n      enabled: Y\n"), nil, true, ""},
		{"YAML 1.1 ON", file("    readonly:\n      enabled: ON\n"), nil, true, ""},
		{"YAML 1.1 off", file("    readonly:\n      enabled: off\n"), nil, false, "is false"},
		{"quoted true is a string", file("    readonly:\n      enabled: \"true\"\n"), nil, false, "not a boolean"},
		{"1 is not a boolean", file("    readonly:\n      enabled: 1\n"), nil, false, "not a boolean"},
		{"duplicate key, the last wins", file("    readonly:\n      enabled: true\n      enabled: false\n"), nil, false, "is false"},
		{"alias", "x: &ro\n  enabled: true\nstorage:\n  filesystem: {}\n  maintenance:\n    readonly: *ro\n", nil, true, ""},
		{"merge key", "x: &ro\n  enabled: true\nstorage:\n  filesystem: {}\n  maintenance:\n    readonly:\n      <<: *ro\n", nil, true, ""},
		{"readonly null", file("    readonly:\n"), nil, false, "not a YAML mapping"},
		{"not YAML", "storage: [\n", nil, false, "not valid YAML"},
		// distribution reads every storage section as a mapping.
		{"a storage section that is not a mapping", file("    readonly:\n      enabled: true\n") + "  delete: true\n", nil, false, "would not start"},

		{"env map turns it on", file("    readonly:\n      enabled: false\n"),
			[]string{`REGISTRY_STORAGE_MAINTENANCE_READONLY={"enabled": true}`}, true, ""},
		{"env map turns it off", file("    readonly:\n      enabled: true\n"),
			[]string{`REGISTRY_STORAGE_MAINTENANCE_READONLY={"enabled": false}`}, false, "is false"},
		{"env flow map without a file section", file(""), []string{`REGISTRY_STORAGE_MAINTENANCE_READONLY={enabled: true}`}, true, ""},
		{"env string true", file(""), []string{`REGISTRY_STORAGE_MAINTENANCE_READONLY={"enabled": "true"}`}, false, "not a boolean"},
		// distribution cannot enter the file's readonly mapping from the
		// environment: _ENABLED is ignored ...
		{"env _ENABLED ignored (on)", file("    readonly:\n      enabled: false\n"),
			[]string{"REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED=true"}, false, "is false"},
		{"env _ENABLED ignored (off)", file("    readonly:\n      enabled: true\n"),
			[]string{"REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED=false"}, true, ""},
		// ... and alone it makes a mapping the registry refuses to start with.
		{"env _ENABLED alone", file(""), []string{"REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED=true"}, false, "not a YAML mapping"},
		{"env whole maintenance", file("    readonly:\n      enabled: false\n"),
			[]string{`REGISTRY_STORAGE_MAINTENANCE={"readonly": {"enabled": true}}`}, true, ""},
		{"env whole storage", file(""),
			[]string{`REGISTRY_STORAGE={"filesystem": {}, "maintenance": {"readonly": {"enabled": true}}}`}, true, ""},
		// Applied in name order: the section first, then the key inside it.
		{"env order", file(""), []string{`REGISTRY_STORAGE_MAINTENANCE_READONLY={"enabled": false}`,
			`REGISTRY_STORAGE_MAINTENANCE={"readonly": {"enabled": true}}`}, false, "is false"},
		{"env lower-case element replaces the key", file("    readonly:\n      enabled: false\n"),
			[]string{`REGISTRY_STORAGE_MAINTENANCE_readonly={"enabled": true}`}, true, ""},
		{"env other driver keys do not matter", file("    readonly:\n      enabled: true\n"),
			[]string{"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=/x", "REGISTRY_HTTP_ADDR=:1"}, true, ""},
		{"env not YAML", file("    readonly:\n      enabled: true\n"), []string{`REGISTRY_STORAGE_MAINTENANCE_READONLY={`}, false, "would not start"},
		{"storage names a driver only, env adds readonly", "storage: inmemory\n",
			[]string{`REGISTRY_STORAGE_MAINTENANCE_READONLY={"enabled": true}`}, true, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, reason := registryReadOnly([]byte(c.config), c.env)
			if got != c.want {
				t.Fatalf("read-only %v (%s), want %v", got, reason, c.want)
			}
			if !c.want && !strings.Contains(reason, c.reason) {
				t.Errorf("reason %q, want it to say %q", reason, c.reason)
			}
			if c.want && reason != "" {
				t.Errorf("read-only with a reason %q", reason)
			}
		})
	}
}

// registryConfigFor writes a registry config.yml for the filesystem storage
// at root.
func registryConfigFor(t *testing.T, root string, readOnly bool) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yml")
	body := fmt.Sprintf("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: %s\n  maintenance:\n    readonly:\n      enabled: %t\n", root, readOnly)
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRequireReadOnlyCLI(t *testing.T) {
	isolate(t)
	gc := []string{"gc", "--delete-untagged", "--grace", "0s", "--upload-grace", "0s", "--max-delete-fraction", "1", "--cache-dir", ""}

	t.Run("without --registry-config it is a usage error", func(t *testing.T) {
		root := sampleTree(t)
		before := snapshot(t, root)
		_, stderr, code := run(t, append(gc, "--delete", "--require-readonly", "--fs-root", root)...)
		if code != exitUsage || !strings.Contains(stderr, "--registry-config") {
			t.Errorf("exit %d, stderr %q; want %d naming --registry-config", code, stderr, exitUsage)
		}
		assertUnchanged(t, root, before, "storage changed")
	})

	t.Run("sweep --plan: refused the same way", func(t *testing.T) {
		root := sampleTree(t)
		cfg := registryConfigFor(t, root, false)
		before := snapshot(t, root)
		_, stderr, code := run(t, "sweep", "--plan", filepath.Join(t.TempDir(), "never-read.json"), "--delete", "--require-readonly", "--registry-config", cfg)
		if code != exitGuard || !strings.Contains(stderr, guardRegistryNotReadOnly) {
			t.Errorf("exit %d, stderr %q; want %d naming %s", code, stderr, exitGuard, guardRegistryNotReadOnly)
		}
		assertUnchanged(t, root, before, "storage changed")
	})

	t.Run("writable registry: --delete refused with exit 6, --force too", func(t *testing.T) {
		root := sampleTree(t)
		cfg := registryConfigFor(t, root, false)
		before := snapshot(t, root)
		for _, extra := range [][]string{nil, {"--force"}} {
			_, stderr, code := run(t, append(append(gc, "--delete", "--require-readonly", "--registry-config", cfg), extra...)...)
			if code != exitGuard || !strings.Contains(stderr, guardRegistryNotReadOnly) || !strings.Contains(stderr, "readonly.enabled is false") {
				t.Errorf("%v: exit %d, stderr %q; want %d naming %s and the reason", extra, code, stderr, exitGuard, guardRegistryNotReadOnly)
			}
		}
		assertUnchanged(t, root, before, "a refused run changed storage (a lock, a deletion)")
	})

	t.Run("writable registry: a dry run warns and succeeds", func(t *testing.T) {
		root := sampleTree(t)
		cfg := registryConfigFor(t, root, false)
		_, stderr, code := run(t, append(gc, "--require-readonly", "--registry-config", cfg)...)
		if code != exitOK || !strings.Contains(stderr, "a deleting run would refuse") {
			t.Errorf("exit %d, stderr %q; want 0 and a warning", code, stderr)
		}
	})

	t.Run("read-only registry: --delete deletes", func(t *testing.T) {
		root := sampleTree(t)
		cfg := registryConfigFor(t, root, true)
		before := len(snapshot(t, root))
		_, stderr, code := run(t, append(gc, "--delete", "--require-readonly", "--registry-config", cfg)...)
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if after := len(snapshot(t, root)); after >= before {
			t.Errorf("nothing deleted: %d entries before, %d after", before, after)
		}
	})

	t.Run("env override makes it read-only", func(t *testing.T) {
		root := sampleTree(t)
		cfg := registryConfigFor(t, root, false)
		t.Setenv("REGISTRY_STORAGE_MAINTENANCE_READONLY", `{"enabled": true}`)
		if _, stderr, code := run(t, append(gc, "--delete", "--require-readonly", "--registry-config", cfg)...); code != exitOK {
			t.Errorf("exit %d: %s", code, stderr)
		}
	})
}
