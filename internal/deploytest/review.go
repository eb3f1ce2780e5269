package deploytest

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// sensitiveEnv names environment variables that carry credentials: they
// must come from a Secret (or, for Harbor's Redis URL, the ConfigMap Harbor
// itself keeps it in), never be written into the manifest.
var sensitiveEnv = regexp.MustCompile(`(?i)(PASSWORD|SECRET|ACCESS_?KEY|TOKEN|CREDENTIAL|_DB$|_REDIS$|DSN|_URL_REG$)`)

// secretInArg catches credentials passed on the command line: a URL with
// user:password@, or a --*password/--*secret*/--*key flag with a value.
var secretInArg = regexp.MustCompile(`(?i)(://[^/@\s]+:[^/@\s]*@|^--[a-z0-9-]*(password|secret|access-key|token)[a-z0-9-]*=.)`)

// CronJobReview is what a reviewer expects of a regsweep CronJob.
type CronJobReview struct {
	// Command is the regsweep command the job runs (gc or audit).
	Command string
	// Delete is whether --delete must be present (false: it must not be).
	Delete bool
}

// ReviewCronJob returns every problem a reviewer would raise about cj: the
// schedule, the concurrency policy, the security context, where regsweep
// can write, credentials, and the dry-run default.
func ReviewCronJob(cj *batchv1.CronJob, want CronJobReview) []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if msgs := validation.IsDNS1123Subdomain(cj.Name); len(msgs) > 0 {
		add("name %q: %s", cj.Name, strings.Join(msgs, "; "))
	}
	if len(cj.Name) > 52 {
		add("name %q is longer than the 52 characters a CronJob may have", cj.Name)
	}
	if err := CheckCronSchedule(cj.Spec.Schedule); err != nil {
		add("%v", err)
	}
	if tz := cj.Spec.TimeZone; tz != nil {
		if _, err := time.LoadLocation(*tz); err != nil || *tz == "" || *tz == "Local" {
			add("timeZone %q is not an IANA time zone", *tz)
		}
	}
	if cj.Spec.ConcurrencyPolicy != batchv1.ForbidConcurrent {
		add("concurrencyPolicy is %q, want Forbid", cj.Spec.ConcurrencyPolicy)
	}
	job := cj.Spec.JobTemplate.Spec
	if job.BackoffLimit == nil {
		add("backoffLimit is unset (the default 6 retries a failed gc at once)")
	}
	pod := job.Template.Spec
	if pod.RestartPolicy != corev1.RestartPolicyNever && pod.RestartPolicy != corev1.RestartPolicyOnFailure {
		add("restartPolicy %q is not allowed in a Job", pod.RestartPolicy)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		add("the pod mounts a service account token it does not need")
	}
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		add("pod securityContext.runAsNonRoot is not true")
	}
	if psc != nil && psc.RunAsUser != nil && *psc.RunAsUser == 0 {
		add("pod runs as uid 0")
	}
	if len(pod.Containers) != 1 {
		add("%d containers, want 1", len(pod.Containers))
		return errs
	}
	c := pod.Containers[0]
	errs = append(errs, reviewContainer(c, pod.Volumes, want)...)
	return errs
}

func reviewContainer(c corev1.Container, volumes []corev1.Volume, want CronJobReview) []error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("container %s: "+format, append([]any{c.Name}, args...)...))
	}

	sc := c.SecurityContext
	switch {
	case sc == nil:
		add("no securityContext")
	default:
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			add("readOnlyRootFilesystem is not true")
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			add("allowPrivilegeEscalation is not false")
		}
		if sc.Privileged != nil && *sc.Privileged {
			add("privileged")
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			add("capabilities do not drop ALL")
		}
		if sc.Capabilities != nil && len(sc.Capabilities.Add) > 0 {
			add("adds capabilities %v", sc.Capabilities.Add)
		}
		if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
			add("runs as uid 0")
		}
	}
	if c.Image == "" || strings.HasSuffix(c.Image, ":") {
		add("image %q has no tag", c.Image)
	}
	if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		add("memory request or limit unset")
	}

	// Arguments: the command, dry run by default, no credentials.
	if len(c.Args) == 0 || c.Args[0] != want.Command {
		add("args %q do not start with %q", c.Args, want.Command)
	}
	if got := slices.Contains(c.Args, "--delete"); got != want.Delete {
		add("--delete present = %t, want %t (args %q)", got, want.Delete, c.Args)
	}
	for _, a := range c.Args {
		if secretInArg.MatchString(a) {
			add("argument %q carries a credential: use a Secret", a)
		}
	}

	// Environment: valid names, credentials referenced, never inlined.
	for _, e := range c.Env {
		if msgs := validation.IsEnvVarName(e.Name); len(msgs) > 0 {
			add("env %q: %s", e.Name, strings.Join(msgs, "; "))
		}
		if !sensitiveEnv.MatchString(e.Name) {
			continue
		}
		switch {
		case e.Value != "":
			add("env %s is written into the manifest: reference a Secret", e.Name)
		case e.ValueFrom == nil:
			add("env %s has no value source", e.Name)
		case e.ValueFrom.SecretKeyRef != nil:
			if e.ValueFrom.SecretKeyRef.Name == "" || e.ValueFrom.SecretKeyRef.Key == "" {
				add("env %s: secretKeyRef without name or key", e.Name)
			}
		case e.ValueFrom.ConfigMapKeyRef != nil:
			if e.ValueFrom.ConfigMapKeyRef.Name == "" || e.ValueFrom.ConfigMapKeyRef.Key == "" {
				add("env %s: configMapKeyRef without name or key", e.Name)
			}
		default:
			add("env %s comes from neither a Secret nor a ConfigMap", e.Name)
		}
	}
	for _, ef := range c.EnvFrom {
		if (ef.SecretRef == nil || ef.SecretRef.Name == "") && (ef.ConfigMapRef == nil || ef.ConfigMapRef.Name == "") {
			add("envFrom entry names no Secret or ConfigMap")
		}
	}

	// Mounts: every mount has its volume; everything regsweep writes is on a
	// writable volume (the root filesystem is read-only).
	byName := map[string]corev1.Volume{}
	for _, v := range volumes {
		if _, dup := byName[v.Name]; dup {
			add("volume %q defined twice", v.Name)
		}
		byName[v.Name] = v
	}
	for _, m := range c.VolumeMounts {
		v, ok := byName[m.Name]
		if !ok {
			add("volumeMount %q has no volume", m.Name)
			continue
		}
		if (v.Secret != nil || v.ConfigMap != nil) && !m.ReadOnly {
			add("volumeMount %q of a Secret or ConfigMap is not readOnly", m.Name)
		}
	}
	writable := func(p string) bool {
		for _, m := range c.VolumeMounts {
			if !m.ReadOnly && (p == m.MountPath || strings.HasPrefix(p, strings.TrimSuffix(m.MountPath, "/")+"/")) {
				return byName[m.Name].EmptyDir != nil || byName[m.Name].PersistentVolumeClaim != nil
			}
		}
		return false
	}
	writes := []string{"/tmp"}
	if d, ok := ArgValue(c.Args, "--cache-dir"); ok && d != "" {
		writes = append(writes, path.Clean(d))
	} else if want.Command == "gc" || want.Command == "audit" {
		add("no --cache-dir: the default under $HOME is on the read-only root filesystem")
	}
	for _, flag := range []string{"--metrics-file", "--plan-out"} {
		if f, ok := ArgValue(c.Args, flag); ok {
			writes = append(writes, path.Dir(path.Clean(f)))
		}
	}
	for _, p := range writes {
		if !writable(p) {
			add("%s is not on a writable volume", p)
		}
	}
	return errs
}

// ArgValue returns the value of --name=value in args, and whether it is there.
func ArgValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// EnvVar returns the container's environment variable called name.
func EnvVar(c corev1.Container, name string) (corev1.EnvVar, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e, true
		}
	}
	return corev1.EnvVar{}, false
}
