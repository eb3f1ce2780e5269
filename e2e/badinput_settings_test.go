package e2e

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"github.com/regsweep/regsweep/internal/testenv"
)

// TestBadInputStorageSettings: a storage setting that does not match the
// store ends with exit 4 and a message that names the object (the URL, the
// bucket) and the flag that fixes it, on the real MinIO and Swift; with
// that flag the same command works.
func TestBadInputStorageSettings(t *testing.T) {
	m := testenv.MinIO(t)
	bucket := testenv.NewBucket(t, m)
	regional := testenv.RegionalMinIO(t, "eu-west-7")
	s := testenv.Swift(t)
	container := testenv.NewContainer(t, s)
	realStorageURL := s.Connection(t).StorageUrl
	self := httptest.NewTLSServer(http.NotFoundHandler())
	defer self.Close()

	// Swift's auth behind a proxy: the X-Storage-Url it hands out is an
	// address nobody here can reach.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String() + "/v1/AUTH_test"
	l.Close()
	authURL, err := url.Parse(s.AuthURL)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: authURL.Scheme, Host: authURL.Host})
	rp.ModifyResponse = func(r *http.Response) error {
		if r.Header.Get("X-Storage-Url") != "" {
			r.Header.Set("X-Storage-Url", dead)
		}
		return nil
	}
	front := httptest.NewServer(rp)
	defer front.Close()
	proxiedAuth := front.URL + authURL.Path

	s3Env := func(access, secret string) []string {
		return []string{"REGSWEEP_S3_ACCESS_KEY=" + access, "REGSWEEP_S3_SECRET_KEY=" + secret}
	}
	swiftArgs := []string{"inventory", "--swift-auth-url", proxiedAuth, "--swift-username", s.User, "--swift-container", container}
	cases := []struct {
		name  string
		env   []string
		args  []string
		want  []string
		fixed []string // the same command with the fix: exit 0
	}{
		{"swift storage URL from the auth server unreachable", []string{"REGSWEEP_SWIFT_PASSWORD=" + s.Key}, swiftArgs,
			[]string{"cannot reach the storage URL " + dead, "that the auth server " + proxiedAuth + " returned", "--swift-storage-url"},
			append(append([]string{}, swiftArgs...), "--swift-storage-url", realStorageURL)},
		{"s3 bucket in another region", s3Env(regional.AccessKey, regional.SecretKey),
			[]string{"inventory", "--s3-endpoint", regional.URL(), "--s3-bucket", "regional", "--s3-path-style"},
			[]string{`bucket "regional"`, "is in region eu-west-7, not us-east-1", "--s3-region eu-west-7"},
			[]string{"inventory", "--s3-endpoint", regional.URL(), "--s3-bucket", "regional", "--s3-path-style", "--s3-region", "eu-west-7"}},
		{"s3 self-signed certificate", s3Env("a", "b"), []string{"inventory", "--s3-endpoint", self.URL, "--s3-bucket", "bucket-x"},
			[]string{"unknown certificate authority", "--s3-ca-file", "--s3-insecure"}, nil},
		{"s3 https:// to a plain http endpoint", s3Env(m.AccessKey, m.SecretKey),
			[]string{"inventory", "--s3-endpoint", "https://" + m.Endpoint, "--s3-bucket", bucket, "--s3-path-style"},
			[]string{m.Endpoint + " speaks plain http", "http:// endpoint in --s3-endpoint"},
			[]string{"inventory", "--s3-endpoint", "http://" + m.Endpoint, "--s3-bucket", bucket, "--s3-path-style"}},
		{"s3 http:// to an https endpoint", s3Env("a", "b"),
			[]string{"inventory", "--s3-endpoint", "http://" + strings.TrimPrefix(self.URL, "https://"), "--s3-bucket", "bucket-x"},
			[]string{"speaks https", "https:// endpoint in --s3-endpoint"}, nil},
	}
	secrets := []string{m.SecretKey, regional.SecretKey, s.Key}
	for _, c := range cases {
		out, code := runCLI(t, c.env, c.args...)
		if code != 4 {
			t.Errorf("%s: exit %d, want 4:\n%s", c.name, code, out)
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: output lacks %q:\n%s", c.name, w, out)
			}
		}
		for _, secret := range secrets {
			if strings.Contains(out, secret) {
				t.Errorf("%s: a secret is in the output", c.name)
			}
		}
		if c.fixed != nil {
			if out, code := runCLI(t, c.env, c.fixed...); code != 0 {
				t.Errorf("%s, fixed: exit %d:\n%s", c.name, code, out)
			}
		}
	}
}
