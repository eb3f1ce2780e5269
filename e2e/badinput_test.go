package e2e

import (
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/regsweep/regsweep/internal/testenv"
)

// runCLI runs regsweep with args and env and returns stderr and the exit
// code.
func runCLI(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(regsweepBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// TestBadStorageInput: every way of pointing at storage wrongly ends with a
// named error, exit code 4 (storage) or 2 (usage), no secret in the output.
func TestBadStorageInput(t *testing.T) {
	m := testenv.MinIO(t)
	bucket := testenv.NewBucket(t, m)
	s := testenv.Swift(t)
	container := testenv.NewContainer(t, s)
	tlsServer := httptest.NewTLSServer(http.NotFoundHandler())
	defer tlsServer.Close()
	const badSecret = "wrong-secret-Zq81"
	s3 := func(endpoint, bucket string) []string {
		return []string{"inventory", "--s3-endpoint", endpoint, "--s3-bucket", bucket, "--s3-path-style"}
	}
	swift := func(container string) []string {
		return []string{"inventory", "--swift-auth-url", s.AuthURL, "--swift-username", s.User, "--swift-container", container}
	}
	cases := []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"s3 wrong credentials", []string{"REGSWEEP_S3_ACCESS_KEY=" + m.AccessKey, "REGSWEEP_S3_SECRET_KEY=" + badSecret}, s3(m.URL(), bucket), 4, "credentials"},
		{"s3 missing bucket", []string{"REGSWEEP_S3_ACCESS_KEY=" + m.AccessKey, "REGSWEEP_S3_SECRET_KEY=" + m.SecretKey}, s3(m.URL(), "no-such-bucket-x1"), 4, `bucket "no-such-bucket-x1" does not exist`},
		{"s3 unreachable", []string{"REGSWEEP_S3_ACCESS_KEY=a", "REGSWEEP_S3_SECRET_KEY=b"}, s3("http://127.0.0.1:1", "bucket-x"), 4, "reach"},
		{"s3 TLS unknown CA", []string{"REGSWEEP_S3_ACCESS_KEY=a", "REGSWEEP_S3_SECRET_KEY=b"}, s3(tlsServer.URL, "bucket-x"), 4, "unknown authority"},
		{"swift wrong password", []string{"REGSWEEP_SWIFT_PASSWORD=" + badSecret}, swift(container), 4, "access denied"},
		{"swift missing container", []string{"REGSWEEP_SWIFT_PASSWORD=" + s.Key}, swift("no-such-container-x1"), 4, `container "no-such-container-x1" does not exist`},
		{"swift unreachable", []string{"REGSWEEP_SWIFT_PASSWORD=x"}, []string{"inventory", "--swift-auth-url", "http://127.0.0.1:1/auth/v1.0", "--swift-username", "u", "--swift-container", "c"}, 4, "reach"},
		{"unsupported driver", nil, []string{"inventory", "--storage-driver", "gcs"}, 2, `"gcs" is not supported`},
	}
	for _, c := range cases {
		out, code := runCLI(t, c.env, c.args...)
		if code != c.code || !strings.Contains(out, c.want) {
			t.Errorf("%s: exit %d (want %d), output %q (want %q)", c.name, code, c.code, out, c.want)
		}
		if strings.Contains(out, badSecret) || strings.Contains(out, m.SecretKey) || strings.Contains(out, s.Key) {
			t.Errorf("%s: a secret is in the output: %q", c.name, out)
		}
	}
}

// TestKeyThatDoesNotParse: a stray key in the registry tree is named and
// makes inventory exit 3, and gc refuse (6).
func TestKeyThatDoesNotParse(t *testing.T) {
	b := filesystemBackend(t)
	testenv.PushRandomImage(t, b.reg, "app:v1")
	stray := filepath.Join(b.fsRoot, "docker/registry/v2/repositories/app/_manifests/notes.txt")
	if err := os.WriteFile(stray, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := runCLI(t, nil, "inventory", "--fs-root", b.fsRoot)
	if code != 3 || !strings.Contains(out, "docker/registry/v2/repositories/app/_manifests/notes.txt") {
		t.Errorf("inventory: exit %d, %s", code, out)
	}
	out, code = runCLI(t, nil, "gc", "--fs-root", b.fsRoot, "--cache-dir", t.TempDir())
	if code != 6 || !strings.Contains(out, "unknown_keys") {
		t.Errorf("gc: exit %d, %s", code, out)
	}
}
