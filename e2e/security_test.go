package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/regsweep/regsweep/internal/faultproxy"
	"github.com/regsweep/regsweep/internal/regtree"
	"github.com/regsweep/regsweep/internal/testenv"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/storage/filesystem"
	"github.com/regsweep/regsweep/storage/s3"
)

// cliRun is one regsweep run: its outputs and every file it wrote.
type cliRun struct {
	stdout, stderr string
	code           int
	files          map[string][]byte
}

// runIn runs regsweep with exactly env (no REGSWEEP_* of the caller's) in
// its own working directory, and collects every file written there.
func runIn(t *testing.T, env []string, args ...string) cliRun {
	t.Helper()
	dir := t.TempDir()
	var clean []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REGSWEEP_") && !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "MINIO_") {
			clean = append(clean, kv)
		}
	}
	cmd := exec.Command(regsweepBinary(t), args...)
	cmd.Dir = dir
	cmd.Env = append(append(clean, "XDG_CACHE_HOME="+filepath.Join(dir, "cache")), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := cliRun{stdout: stdout.String(), stderr: stderr.String(), files: map[string][]byte{}}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	filepath.WalkDir(dir, func(p string, de os.DirEntry, err error) error {
		if err == nil && !de.IsDir() {
			if b, err := os.ReadFile(p); err == nil {
				r.files[p] = b
			}
		}
		return nil
	})
	return r
}

// noSecrets fails the test if any secret is in any output or written file.
func noSecrets(t *testing.T, what string, r cliRun, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s == "" {
			t.Fatalf("%s: empty secret in the test", what)
		}
		for name, text := range map[string]string{"stdout": r.stdout, "stderr": r.stderr} {
			if strings.Contains(text, s) || strings.Contains(text, url.QueryEscape(s)) {
				t.Errorf("%s: a secret is in %s:\n%s", what, name, text)
			}
		}
		for path, b := range r.files {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s: a secret is in the file %s", what, path)
			}
		}
	}
}

func writeCorpus(t *testing.T, d storage.Driver) {
	t.Helper()
	spec := regtree.Spec{Seed: 5, Repositories: 2, ImagesPerRepo: 2, TagsPerRepo: 1, LayersPerImg: 2, OrphanBlobs: 2, LayerSize: 64, Uploads: 1}
	if _, err := regtree.Generate(context.Background(), d, spec, 8); err != nil {
		t.Fatal(err)
	}
}

func minioDirect(t *testing.T, m testenv.MinIOServer, bucket string) storage.Driver {
	t.Helper()
	d, err := s3.New(context.Background(), s3.Config{Endpoint: m.URL(), Region: "us-east-1", Bucket: bucket, AccessKey: m.AccessKey,
		SecretKey: m.SecretKey, ForcePathStyle: true, V4Auth: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestSecurityNoSecretsInOutput: secrets given as flags, as REGSWEEP_*
// environment and in the registry's config file never appear on stdout,
// stderr, in the plan file or any other file a run writes: on success, on
// refused credentials and on an unreachable endpoint, with debug logging.
func TestSecurityNoSecretsInOutput(t *testing.T) {
	t.Parallel()
	m := testenv.MinIO(t)
	bucket := testenv.NewBucket(t, m)
	writeCorpus(t, minioDirect(t, m, bucket))
	sw := testenv.Swift(t)
	container := testenv.NewContainer(t, sw)

	const wrongSecret = "wr0ng-Secret-Qx7Kp2"
	s3Flags := func(endpoint string) []string {
		return []string{"--s3-endpoint", endpoint, "--s3-bucket", bucket, "--s3-path-style", "--log-level", "debug"}
	}
	registryConfig := func(secret, endpoint string) string {
		p := filepath.Join(t.TempDir(), "config.yml")
		yml := fmt.Sprintf("version: 0.1\nstorage:\n  s3:\n    region: us-east-1\n    bucket: %s\n    accesskey: %s\n    secretkey: %s\n    regionendpoint: %s\n    forcepathstyle: true\n", bucket, m.AccessKey, secret, endpoint)
		if err := os.WriteFile(p, []byte(yml), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	swiftFlags := func(authURL string) []string {
		return []string{"--swift-auth-url", authURL, "--swift-username", sw.User, "--swift-container", container, "--swift-auth-version", "1", "--log-level", "debug"}
	}
	commands := [][]string{
		{"inventory", "--format", "json"},
		{"gc", "--grace", "0s", "--plan-out", "plan.json", "--list"},
		{"audit", "--format", "json", "--grace", "0s"},
	}
	type source struct {
		name   string
		env    []string
		args   []string
		secret string
		ok     bool // the credentials are right and the endpoint answers
	}
	sources := []source{
		{"s3 flags", nil, append(s3Flags(m.URL()), "--s3-access-key", m.AccessKey, "--s3-secret-key", m.SecretKey), m.SecretKey, true},
		{"s3 env", []string{"REGSWEEP_S3_ACCESS_KEY=" + m.AccessKey, "REGSWEEP_S3_SECRET_KEY=" + m.SecretKey}, s3Flags(m.URL()), m.SecretKey, true},
		{"s3 registry config", nil, []string{"--registry-config", registryConfig(m.SecretKey, m.URL()), "--log-level", "debug"}, m.SecretKey, true},
		{"s3 flags, wrong secret", nil, append(s3Flags(m.URL()), "--s3-access-key", m.AccessKey, "--s3-secret-key", wrongSecret), wrongSecret, false},
		{"s3 env, wrong secret", []string{"REGSWEEP_S3_ACCESS_KEY=" + m.AccessKey, "REGSWEEP_S3_SECRET_KEY=" + wrongSecret}, s3Flags(m.URL()), wrongSecret, false},
		{"s3 registry config, wrong secret", nil, []string{"--registry-config", registryConfig(wrongSecret, m.URL())}, wrongSecret, false},
		{"s3 flags, unreachable", nil, append(s3Flags("http://127.0.0.1:1"), "--s3-access-key", m.AccessKey, "--s3-secret-key", m.SecretKey), m.SecretKey, false},
		{"s3 registry config, unreachable", nil, []string{"--registry-config", registryConfig(m.SecretKey, "http://127.0.0.1:1")}, m.SecretKey, false},
		{"swift flag", nil, append(swiftFlags(sw.AuthURL), "--swift-password", sw.Key), sw.Key, true},
		{"swift env", []string{"REGSWEEP_SWIFT_PASSWORD=" + sw.Key}, swiftFlags(sw.AuthURL), sw.Key, true},
		{"swift flag, wrong key", nil, append(swiftFlags(sw.AuthURL), "--swift-password", wrongSecret), wrongSecret, false},
		{"swift flag, unreachable", nil, append(swiftFlags("http://127.0.0.1:1/auth/v1.0"), "--swift-password", sw.Key), sw.Key, false},
	}
	for _, src := range sources {
		for _, cmd := range commands {
			r := runIn(t, src.env, append(cmd, src.args...)...)
			what := src.name + ": " + cmd[0]
			noSecrets(t, what, r, src.secret)
			switch {
			case src.ok && r.code != 0 && r.code != 3: // audit exits 3 on findings
				t.Errorf("%s: exit %d: %s", what, r.code, r.stderr)
			case !src.ok && r.code != 4:
				t.Errorf("%s: exit %d, want 4 (storage): %s", what, r.code, r.stderr)
			case src.ok && cmd[0] == "gc":
				if len(r.files) == 0 {
					t.Errorf("%s: no plan file written", what)
				}
			}
		}
	}

	// A PostgreSQL password in --harbor-db (and REGSWEEP_HARBOR_DB): the
	// database answers but holds no Harbor schema, or does not answer.
	const pgPassword = "pg-Pa55word-Zr4"
	dsn, err := url.Parse(testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	dsn.User = url.UserPassword(dsn.User.Username(), pgPassword)
	unreachable := "postgres://harbor:" + pgPassword + "@127.0.0.1:1/registry?sslmode=disable&connect_timeout=2"
	storageArgs := append(s3Flags(m.URL()), "--s3-access-key", m.AccessKey, "--s3-secret-key", m.SecretKey)
	for _, c := range []struct {
		name string
		env  []string
		args []string
	}{
		{"--harbor-db, no Harbor schema", nil, []string{"--harbor-db", dsn.String()}},
		{"REGSWEEP_HARBOR_DB, no Harbor schema", []string{"REGSWEEP_HARBOR_DB=" + dsn.String()}, nil},
		{"--harbor-db, unreachable", nil, []string{"--harbor-db", unreachable}},
	} {
		r := runIn(t, c.env, append(append([]string{"gc", "--grace", "0s", "--plan-out", "plan.json"}, storageArgs...), c.args...)...)
		noSecrets(t, c.name, r, pgPassword, m.SecretKey)
		if r.code == 0 {
			t.Errorf("%s: gc succeeded against a database without Harbor's schema", c.name)
		}
		t.Logf("%s: exit %d: %s", c.name, r.code, lastLine(r.stderr))
	}
}

// TestSecurityTLSVerified: a TLS endpoint whose certificate is not trusted
// is refused with a message naming the endpoint and the certificate; the
// CA file option or --*-insecure make it work. MinIO and Swift sit behind
// a TLS proxy with a self-signed certificate.
func TestSecurityTLSVerified(t *testing.T) {
	t.Parallel()
	m := testenv.MinIO(t)
	bucket := testenv.NewBucket(t, m)
	writeCorpus(t, minioDirect(t, m, bucket))
	sw := testenv.Swift(t)
	container := testenv.NewContainer(t, sw)

	tlsProxy := func(target string) (*faultproxy.Server, string) {
		p, err := faultproxy.New(target, 1)
		if err != nil {
			t.Fatal(err)
		}
		s := p.StartTLS()
		t.Cleanup(s.Close)
		ca := filepath.Join(t.TempDir(), "ca.pem")
		if err := os.WriteFile(ca, s.CertificatePEM(), 0o600); err != nil {
			t.Fatal(err)
		}
		return s, ca
	}
	s3p, s3CA := tlsProxy(m.URL())
	swp, swCA := tlsProxy(strings.TrimSuffix(sw.AuthURL, "/auth/v1.0"))
	s3Args := []string{"inventory", "--s3-endpoint", s3p.URL, "--s3-bucket", bucket, "--s3-path-style"}
	s3Env := []string{"REGSWEEP_S3_ACCESS_KEY=" + m.AccessKey, "REGSWEEP_S3_SECRET_KEY=" + m.SecretKey}
	swArgs := []string{"inventory", "--swift-auth-url", swp.URL + "/auth/v1.0", "--swift-username", sw.User, "--swift-container", container, "--swift-auth-version", "1"}
	swEnv := []string{"REGSWEEP_SWIFT_PASSWORD=" + sw.Key}

	for _, c := range []struct {
		name  string
		env   []string
		args  []string
		proxy *faultproxy.Server
		ok    bool
	}{
		{"s3, unknown CA", s3Env, s3Args, s3p, false},
		{"s3, --s3-ca-file", s3Env, append(s3Args, "--s3-ca-file", s3CA), s3p, true},
		{"s3, --s3-insecure", s3Env, append(s3Args, "--s3-insecure"), s3p, true},
		{"swift, unknown CA", swEnv, swArgs, swp, false},
		{"swift, --swift-ca-file", swEnv, append(swArgs, "--swift-ca-file", swCA), swp, true},
		{"swift, --swift-insecure", swEnv, append(swArgs, "--swift-insecure"), swp, true},
	} {
		c.proxy.ResetLog()
		r := runIn(t, c.env, c.args...)
		switch {
		case c.ok && r.code != 0:
			t.Errorf("%s: exit %d: %s", c.name, r.code, r.stderr)
		case c.ok && c.proxy.Requests() == 0:
			t.Errorf("%s: no request went through the TLS proxy", c.name)
		case !c.ok:
			msg := lastLine(r.stderr)
			if r.code != 4 || !strings.Contains(msg, "certificate") || !strings.Contains(msg, c.proxy.Host) {
				t.Errorf("%s: exit %d (want 4), message %q (want it to name %s and the certificate)", c.name, r.code, msg, c.proxy.Host)
			}
			t.Logf("%s: %s", c.name, msg)
		}
	}
}

// readOnlyPolicy allows reading the bucket and nothing else.
func readOnlyPolicy(bucket string) string {
	return fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetBucketLocation","s3:ListBucket","s3:ListBucketMultipartUploads"],"Resource":["arn:aws:s3:::%[1]s"]},`+
		`{"Effect":"Allow","Action":["s3:GetObject","s3:ListMultipartUploadParts"],"Resource":["arn:aws:s3:::%[1]s/*"]}]}`, bucket)
}

// TestSecurityReadOnlyCredentials: audit and a gc dry run work with
// credentials that may only read (MinIO temporary credentials from STS
// AssumeRole under a read-only session policy, given through AWS_* as an
// operator would give an instance role's); gc --delete with them is
// refused with exit 4 and deletes nothing.
func TestSecurityReadOnlyCredentials(t *testing.T) {
	t.Parallel()
	m := testenv.MinIO(t)
	bucket := testenv.NewBucket(t, m)
	d := minioDirect(t, m, bucket)
	writeCorpus(t, d)
	sts, err := credentials.NewSTSAssumeRole(m.URL(), credentials.STSAssumeRoleOptions{
		AccessKey: m.AccessKey, SecretKey: m.SecretKey, Policy: readOnlyPolicy(bucket), DurationSeconds: 3600})
	if err != nil {
		t.Fatal(err)
	}
	v, err := sts.GetWithContext(nil)
	if err != nil {
		t.Fatalf("MinIO STS AssumeRole: %v", err)
	}
	// The credentials really are read-only.
	ro, err := minio.New(m.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(v.AccessKeyID, v.SecretAccessKey, v.SessionToken), Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ro.PutObject(context.Background(), bucket, "probe", strings.NewReader("x"), 1, minio.PutObjectOptions{}); err == nil {
		t.Fatal("the read-only credentials may write")
	}
	env := []string{"AWS_ACCESS_KEY_ID=" + v.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + v.SecretAccessKey, "AWS_SESSION_TOKEN=" + v.SessionToken}
	flags := []string{"--s3-endpoint", m.URL(), "--s3-bucket", bucket, "--s3-path-style"}
	rootEnv := []string{"REGSWEEP_S3_ACCESS_KEY=" + m.AccessKey, "REGSWEEP_S3_SECRET_KEY=" + m.SecretKey}
	gcDry := []string{"gc", "--delete-untagged", "--grace", "0s", "--upload-grace", "0s", "--max-delete-fraction", "0.9", "--plan-out", "plan.json"}

	before := storeKeys(t, d)
	audit := runIn(t, env, append([]string{"audit", "--format", "json", "--grace", "0s", "--fail-on", "none"}, flags...)...)
	if audit.code != 0 {
		t.Errorf("audit with read-only credentials: exit %d: %s", audit.code, audit.stderr)
	}
	dry := runIn(t, env, append(gcDry, flags...)...)
	full := runIn(t, rootEnv, append(gcDry, flags...)...)
	if dry.code != 0 || full.code != 0 {
		t.Fatalf("gc dry run: exit %d with read-only credentials (%s), %d with full ones (%s)", dry.code, dry.stderr, full.code, full.stderr)
	}
	planOf := func(r cliRun) []string {
		for p := range r.files {
			if filepath.Base(p) == "plan.json" {
				return planItems(t, p)
			}
		}
		t.Fatal("no plan written")
		return nil
	}
	if a, b := planOf(dry), planOf(full); len(a) == 0 || !slices.Equal(a, b) {
		t.Errorf("the read-only dry run planned %d items, the full-credential one %d", len(a), len(b))
	}
	del := runIn(t, env, append(append(gcDry, "--delete"), flags...)...)
	if del.code != 4 || !strings.Contains(lastLine(del.stderr), "denied") {
		t.Errorf("gc --delete with read-only credentials: exit %d (want 4), %q", del.code, lastLine(del.stderr))
	}
	noSecrets(t, "read-only run", del, v.SecretAccessKey, v.SessionToken)
	if after := storeKeys(t, d); !slices.Equal(after, before) {
		t.Errorf("storage changed: %v gone", minus(before, after))
	}
}

// TestSecurityFileModes: the plan file is created mode 0600, whatever the
// umask; a plan file that already exists is rewritten 0600 too.
func TestSecurityFileModes(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	d := fsDriver(t, root)
	writeCorpus(t, d)
	dir := t.TempDir()
	fresh := filepath.Join(dir, "new-plan.json")
	existing := filepath.Join(dir, "old-plan.json")
	if err := os.WriteFile(existing, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{fresh, existing} {
		r := runIn(t, nil, "gc", "--fs-root", root, "--grace", "0s", "--plan-out", p)
		if r.code != 0 {
			t.Fatalf("gc: exit %d: %s", r.code, r.stderr)
		}
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %o, want 600", filepath.Base(p), st.Mode().Perm())
		}
	}
}

func fsDriver(t *testing.T, root string) storage.Driver {
	t.Helper()
	d, err := filesystem.New(root, 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
