package deploy_test

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/regsweep/regsweep/internal/deploytest"
)

// unitValues returns every value of key in the unit file's sections.
func unitValues(t *testing.T, path, key string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") && strings.TrimSpace(k) == key {
			out = append(out, strings.TrimSpace(v))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

const unitBinary = "/usr/local/bin/regsweep"

// TestSystemdUnits verifies the service and timer with systemd-analyze:
// `verify` (unit syntax, every directive known, the timer's calendar and
// the executable; ExecStart is pointed at a freshly built regsweep, the
// only change), `calendar` for OnCalendar, and `security --offline` for
// the sandboxing (exposure at most 2.0 of 10).
func TestSystemdUnits(t *testing.T) {
	analyze := deploytest.Tool(t, "systemd-analyze")
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}

	service, err := os.ReadFile("systemd/regsweep.service")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(service, []byte("ExecStart="+unitBinary+" ")) {
		t.Fatalf("ExecStart does not run %s", unitBinary)
	}
	dir := t.TempDir()
	svc := filepath.Join(dir, "regsweep.service")
	if err := os.WriteFile(svc, bytes.ReplaceAll(service, []byte(unitBinary), []byte(bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	timer, err := os.ReadFile("systemd/regsweep.timer")
	if err != nil {
		t.Fatal(err)
	}
	tmr := filepath.Join(dir, "regsweep.timer")
	if err := os.WriteFile(tmr, timer, 0o644); err != nil {
		t.Fatal(err)
	}

	run := func(args ...string) (string, error) {
		cmd := exec.Command(analyze, args...)
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	// verify prints a warning for an unknown directive without failing: any
	// output is a failure too.
	if out, err := run("verify", "--man=no", svc, tmr); err != nil || out != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	cals := unitValues(t, "systemd/regsweep.timer", "OnCalendar")
	if len(cals) == 0 {
		t.Errorf("the timer has no OnCalendar")
	}
	for _, cal := range cals {
		if out, err := run("calendar", cal); err != nil {
			t.Errorf("OnCalendar=%s: %v\n%s", cal, err, out)
		}
	}
	if out, err := run("security", "--offline=yes", "--threshold=20", svc); err != nil {
		t.Errorf("systemd-analyze security: exposure above 2.0 (%v)\n%s", err, out)
	}

	// As shipped the service is a dry run.
	execs := unitValues(t, "systemd/regsweep.service", "ExecStart")
	if len(execs) != 1 {
		t.Fatalf("ExecStart lines: %q", execs)
	}
	args := strings.Fields(execs[0])[1:]
	if args[0] != "gc" {
		t.Errorf("ExecStart runs %q, want gc", args[0])
	}
	for _, a := range args {
		if a == "--delete" {
			t.Errorf("the shipped service deletes: %s", execs[0])
		}
	}
	if got := unitValues(t, "systemd/regsweep.service", "Type"); len(got) != 1 || got[0] != "oneshot" {
		t.Errorf("Type=%q, want oneshot", got)
	}
	if got := unitValues(t, "systemd/regsweep.timer", "Persistent"); len(got) != 1 || got[0] != "true" {
		t.Errorf("Persistent=%q: a run missed while the machine was off would be skipped", got)
	}
}
