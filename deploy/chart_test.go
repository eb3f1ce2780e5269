// Package deploy_test checks regsweep's deployment artifacts offline: the
// Helm chart (rendered with helm template), the plain Kubernetes manifests,
// the systemd units and the Prometheus alert rules. No cluster and no schema
// download is involved: manifests are decoded strictly into the k8s.io/api
// types, then reviewed.
package deploy_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/regsweep/regsweep/internal/deploytest"
)

const chartDir = "helm/regsweep"

// kubeVersion is the oldest Kubernetes the chart supports (Chart.yaml's
// kubeVersion: CronJob timeZone is GA in 1.27). A helm built with `go
// install` assumes v1.20 otherwise.
const kubeVersion = "1.27.0"

// helmTemplate renders the chart with extra helm arguments (-f, --set) and
// returns the decoded objects, failing the test on any render or decode
// error.
func helmTemplate(t *testing.T, args ...string) []deploytest.Object {
	t.Helper()
	out, err := runHelm(t, append([]string{"template", "regsweep", chartDir, "--namespace", "registry", "--kube-version", kubeVersion}, args...)...)
	if err != nil {
		t.Fatalf("helm template %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	objs, err := deploytest.DecodeManifests(out)
	if err != nil {
		t.Fatalf("helm template %s: strict decoding: %v\n%s", strings.Join(args, " "), err, out)
	}
	return objs
}

// runHelm runs helm with its state directories in the test's temp dir, so
// nothing from the machine's helm configuration (repositories, plugins)
// takes part.
func runHelm(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	helm := deploytest.Tool(t, "helm")
	home := t.TempDir()
	cmd := exec.Command(helm, args...)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
		"KUBECONFIG="+filepath.Join(home, "no-kubeconfig"),
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return append(stdout.Bytes(), stderr.Bytes()...), err
	}
	return stdout.Bytes(), nil
}

// rendered is what the chart rendered: exactly one CronJob and its pieces.
type rendered struct {
	objs    []deploytest.Object
	cronJob *batchv1.CronJob
	pod     corev1.PodSpec
	c       corev1.Container
}

func split(t *testing.T, objs []deploytest.Object) rendered {
	t.Helper()
	r := rendered{objs: objs}
	for _, o := range objs {
		switch v := o.Value.(type) {
		case *batchv1.CronJob:
			if r.cronJob != nil {
				t.Fatalf("two CronJobs rendered")
			}
			r.cronJob = v
		case *corev1.Secret:
			t.Errorf("%s: the chart renders a Secret %q; credentials must come from existing Secrets", o.Source, o.Name)
		}
	}
	if r.cronJob == nil {
		t.Fatalf("no CronJob rendered (objects: %v)", kinds(objs))
	}
	r.pod = r.cronJob.Spec.JobTemplate.Spec.Template.Spec
	if len(r.pod.Containers) != 1 {
		t.Fatalf("%d containers", len(r.pod.Containers))
	}
	r.c = r.pod.Containers[0]
	return r
}

func kinds(objs []deploytest.Object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.Kind+" "+o.Name)
	}
	return out
}

func review(t *testing.T, r rendered, want deploytest.CronJobReview) {
	t.Helper()
	for _, err := range deploytest.ReviewCronJob(r.cronJob, want) {
		t.Error(err)
	}
}

func TestChartDefaults(t *testing.T) {
	r := split(t, helmTemplate(t))
	review(t, r, deploytest.CronJobReview{Command: "gc", Delete: false})

	if got := kinds(r.objs); len(got) != 2 {
		t.Errorf("rendered %v, want a ServiceAccount and a CronJob", got)
	}
	var sa *corev1.ServiceAccount
	for _, o := range r.objs {
		if v, ok := o.Value.(*corev1.ServiceAccount); ok {
			sa = v
		}
	}
	if sa == nil || sa.Name != r.pod.ServiceAccountName {
		t.Errorf("the pod's service account %q is not the rendered one", r.pod.ServiceAccountName)
	}
	if sa != nil && (sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken) {
		t.Errorf("the ServiceAccount automounts its token")
	}
	if r.cronJob.Spec.Schedule != "30 3 * * *" {
		t.Errorf("schedule %q", r.cronJob.Spec.Schedule)
	}
	wantArgs := map[string]string{"--grace": "2h", "--upload-grace": "168h", "--max-delete-fraction": "0.5",
		"--lock-timeout": "30m", "--log-format": "json", "--concurrency": "32", "--cache-dir": "/cache/manifests"}
	for flag, v := range wantArgs {
		if got, ok := deploytest.ArgValue(r.c.Args, flag); !ok || got != v {
			t.Errorf("%s = %q (present %t), want %q; args %q", flag, got, ok, v, r.c.Args)
		}
	}
	for _, a := range r.c.Args {
		if strings.HasPrefix(a, "--delete-untagged") || strings.HasPrefix(a, "--pushgateway") || strings.HasPrefix(a, "--registry-config") {
			t.Errorf("default args hold %q", a)
		}
	}
	if psc := r.pod.SecurityContext; psc == nil || psc.RunAsUser == nil || *psc.RunAsUser != 65532 {
		t.Errorf("pod does not run as 65532 (the image's user)")
	}
	if r.c.Image != "ghcr.io/regsweep/regsweep:0.1.0" {
		t.Errorf("image %q, want the chart's appVersion as tag", r.c.Image)
	}
}

func TestChartHarborValues(t *testing.T) {
	r := split(t, helmTemplate(t, "-f", filepath.Join(chartDir, "values-harbor.yaml")))
	review(t, r, deploytest.CronJobReview{Command: "gc", Delete: false})

	// Storage: Harbor's registry ConfigMap, mounted and passed.
	cfgPath, ok := deploytest.ArgValue(r.c.Args, "--registry-config")
	if !ok {
		t.Fatalf("no --registry-config in %q", r.c.Args)
	}
	var mount *corev1.VolumeMount
	for i, m := range r.c.VolumeMounts {
		if m.MountPath == cfgPath {
			mount = &r.c.VolumeMounts[i]
		}
	}
	if mount == nil || mount.SubPath != "config.yml" || !mount.ReadOnly {
		t.Fatalf("--registry-config=%s is not a read-only mount of config.yml: %+v", cfgPath, r.c.VolumeMounts)
	}
	var vol *corev1.Volume
	for i, v := range r.pod.Volumes {
		if v.Name == mount.Name {
			vol = &r.pod.Volumes[i]
		}
	}
	if vol == nil || vol.ConfigMap == nil || vol.ConfigMap.Name != "harbor-registry" {
		t.Fatalf("registry config volume %+v, want ConfigMap harbor-registry", vol)
	}
	if len(r.c.EnvFrom) != 1 || r.c.EnvFrom[0].SecretRef == nil || r.c.EnvFrom[0].SecretRef.Name != "harbor-registry" {
		t.Errorf("envFrom %+v, want the harbor-registry Secret (REGISTRY_STORAGE_* credentials)", r.c.EnvFrom)
	}

	// Database: harbor-core's settings and password, referenced.
	for _, name := range []string{"POSTGRESQL_HOST", "POSTGRESQL_PORT", "POSTGRESQL_USERNAME", "POSTGRESQL_DATABASE", "POSTGRESQL_SSLMODE"} {
		e, ok := deploytest.EnvVar(r.c, name)
		if !ok || e.ValueFrom == nil || e.ValueFrom.ConfigMapKeyRef == nil ||
			e.ValueFrom.ConfigMapKeyRef.Name != "harbor-core" || e.ValueFrom.ConfigMapKeyRef.Key != name {
			t.Errorf("env %s = %+v, want harbor-core ConfigMap key %s", name, e, name)
		}
	}
	if e, ok := deploytest.EnvVar(r.c, "POSTGRESQL_PASSWORD"); !ok || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil ||
		e.ValueFrom.SecretKeyRef.Name != "harbor-core" || e.ValueFrom.SecretKeyRef.Key != "POSTGRESQL_PASSWORD" {
		t.Errorf("POSTGRESQL_PASSWORD = %+v, want Secret harbor-core key POSTGRESQL_PASSWORD", e)
	}
	if e, ok := deploytest.EnvVar(r.c, "REGSWEEP_HARBOR_REDIS"); !ok || e.ValueFrom == nil || e.ValueFrom.ConfigMapKeyRef == nil ||
		e.ValueFrom.ConfigMapKeyRef.Key != "_REDIS_URL_REG" {
		t.Errorf("REGSWEEP_HARBOR_REDIS = %+v, want harbor-core's _REDIS_URL_REG", e)
	}
	if _, ok := deploytest.EnvVar(r.c, "REGSWEEP_HARBOR_DB"); ok {
		t.Errorf("REGSWEEP_HARBOR_DB set together with harbor-core's POSTGRESQL_* settings")
	}
	if got, _ := deploytest.ArgValue(r.c.Args, "--pushgateway"); !strings.HasPrefix(got, "http://") {
		t.Errorf("--pushgateway = %q", got)
	}
	if tz := r.cronJob.Spec.TimeZone; tz == nil || *tz != "Etc/UTC" {
		t.Errorf("timeZone %v", tz)
	}

	// An audit in Harbor mode reads the database but never purges Redis.
	audit := split(t, helmTemplate(t, "-f", filepath.Join(chartDir, "values-harbor.yaml"), "--set", "command=audit"))
	review(t, audit, deploytest.CronJobReview{Command: "audit"})
	if _, ok := deploytest.EnvVar(audit.c, "POSTGRESQL_HOST"); !ok {
		t.Errorf("the Harbor audit has no database settings")
	}
	if _, ok := deploytest.EnvVar(audit.c, "REGSWEEP_HARBOR_REDIS"); ok {
		t.Errorf("the Harbor audit is given the Redis URL (audit has no --harbor-redis)")
	}
}

func TestChartDeleteOnlyWhenEnabled(t *testing.T) {
	harbor := filepath.Join(chartDir, "values-harbor.yaml")
	cases := []struct {
		name   string
		args   []string
		review deploytest.CronJobReview
		pvcRO  bool // the registry volume is mounted read-only
	}{
		{"dry run", []string{"-f", harbor, "--set", "storage.persistentVolumeClaim.claimName=harbor-registry"},
			deploytest.CronJobReview{Command: "gc", Delete: false}, true},
		{"delete", []string{"-f", harbor, "--set", "gc.delete=true", "--set", "storage.persistentVolumeClaim.claimName=harbor-registry"},
			deploytest.CronJobReview{Command: "gc", Delete: true}, false},
		{"audit ignores gc.delete", []string{"--set", "command=audit", "--set", "gc.delete=true", "--set", "storage.persistentVolumeClaim.claimName=registry"},
			deploytest.CronJobReview{Command: "audit", Delete: false}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := split(t, helmTemplate(t, tc.args...))
			review(t, r, tc.review)
			var found bool
			for _, m := range r.c.VolumeMounts {
				if m.Name == "registry-storage" {
					found = true
					if m.ReadOnly != tc.pvcRO || m.MountPath != "/storage" {
						t.Errorf("registry volume mount %+v, want readOnly %t at /storage", m, tc.pvcRO)
					}
				}
			}
			if !found {
				t.Errorf("no registry-storage mount")
			}
			if tc.review.Command == "audit" {
				if v, _ := deploytest.ArgValue(r.c.Args, "--fail-on"); v != "broken" {
					t.Errorf("audit --fail-on = %q", v)
				}
				if _, ok := deploytest.ArgValue(r.c.Args, "--grace"); ok {
					t.Errorf("audit got gc flags: %q", r.c.Args)
				}
			}
		})
	}
}

func TestChartHarborDatabaseURLSecret(t *testing.T) {
	r := split(t, helmTemplate(t,
		"--set", "harbor.enabled=true",
		"--set", "harbor.database.urlSecret.name=regsweep-harbor",
		"--set", "harbor.database.urlSecret.key=url",
		"--set", "harbor.redis.urlFrom.secretKeyRef.name=regsweep-harbor",
		"--set", "harbor.redis.urlFrom.secretKeyRef.key=redis",
		"--set", "harbor.history=false",
		"--set", "storage.registryConfig.secret=registry-config",
	))
	review(t, r, deploytest.CronJobReview{Command: "gc"})
	e, ok := deploytest.EnvVar(r.c, "REGSWEEP_HARBOR_DB")
	if !ok || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != "regsweep-harbor" || e.ValueFrom.SecretKeyRef.Key != "url" {
		t.Errorf("REGSWEEP_HARBOR_DB = %+v", e)
	}
	if _, ok := deploytest.EnvVar(r.c, "POSTGRESQL_HOST"); ok {
		t.Errorf("POSTGRESQL_HOST set together with a database URL")
	}
	if e, ok := deploytest.EnvVar(r.c, "REGSWEEP_HARBOR_REDIS"); !ok || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Key != "redis" {
		t.Errorf("REGSWEEP_HARBOR_REDIS = %+v", e)
	}
	if v, ok := deploytest.ArgValue(r.c.Args, "--harbor-history"); !ok || v != "false" {
		t.Errorf("--harbor-history=false missing: %q", r.c.Args)
	}
	var secretVol bool
	for _, v := range r.pod.Volumes {
		secretVol = secretVol || (v.Secret != nil && v.Secret.SecretName == "registry-config")
	}
	if !secretVol {
		t.Errorf("storage.registryConfig.secret is not mounted from the Secret: %+v", r.pod.Volumes)
	}
}

// TestChartRejectsBadValues: values that would run something else than
// asked, or put a credential into the manifest, fail the render with a
// message naming the problem.
func TestChartRejectsBadValues(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown command", []string{"--set", "command=rm"}, "command"},
		{"delete as a string", []string{"--set-string", "gc.delete=yes"}, "delete"},
		{"misspelt key", []string{"--set", "gc.dleete=true"}, "dleete"},
		{"unknown top-level key", []string{"--set", "schedul=x"}, "schedul"},
		{"inline redis URL", []string{"--set", "harbor.redis.urlFrom.value=redis://:pw@redis:6379/2"}, "value"},
		{"harbor without a database", []string{"--set", "harbor.enabled=true"}, "harbor.database"},
		{"both config sources", []string{"--set", "storage.registryConfig.configMap=a", "--set", "storage.registryConfig.secret=b"}, "not both"},
		{"fraction above 1", []string{"--set", "gc.maxDeleteFraction=2"}, "maxDeleteFraction"},
		{"bad duration", []string{"--set", "gc.grace=two hours"}, "grace"},
		{"bad fail-on", []string{"--set", "audit.failOn=everything"}, "failOn"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runHelm(t, append([]string{"template", "regsweep", chartDir, "--kube-version", kubeVersion}, tc.args...)...)
			if err == nil {
				t.Fatalf("helm template %q rendered:\n%s", tc.args, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("helm template %q failed without naming %q:\n%s", tc.args, tc.want, out)
			}
		})
	}
}

func TestChartLint(t *testing.T) {
	for _, values := range []string{"values.yaml", "values-harbor.yaml"} {
		out, err := runHelm(t, "lint", "--strict", "--kube-version", kubeVersion, chartDir, "-f", filepath.Join(chartDir, values))
		if err != nil {
			t.Errorf("helm lint --strict with %s: %v\n%s", values, err, out)
		}
	}
}

func TestPlainManifests(t *testing.T) {
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests under deploy/kubernetes (%v)", err)
	}
	var cronJobs int
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := deploytest.DecodeManifests(data)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		for _, o := range objs {
			switch v := o.Value.(type) {
			case *batchv1.CronJob:
				cronJobs++
				for _, err := range deploytest.ReviewCronJob(v, deploytest.CronJobReview{Command: "gc", Delete: false}) {
					t.Errorf("%s: CronJob %s: %v", f, v.Name, err)
				}
				pod := v.Spec.JobTemplate.Spec.Template.Spec
				if sa := pod.ServiceAccountName; sa != "" && !hasObject(objs, "v1/ServiceAccount", sa) {
					t.Errorf("%s: CronJob uses ServiceAccount %q, not defined in the file", f, sa)
				}
			case *corev1.Secret:
				t.Errorf("%s: defines Secret %s; credentials belong in a Secret the operator creates", f, v.Name)
			}
		}
	}
	if cronJobs == 0 {
		t.Errorf("no CronJob under deploy/kubernetes")
	}
}

func hasObject(objs []deploytest.Object, kind, name string) bool {
	for _, o := range objs {
		if o.Kind == kind && o.Name == name {
			return true
		}
	}
	return false
}
