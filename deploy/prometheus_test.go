package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/regsweep/regsweep/internal/deploytest"
)

const alertRules = "prometheus/regsweep-alerts.yaml"

// ruleTests are promtool's unit tests of the rules: minutes and hours in
// one file, weeks (evaluated every 30 minutes) in the other.
var ruleTests = []string{"prometheus/regsweep-alerts_test.yaml", "prometheus/regsweep-alerts-long_test.yaml"}

// TestAlertRulesPromtool runs Prometheus's own checker on the rules and
// their unit tests (each alert fires when it should, and not before).
func TestAlertRulesPromtool(t *testing.T) {
	promtool := deploytest.Tool(t, "promtool")
	for _, args := range [][]string{
		{"check", "rules", alertRules},
		append([]string{"test", "rules"}, ruleTests...),
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

var metricName = regexp.MustCompile(`\bregsweep_[a-z_]+\b`)

// TestAlertRulesReview: every alert has a severity and says what to do;
// every regsweep metric it reads is one regsweep writes (named in
// reports/); the exit status is covered for both Kubernetes and systemd;
// and every alert has a promtool unit test.
func TestAlertRulesReview(t *testing.T) {
	data, err := os.ReadFile(alertRules)
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("%s: %v", alertRules, err)
	}
	var tests []byte
	for _, f := range ruleTests {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		tests = append(tests, data...)
	}
	emitted := emittedMetrics(t)
	alerts := map[string]bool{}
	used := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts[r.Alert] = true
			if s := r.Labels["severity"]; s != "critical" && s != "warning" && s != "info" {
				t.Errorf("%s: severity %q", r.Alert, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: summary or description missing", r.Alert)
			}
			if !strings.Contains(string(tests), "alertname: "+r.Alert+"\n") {
				t.Errorf("%s has no promtool unit test", r.Alert)
			}
			for _, m := range metricName.FindAllString(r.Expr, -1) {
				used[m] = true
			}
		}
	}
	for _, want := range []string{"RegsweepGCNotSucceeding", "RegsweepBrokenFindings", "RegsweepRunFailed", "RegsweepMetricsAbsent",
		"RegsweepCronJobNotSucceeding", "RegsweepSystemdUnitFailed"} {
		if !alerts[want] {
			t.Errorf("no alert %s", want)
		}
	}
	if !used["regsweep_last_success_timestamp_seconds"] {
		t.Errorf("no alert reads regsweep_last_success_timestamp_seconds")
	}
	var unknown []string
	for m := range used {
		if !emitted[m] {
			unknown = append(unknown, m)
		}
	}
	sort.Strings(unknown)
	if len(unknown) > 0 {
		t.Errorf("alerts read metrics regsweep does not write (no %q string in reports/): %v", "name", unknown)
	}
}

// emittedMetrics returns the metric names written as string literals in
// the reports package, where regsweep's metrics are defined.
func emittedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	files, err := filepath.Glob("../reports/*.go")
	if err != nil {
		t.Fatal(err)
	}
	quoted := regexp.MustCompile(`"(regsweep_[a-z_]+)"`)
	out := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range quoted.FindAllStringSubmatch(string(data), -1) {
			out[m[1]] = true
		}
	}
	if len(out) == 0 {
		t.Fatalf("no regsweep_* metric names found in reports/")
	}
	return out
}
