package s3

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/regsweep/regsweep/storage"
)

func TestObjectKey(t *testing.T) {
	cases := []struct{ root, key, want string }{
		{"", "docker/registry/v2/blobs", "docker/registry/v2/blobs"},
		{"/", "docker/registry/v2/blobs", "docker/registry/v2/blobs"},
		{"", "", ""},
		{"/", "", ""},
		{"registry", "docker/x", "registry/docker/x"},
		{"/registry", "docker/x", "registry/docker/x"},
		{"/registry/", "docker/x", "registry/docker/x"},
		{"registry//", "docker/x", "registry/docker/x"},
		{"/a/b", "", "a/b/"},
		{"a/b/", "docker/", "a/b/docker/"},
	}
	for _, c := range cases {
		if got := objectKey(c.root, c.key); got != c.want {
			t.Errorf("objectKey(%q, %q) = %q, want %q", c.root, c.key, got, c.want)
		}
	}
}

func TestLogicalKey(t *testing.T) {
	d := &Driver{rootPrefix: objectKey("/registry", "")}
	cases := []struct {
		object, want string
		ok           bool
	}{
		{"registry/docker/x", "docker/x", true},
		{"registry/", "", false},
		{"registryx/docker/x", "", false},
		{"docker/x", "", false},
		{"other/registry/docker/x", "", false},
	}
	for _, c := range cases {
		got, ok := d.logical(c.object)
		if got != c.want || ok != c.ok {
			t.Errorf("logical(%q) = %q, %v; want %q, %v", c.object, got, ok, c.want, c.ok)
		}
		if ok && d.key(got) != c.object {
			t.Errorf("key(logical(%q)) = %q", c.object, d.key(got))
		}
	}
	noRoot := &Driver{rootPrefix: objectKey("", "")}
	if got, ok := noRoot.logical("docker/x"); !ok || got != "docker/x" {
		t.Errorf("without a root: logical = %q, %v", got, ok)
	}
}

func TestLocation(t *testing.T) {
	cases := []struct{ endpoint, bucket, root, want string }{
		{"127.0.0.1:9000", "reg", "", "s3://127.0.0.1:9000/reg/"},
		{"127.0.0.1:9000", "reg", "/registry/", "s3://127.0.0.1:9000/reg/registry"},
		{"s3.amazonaws.com", "b", "a/b", "s3://s3.amazonaws.com/b/a/b"},
	}
	for _, c := range cases {
		d := &Driver{endpoint: c.endpoint, bucket: c.bucket, rootDir: strings.Trim(c.root, "/")}
		if got := d.Location(); got != c.want {
			t.Errorf("Location = %q, want %q", got, c.want)
		}
	}
}

func TestParseEndpoint(t *testing.T) {
	cases := []struct {
		in         string
		secureIn   bool
		host       string
		secure, ok bool
	}{
		{"", false, "s3.amazonaws.com", true, true},
		{"127.0.0.1:9000", false, "127.0.0.1:9000", false, true},
		{"127.0.0.1:9000", true, "127.0.0.1:9000", true, true},
		{"http://127.0.0.1:9000", true, "127.0.0.1:9000", false, true},
		{"https://minio.example:9000/", false, "minio.example:9000", true, true},
		{"ftp://x", false, "", false, false},
		{"http://127.0.0.1:9000/some/path", false, "", false, false},
		{"http://user:pw@127.0.0.1:9000", false, "", false, false},
		{"127.0.0.1:9000/bucket", false, "", false, false},
	}
	for _, c := range cases {
		host, secure, err := parseEndpoint(c.in, c.secureIn)
		if (err == nil) != c.ok || host != c.host || secure != c.secure {
			t.Errorf("parseEndpoint(%q, %v) = %q, %v, %v", c.in, c.secureIn, host, secure, err)
		}
		if err != nil && strings.Contains(err.Error(), "pw") {
			t.Errorf("error shows the password: %v", err)
		}
	}
}

func TestTranslate(t *testing.T) {
	resp := func(status int, code string) error {
		return minio.ErrorResponse{StatusCode: status, Code: code, Message: "msg", BucketName: "b"}
	}
	cases := []struct {
		name string
		err  error
		want error
		not  []error
	}{
		{"NoSuchKey", resp(404, "NoSuchKey"), storage.ErrNotFound, nil},
		{"bare 404 (HEAD)", resp(404, ""), storage.ErrNotFound, nil},
		{"NoSuchUpload", resp(404, "NoSuchUpload"), storage.ErrNotFound, nil},
		{"NoSuchBucket", resp(404, "NoSuchBucket"), ErrNoSuchBucket, []error{storage.ErrNotFound}},
		{"AccessDenied", resp(403, "AccessDenied"), storage.ErrAccessDenied, nil},
		{"InvalidAccessKeyId", resp(403, "InvalidAccessKeyId"), storage.ErrAccessDenied, nil},
		{"SignatureDoesNotMatch", resp(403, "SignatureDoesNotMatch"), storage.ErrAccessDenied, nil},
		{"bare 403", resp(403, ""), storage.ErrAccessDenied, nil},
		{"per-key AccessDenied", resp(0, "AccessDenied"), storage.ErrAccessDenied, nil},
		{"500", resp(500, "500 Internal Server Error"), storage.ErrTransient, nil},
		{"502", resp(502, ""), storage.ErrTransient, nil},
		{"503 SlowDown", resp(503, "SlowDown"), storage.ErrTransient, nil},
		{"504", resp(504, ""), storage.ErrTransient, nil},
		{"RequestTimeout", resp(400, "RequestTimeout"), storage.ErrTransient, nil},
		{"per-key InternalError", resp(0, "InternalError"), storage.ErrTransient, nil},
		{"400 other", resp(400, "InvalidArgument"), nil, []error{storage.ErrNotFound, storage.ErrAccessDenied, storage.ErrTransient}},
		{"wrapped", fmt.Errorf("ctx: %w", resp(404, "NoSuchKey")), storage.ErrNotFound, nil},
		{"reset", fmt.Errorf("read: %w", syscall.ECONNRESET), syscall.ECONNRESET, nil},
	}
	for _, c := range cases {
		got := translate(c.err)
		if c.want != nil && !errors.Is(got, c.want) {
			t.Errorf("%s: translate = %v, want %v", c.name, got, c.want)
		}
		for _, n := range c.not {
			if errors.Is(got, n) {
				t.Errorf("%s: translate = %v, must not be %v", c.name, got, n)
			}
		}
		if !errors.Is(got, c.err) {
			t.Errorf("%s: the original error is lost from the chain: %v", c.name, got)
		}
	}
	if storage.IsTransient(translate(resp(404, "NoSuchKey"))) {
		t.Error("NoSuchKey must not be transient")
	}
	if !storage.IsTransient(translate(resp(503, "SlowDown"))) {
		t.Error("SlowDown must be transient")
	}
	if translate(nil) != nil {
		t.Error("translate(nil) != nil")
	}
}

func TestClassify(t *testing.T) {
	classify := classifier("reg")
	cases := []struct {
		method, url string
		want        storage.Op
	}{
		{"GET", "http://127.0.0.1:9000/reg/?list-type=2&prefix=docker%2F", storage.OpList},
		{"GET", "http://127.0.0.1:9000/reg/?prefix=docker%2F&marker=x", storage.OpList}, // V1: no object key
		{"GET", "http://127.0.0.1:9000/reg/?uploads=&prefix=", storage.OpList},
		{"GET", "http://127.0.0.1:9000/reg/?location=", storage.OpList},
		{"GET", "http://127.0.0.1:9000/reg", storage.OpList},
		{"GET", "http://127.0.0.1:9000/reg/docker/x/data?uploadId=abc", storage.OpList},
		{"GET", "http://127.0.0.1:9000/reg/docker/registry/v2/x/link", storage.OpGet},
		{"GET", "https://reg.s3.us-east-1.amazonaws.com/docker/x/link", storage.OpGet},
		{"GET", "https://reg.s3.us-east-1.amazonaws.com/?list-type=2", storage.OpList},
		{"GET", "https://reg.s3.us-east-1.amazonaws.com/", storage.OpList},
		{"GET", "https://reg.s3.us-east-1.amazonaws.com/reg", storage.OpGet}, // virtual host: the key is "reg"
		{"HEAD", "http://127.0.0.1:9000/reg/", storage.OpHead},
		{"HEAD", "http://127.0.0.1:9000/reg/docker/x", storage.OpHead},
		{"PUT", "http://127.0.0.1:9000/reg/docker/x", storage.OpPut},
		{"PUT", "http://127.0.0.1:9000/reg/docker/x?partNumber=1&uploadId=u", storage.OpPut},
		{"POST", "http://127.0.0.1:9000/reg/docker/x?uploads=", storage.OpPut},
		{"POST", "http://127.0.0.1:9000/reg/docker/x?uploadId=u", storage.OpPut},
		{"POST", "http://127.0.0.1:9000/reg/?delete=", storage.OpDelete},
		{"DELETE", "http://127.0.0.1:9000/reg/docker/x", storage.OpDelete},
		{"DELETE", "http://127.0.0.1:9000/reg/docker/x?uploadId=u", storage.OpDelete},
	}
	for _, c := range cases {
		req := httptest.NewRequest(c.method, c.url, nil)
		if got := classify(req); got != c.want {
			t.Errorf("%s %s = %v, want %v", c.method, c.url, got, c.want)
		}
	}
	// The classifier sees what the client sends: a client request has
	// URL.Host set.
	req, _ := http.NewRequest("GET", "http://reg.example:9000/docker/x", nil)
	if got := classify(req); got != storage.OpGet {
		t.Errorf("virtual-host GET = %v", got)
	}
}

func TestIsCallError(t *testing.T) {
	if isCallError(minio.ErrorResponse{Code: "AccessDenied"}) {
		t.Error("a per-key error from the reply is not a call error")
	}
	if !isCallError(minio.ErrorResponse{StatusCode: 403, Code: "AccessDenied"}) {
		t.Error("an HTTP 403 for the request is a call error")
	}
	if !isCallError(errors.New("dial tcp: connection refused")) {
		t.Error("a transport error is a call error")
	}
}
