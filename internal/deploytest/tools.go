// Package deploytest holds what the tests of regsweep's deployment artifacts
// (deploy/ and the container image) share: finding the tools that
// testenv/install.sh installs (ko, helm, promtool), strict offline decoding
// of Kubernetes manifests into the k8s.io/api types, and the checks a
// reviewer makes on a regsweep CronJob.
//
// Test support only: it may not be imported by product code.
package deploytest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const howToInstall = "run `make testenv-install` (or `bash testenv/install.sh`)"

// Tool returns the path of an executable installed by testenv/install.sh,
// failing the test (never skipping it) when it is missing. It looks at
// $REGSWEEP_TEST_<NAME>, then $REGSWEEP_TOOLS (default
// ~/.cache/regsweep-testenv/bin), then PATH, where Debian's packages put
// promtool and systemd-analyze.
func Tool(tb testing.TB, name string) string {
	tb.Helper()
	envName := "REGSWEEP_TEST_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
	if p := os.Getenv(envName); p != "" {
		if isExecutable(p) {
			return p
		}
		tb.Fatalf("%s is not installed at %s (%s): %s", name, p, envName, howToInstall)
	}
	for _, dir := range toolDirs() {
		if p := filepath.Join(dir, name); isExecutable(p) {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	tb.Fatalf("%s is not installed (not in %s nor on PATH): %s", name, strings.Join(toolDirs(), ", "), howToInstall)
	return ""
}

func toolDirs() []string {
	if d := os.Getenv("REGSWEEP_TOOLS"); d != "" {
		return []string{d}
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return nil
	}
	return []string{filepath.Join(home, ".cache", "regsweep-testenv", "bin")}
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// RepoRoot returns the module's root directory (where go.mod is), found
// upwards from the test's working directory.
func RepoRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatalf("no go.mod above the test's directory")
		}
		dir = parent
	}
}
