package deploy_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	batchv1 "k8s.io/api/batch/v1"

	"github.com/regsweep/regsweep/internal/deploytest"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// regsweepBinary builds cmd/regsweep once per test binary.
func regsweepBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "regsweep-deploy-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "regsweep")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/regsweep").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

var helpFlag = regexp.MustCompile(`(?m)^\s+(?:-[a-zA-Z], )?--([a-z0-9-]+)`)

// cliFlags returns the flags `regsweep <command> --help` lists (the
// command's own and the global ones).
func cliFlags(t *testing.T, command string) map[string]bool {
	t.Helper()
	out, err := exec.Command(regsweepBinary(t), command, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("regsweep %s --help: %v\n%s", command, err, out)
	}
	flags := map[string]bool{}
	for _, m := range helpFlag.FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	if !flags["help"] {
		t.Fatalf("regsweep %s --help lists no flags:\n%s", command, out)
	}
	return flags
}

// invocation is one way a deployment artifact runs regsweep.
type invocation struct {
	where string
	args  []string // command first
	env   []string // REGSWEEP_* names set
}

// TestArtifactsUseExistingFlags: every flag and REGSWEEP_* variable the
// chart (in each mode), the plain manifests and the systemd unit pass
// exists in the regsweep being built, for the command it is passed to.
func TestArtifactsUseExistingFlags(t *testing.T) {
	var runs []invocation
	fromCronJob := func(where string, cj *batchv1.CronJob) {
		c := cj.Spec.JobTemplate.Spec.Template.Spec.Containers[0]
		inv := invocation{where: where, args: c.Args}
		for _, e := range c.Env {
			if strings.HasPrefix(e.Name, "REGSWEEP_") {
				inv.env = append(inv.env, e.Name)
			}
		}
		runs = append(runs, inv)
	}
	harbor := filepath.Join(chartDir, "values-harbor.yaml")
	for name, args := range map[string][]string{
		"chart defaults":      nil,
		"chart harbor":        {"-f", harbor},
		"chart harbor delete": {"-f", harbor, "--set", "gc.delete=true,gc.deleteUntagged=true,harbor.history=false,quiet=true"},
		"chart harbor audit":  {"-f", harbor, "--set", "command=audit,audit.verify=true"},
		"chart harbor db url": {"--set", "harbor.enabled=true,harbor.database.urlSecret.name=s,harbor.database.urlSecret.key=k"},
	} {
		fromCronJob(name, split(t, helmTemplate(t, args...)).cronJob)
	}
	files, _ := filepath.Glob("kubernetes/*.yaml")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := deploytest.DecodeManifests(data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, o := range objs {
			if cj, ok := o.Value.(*batchv1.CronJob); ok {
				fromCronJob(f, cj)
			}
		}
	}
	for _, line := range unitValues(t, "systemd/regsweep.service", "ExecStart") {
		runs = append(runs, invocation{where: "systemd/regsweep.service", args: strings.Fields(line)[1:]})
	}

	known := map[string]map[string]bool{}
	missing := map[string][]string{}
	for _, r := range runs {
		command := r.args[0]
		if known[command] == nil {
			known[command] = cliFlags(t, command)
		}
		flags := known[command]
		var names []string
		for _, a := range r.args[1:] {
			if strings.HasPrefix(a, "--") {
				name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
				names = append(names, name)
			}
		}
		for _, e := range r.env {
			names = append(names, strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(e, "REGSWEEP_")), "_", "-"))
		}
		for _, n := range names {
			if !flags[n] {
				missing[command+" --"+n] = append(missing[command+" --"+n], r.where)
			}
		}
	}
	var keys []string
	for k := range missing {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		t.Errorf("regsweep %s does not exist (used by %s)", k, strings.Join(missing[k], ", "))
	}
}
