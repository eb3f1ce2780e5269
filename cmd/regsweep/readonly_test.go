package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/regsweep/regsweep/gc"
)

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
	gcArgs := []string{"gc", "--delete-untagged", "--grace", "0s", "--upload-grace", "0s", "--max-delete-fraction", "1", "--cache-dir", ""}

	t.Run("without --registry-config it is a usage error", func(t *testing.T) {
		root := sampleTree(t)
		before := snapshot(t, root)
		_, stderr, code := run(t, append(gcArgs, "--delete", "--require-readonly", "--fs-root", root)...)
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
		if code != exitGuard || !strings.Contains(stderr, gc.GuardRegistryNotReadOnly) {
			t.Errorf("exit %d, stderr %q; want %d naming %s", code, stderr, exitGuard, gc.GuardRegistryNotReadOnly)
		}
		assertUnchanged(t, root, before, "storage changed")
	})

	t.Run("writable registry: --delete refused with exit 6, --force too", func(t *testing.T) {
		root := sampleTree(t)
		cfg := registryConfigFor(t, root, false)
		before := snapshot(t, root)
		for _, extra := range [][]string{nil, {"--force"}} {
			_, stderr, code := run(t, append(append(gcArgs, "--delete", "--require-readonly", "--registry-config", cfg), extra...)...)
			if code != exitGuard || !strings.Contains(stderr, gc.GuardRegistryNotReadOnly) || !strings.Contains(stderr, "readonly.enabled is false") {
				t.Errorf("%v: exit %d, stderr %q; want %d naming %s and the reason", extra, code, stderr, exitGuard, gc.GuardRegistryNotReadOnly)
			}
		}
		assertUnchanged(t, root, before, "a refused run changed storage (a lock, a deletion)")
	})

	t.Run("writable registry: a dry run warns and succeeds", func(t *testing.T) {
		root := sampleTree(t)
		cfg := registryConfigFor(t, root, false)
		_, stderr, code := run(t, append(gcArgs, "--require-readonly", "--registry-config", cfg)...)
		if code != exitOK || !strings.Contains(stderr, "a deleting run would refuse") {
			t.Errorf("exit %d, stderr %q; want 0 and a warning", code, stderr)
		}
	})

	t.Run("read-only registry: --delete deletes", func(t *testing.T) {
		root := sampleTree(t)
		cfg := registryConfigFor(t, root, true)
		before := len(snapshot(t, root))
		_, stderr, code := run(t, append(gcArgs, "--delete", "--require-readonly", "--registry-config", cfg)...)
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
		if _, stderr, code := run(t, append(gcArgs, "--delete", "--require-readonly", "--registry-config", cfg)...); code != exitOK {
			t.Errorf("exit %d: %s", code, stderr)
		}
	})
}
