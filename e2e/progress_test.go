package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/creack/pty"

	"github.com/regsweep/regsweep/internal/regtree"
	"github.com/regsweep/regsweep/storage/filesystem"
)

// progressTree is a small filesystem registry: enough for each stage to
// have something to count.
func progressTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	d, err := filesystem.New(root, 8, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = regtree.Generate(context.Background(), d, regtree.Spec{Seed: 3, Repositories: 6, ImagesPerRepo: 3, TagsPerRepo: 2,
		LayersPerImg: 3, SharedLayers: 2, OrphanBlobs: 3, LayerSize: 2048, MultiArch: true}, 8)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// runOnTerminal runs regsweep with its stderr on a pseudo-terminal and
// returns what the terminal received, and stdout.
func runOnTerminal(t *testing.T, args ...string) (term, stdout string) {
	t.Helper()
	master, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	if err := pty.Setsize(master, &pty.Winsize{Rows: 40, Cols: 160}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(regsweepBinary(t), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, tty
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close() // the child holds it now
	var got bytes.Buffer
	io.Copy(&got, master) // until the child exits (EIO on Linux)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("regsweep %v: %v\n%s", args, err, got.String())
	}
	return got.String(), out.String()
}

// TestProgressAudit: audit shows a live line for each stage on a
// terminal and erases it, logs each stage's start and end elsewhere, and
// shows neither with --quiet.
func TestProgressAudit(t *testing.T) {
	root := progressTree(t)
	args := func(extra ...string) []string {
		return append([]string{"audit", "--fs-root", root, "--cache-dir", t.TempDir(), "--verify", "--format", "json", "--fail-on", "none"}, extra...)
	}
	// What each stage's line says: its name, then its count and rate; the
	// mark's also where its manifests came from (read during the walk by
	// the prefetch, or from storage when asked).
	lines := map[string][]string{
		"walk":   {"keys, ", "keys/s"},
		"mark":   {"manifests (", "manifests/s"},
		"verify": {"iB of ", "iB/s"},
	}
	origin := func(line string) bool {
		return strings.Contains(line, "from storage ") || strings.Contains(line, "prefetched ") || strings.Contains(line, "from cache ")
	}

	t.Run("terminal", func(t *testing.T) {
		term, stdout := runOnTerminal(t, args()...)
		if !json.Valid([]byte(stdout)) {
			t.Errorf("stdout is not the JSON report alone: %.300q", stdout)
		}
		for stage, parts := range lines {
			found := false
			for _, line := range strings.Split(term, "\n") {
				if i := strings.Index(line, stage+" "); i >= 0 && containsAll(line[i:], parts) && (stage != "mark" || origin(line[i:])) {
					found = true
				}
			}
			if !found {
				t.Errorf("no progress line for %s (%q) on the terminal:\n%q", stage, parts, term)
			}
		}
		// The line is erased at the end: the last thing written is the
		// cursor-up-and-clear, with no stage line after it.
		last := strings.LastIndex(term, "\x1b[J")
		if last < 0 || strings.TrimSpace(term[last+len("\x1b[J"):]) != "" {
			t.Errorf("the progress line was not erased at the end:\n%q", term)
		}
	})

	t.Run("log", func(t *testing.T) {
		cmd := exec.Command(regsweepBinary(t), args("--log-format", "json")...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("audit: %v\n%s", err, stderr.String())
		}
		if strings.Contains(stderr.String(), "\x1b[") || strings.Contains(stderr.String(), "\r") {
			t.Errorf("terminal control sequences in a log: %q", stderr.String())
		}
		states := map[string][]string{}
		done := map[string]float64{}
		for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("stderr line is not a JSON log line: %q", line)
			}
			if rec["msg"] != "progress" {
				continue
			}
			stage, _ := rec["stage"].(string)
			state, _ := rec["state"].(string)
			states[stage] = append(states[stage], state)
			if state == "done" {
				done[stage], _ = rec["done"].(float64)
			}
		}
		for stage := range lines {
			s := states[stage]
			if len(s) < 2 || s[0] != "started" || s[len(s)-1] != "done" {
				t.Errorf("%s logged %v, want started ... done", stage, s)
			}
			if done[stage] <= 0 {
				t.Errorf("%s's done line counts %v", stage, done[stage])
			}
		}
	})

	t.Run("quiet", func(t *testing.T) {
		term, _ := runOnTerminal(t, args("--quiet")...)
		if strings.Contains(term, "\x1b[") || strings.Contains(term, "keys") || strings.Contains(term, "progress") {
			t.Errorf("--quiet drew or logged progress:\n%q", term)
		}
		cmd := exec.Command(regsweepBinary(t), args("--quiet", "--log-format", "json")...)
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = io.Discard, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("audit --quiet: %v\n%s", err, stderr.String())
		}
		if stderr.Len() != 0 {
			t.Errorf("--quiet logged: %q", stderr.String())
		}
	})
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// TestProgressGCAndSweep: gc --delete and sweep --plan --delete show a live
// line for the walk, the mark (gc) and the sweep on a terminal, log each
// stage's start and end elsewhere, and show neither with --quiet (issue 20).
func TestProgressGCAndSweep(t *testing.T) {
	type run struct {
		name   string
		args   func(root, plan string) []string
		stages map[string][]string
	}
	runs := []run{
		{"gc", func(root, _ string) []string {
			return []string{"gc", "--fs-root", root, "--delete", "--delete-untagged", "--grace", "0s", "--upload-grace", "0s",
				"--max-delete-fraction", "1", "--cache-dir", ""}
		}, map[string][]string{"walk": {"keys, ", "keys/s"}, "mark": {"manifests (", "manifests/s"}, "sweep": {"items (", "items/s"}}},
		{"sweep", func(root, plan string) []string {
			return []string{"sweep", "--fs-root", root, "--plan", plan, "--delete", "--max-delete-fraction", "1", "--cache-dir", ""}
		}, map[string][]string{"sweep": {"items (", "items/s"}}},
	}
	// prepare makes a tree with garbage and, for sweep, its plan.
	prepare := func(t *testing.T) (root, plan string) {
		root = progressTree(t)
		plan = filepath.Join(t.TempDir(), "plan.json")
		cmd := exec.Command(regsweepBinary(t), "gc", "--fs-root", root, "--delete-untagged", "--grace", "0s", "--upload-grace", "0s",
			"--max-delete-fraction", "1", "--cache-dir", "", "--plan-out", plan, "--quiet")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("gc --plan-out: %v\n%s", err, out)
		}
		return root, plan
	}
	for _, r := range runs {
		t.Run(r.name+"/terminal", func(t *testing.T) {
			root, plan := prepare(t)
			term, _ := runOnTerminal(t, r.args(root, plan)...)
			for stage, parts := range r.stages {
				found := false
				for _, line := range strings.Split(term, "\n") {
					if i := strings.Index(line, stage+" "); i >= 0 && containsAll(line[i:], parts) {
						found = true
					}
				}
				if !found {
					t.Errorf("no progress line for %s (%q) on the terminal:\n%q", stage, parts, term)
				}
			}
			if last := strings.LastIndex(term, "\x1b[J"); last < 0 || strings.Contains(term[last:], "items (") {
				t.Errorf("the progress line was not erased at the end:\n%q", term)
			}
		})
		t.Run(r.name+"/log", func(t *testing.T) {
			root, plan := prepare(t)
			cmd := exec.Command(regsweepBinary(t), append(r.args(root, plan), "--log-format", "json")...)
			var stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = io.Discard, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("%v\n%s", err, stderr.String())
			}
			states := map[string][]string{}
			for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
				var rec map[string]any
				if err := json.Unmarshal([]byte(line), &rec); err != nil {
					t.Fatalf("stderr line is not a JSON log line: %q", line)
				}
				if rec["msg"] == "progress" {
					stage, _ := rec["stage"].(string)
					state, _ := rec["state"].(string)
					states[stage] = append(states[stage], state)
				}
			}
			for stage := range r.stages {
				if s := states[stage]; len(s) < 2 || s[0] != "started" || s[len(s)-1] != "done" {
					t.Errorf("%s logged %v, want started ... done", stage, s)
				}
			}
		})
		t.Run(r.name+"/quiet", func(t *testing.T) {
			root, plan := prepare(t)
			term, _ := runOnTerminal(t, append(r.args(root, plan), "--quiet")...)
			if strings.Contains(term, "\x1b[") || strings.Contains(term, "items") || strings.Contains(term, "progress") {
				t.Errorf("--quiet drew or logged progress:\n%q", term)
			}
		})
	}
}
