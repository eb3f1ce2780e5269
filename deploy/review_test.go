package deploy_test

import (
	"os"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/regsweep/regsweep/internal/deploytest"
)

// The checks the other tests rely on must catch what they claim to: each
// case breaks the plain CronJob in one way and expects the review (or the
// strict decoder) to name it.

func plainCronJob(t *testing.T) *batchv1.CronJob {
	t.Helper()
	data, err := os.ReadFile("kubernetes/regsweep.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := deploytest.DecodeManifests(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if cj, ok := o.Value.(*batchv1.CronJob); ok {
			return cj
		}
	}
	t.Fatal("no CronJob in kubernetes/regsweep.yaml")
	return nil
}

func TestReviewCatchesMistakes(t *testing.T) {
	yes, no, root := true, false, int64(0)
	cases := []struct {
		name   string
		break_ func(cj *batchv1.CronJob)
		want   string
	}{
		{"6-field schedule", func(cj *batchv1.CronJob) { cj.Spec.Schedule = "0 30 3 * * *" }, "6-field"},
		{"hour 24", func(cj *batchv1.CronJob) { cj.Spec.Schedule = "0 24 * * *" }, "outside 0-23"},
		{"TZ prefix", func(cj *batchv1.CronJob) { cj.Spec.Schedule = "TZ=UTC 0 3 * * *" }, "timeZone"},
		{"bad time zone", func(cj *batchv1.CronJob) { tz := "Mars/Olympus"; cj.Spec.TimeZone = &tz }, "IANA"},
		{"Allow", func(cj *batchv1.CronJob) { cj.Spec.ConcurrencyPolicy = batchv1.AllowConcurrent }, "Forbid"},
		{"root pod", func(cj *batchv1.CronJob) { pod(cj).SecurityContext.RunAsNonRoot = &no }, "runAsNonRoot"},
		{"uid 0", func(cj *batchv1.CronJob) { pod(cj).SecurityContext.RunAsUser = &root }, "uid 0"},
		{"writable root", func(cj *batchv1.CronJob) { ctr(cj).SecurityContext.ReadOnlyRootFilesystem = &no }, "readOnlyRootFilesystem"},
		{"escalation", func(cj *batchv1.CronJob) { ctr(cj).SecurityContext.AllowPrivilegeEscalation = &yes }, "allowPrivilegeEscalation"},
		{"caps kept", func(cj *batchv1.CronJob) { ctr(cj).SecurityContext.Capabilities.Drop = nil }, "drop ALL"},
		{"delete by default", func(cj *batchv1.CronJob) { ctr(cj).Args = append(ctr(cj).Args, "--delete") }, "--delete present = true"},
		{"inline secret env", func(cj *batchv1.CronJob) {
			ctr(cj).Env = append(ctr(cj).Env, corev1.EnvVar{Name: "REGSWEEP_S3_SECRET_KEY", Value: "hunter2"})
		}, "written into the manifest"},
		{"inline harbor db", func(cj *batchv1.CronJob) {
			ctr(cj).Env = append(ctr(cj).Env, corev1.EnvVar{Name: "REGSWEEP_HARBOR_DB", Value: "postgres://harbor@db/registry"})
		}, "REGSWEEP_HARBOR_DB"},
		{"secret in a flag", func(cj *batchv1.CronJob) { ctr(cj).Args = append(ctr(cj).Args, "--s3-secret-key=hunter2") }, "credential"},
		{"password in a URL", func(cj *batchv1.CronJob) {
			ctr(cj).Args = append(ctr(cj).Args, "--harbor-db=postgres://harbor:pw@db/registry")
		}, "credential"},
		{"cache on the root fs", func(cj *batchv1.CronJob) {
			for i, a := range ctr(cj).Args {
				if strings.HasPrefix(a, "--cache-dir=") {
					ctr(cj).Args[i] = "--cache-dir=/var/cache/regsweep"
				}
			}
		}, "/var/cache/regsweep is not on a writable volume"},
		{"token mounted", func(cj *batchv1.CronJob) { pod(cj).AutomountServiceAccountToken = nil }, "service account token"},
		{"retries", func(cj *batchv1.CronJob) { cj.Spec.JobTemplate.Spec.BackoffLimit = nil }, "backoffLimit"},
		{"mount without volume", func(cj *batchv1.CronJob) {
			ctr(cj).VolumeMounts = append(ctr(cj).VolumeMounts, corev1.VolumeMount{Name: "nope", MountPath: "/x"})
		}, "has no volume"},
		{"name too long", func(cj *batchv1.CronJob) { cj.Name = strings.Repeat("r", 53) }, "52"},
	}
	base := plainCronJob(t)
	if errs := deploytest.ReviewCronJob(base, deploytest.CronJobReview{Command: "gc"}); len(errs) > 0 {
		t.Fatalf("the plain CronJob itself fails review: %v", errs)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cj := base.DeepCopy()
			tc.break_(cj)
			errs := deploytest.ReviewCronJob(cj, deploytest.CronJobReview{Command: "gc"})
			var msgs []string
			for _, e := range errs {
				msgs = append(msgs, e.Error())
			}
			if !strings.Contains(strings.Join(msgs, "\n"), tc.want) {
				t.Errorf("review did not report %q; it said %q", tc.want, msgs)
			}
		})
	}
}

func pod(cj *batchv1.CronJob) *corev1.PodSpec { return &cj.Spec.JobTemplate.Spec.Template.Spec }
func ctr(cj *batchv1.CronJob) *corev1.Container {
	return &cj.Spec.JobTemplate.Spec.Template.Spec.Containers[0]
}

func TestDecodeIsStrict(t *testing.T) {
	good := "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: regsweep\n"
	if _, err := deploytest.DecodeManifests([]byte(good)); err != nil {
		t.Fatalf("a valid ServiceAccount: %v", err)
	}
	cases := map[string]string{
		"unknown field":      good + "automountToken: false\n",
		"duplicate key":      good + "metadata:\n  name: again\n",
		"wrong type":         good + "automountServiceAccountToken: \"no\"\n",
		"unknown kind":       "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n",
		"old API version":    "apiVersion: batch/v1beta1\nkind: CronJob\nmetadata:\n  name: c\n",
		"no name":            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {}\n",
		"nested unknown":     "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: c\nspec:\n  schedule: '* * * * *'\n  concurrency: Forbid\n",
		"number in data":     "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: 1\n",
		"second doc unknown": good + "---\n" + good + "extra: 1\n",
	}
	for name, doc := range cases {
		if _, err := deploytest.DecodeManifests([]byte(doc)); err == nil {
			t.Errorf("%s: decoded without error:\n%s", name, doc)
		}
	}
}

func TestCronSchedules(t *testing.T) {
	for _, ok := range []string{"30 3 * * *", "*/15 * * * *", "0 0 1 JAN,jul *", "0 3 * * MON-FRI", "0 0 ? * 6", "5,35 1-5/2 * * *", "@daily", "@every 6h"} {
		if err := deploytest.CheckCronSchedule(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "* * * *", "0 0 0 * * *", "60 * * * *", "* * 0 * *", "* * * 13 *", "* * * * 7", "5-1 * * * *",
		"*/0 * * * *", "? * * * *", "@fortnightly", "@every soon", "CRON_TZ=UTC 0 3 * * *", "a b c d e"} {
		if err := deploytest.CheckCronSchedule(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
