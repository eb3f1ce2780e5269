package s3_test

// Failures a real MinIO will not produce on demand, served by a tiny fake:
// a listing page that fails midway, a throttled GET, a DeleteObjects reply
// that leaves keys out, untrusted TLS. The real behaviour is tested against
// MinIO in s3_test.go.

import (
	"context"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/storage/s3"
)

const listPage1 = `<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>reg</Name><Prefix>root/</Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys><IsTruncated>true</IsTruncated><NextContinuationToken>page2</NextContinuationToken>
<Contents><Key>root/docker/a</Key><LastModified>2024-01-02T03:04:05.000Z</LastModified><ETag>"0123abcd"</ETag><Size>3</Size></Contents>
<Contents><Key>root/docker/b</Key><LastModified>2024-01-02T03:04:05.000Z</LastModified><ETag>"4567ef01-2"</ETag><Size>4</Size></Contents>
</ListBucketResult>`

const errInternal = `<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message></Error>`

const errSlowDown = `<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`

// The reply deletes a, refuses b and does not mention c.
const deleteReply = `<?xml version="1.0" encoding="UTF-8"?>
<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Deleted><Key>root/docker/a</Key></Deleted><Error><Key>root/docker/b</Key><Code>AccessDenied</Code><Message>Access Denied.</Message></Error></DeleteResult>`

func fakeS3(t *testing.T) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		w.Header().Set("Content-Type", "application/xml")
		switch {
		case r.Method == http.MethodHead && strings.Trim(r.URL.Path, "/") == "reg":
			w.WriteHeader(http.StatusOK)
		case r.Method == http.MethodHead:
			w.WriteHeader(http.StatusNotFound)
		case r.Method == http.MethodGet && q.Has("list-type") && q.Get("continuation-token") == "":
			w.Write([]byte(listPage1))
		case r.Method == http.MethodGet && q.Has("list-type"):
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte(errInternal))
		case r.Method == http.MethodGet && r.URL.Path == "/reg/root/slow":
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(errSlowDown))
		case r.Method == http.MethodPost && q.Has("delete"):
			w.Write([]byte(deleteReply))
		default:
			t.Errorf("fake S3: unexpected %s %s", r.Method, r.URL)
			w.WriteHeader(http.StatusNotImplemented)
		}
	})
}

func fakeConfig(endpoint string) s3.Config {
	return s3.Config{Endpoint: endpoint, Region: "us-east-1", Bucket: "reg", AccessKey: "AKFAKE", SecretKey: "fake-secret",
		RootDirectory: "/root", ForcePathStyle: true, V4Auth: true}
}

func TestFakeListingErrorIsNotAShorterListing(t *testing.T) {
	srv := httptest.NewServer(fakeS3(t))
	defer srv.Close()
	reqs := &storage.Requests{}
	d, err := s3.New(context.Background(), fakeConfig(srv.URL), reqs)
	if err != nil {
		t.Fatal(err)
	}
	var got []storage.ObjectInfo
	err = d.Walk(context.Background(), "", func(oi storage.ObjectInfo) error { got = append(got, oi); return nil })
	if err == nil {
		t.Fatalf("Walk succeeded with %d keys although page 2 failed", len(got))
	}
	if !storage.IsTransient(err) {
		t.Errorf("a 500 on page 2 should be transient: %v", err)
	}
	var pe *storage.PathError
	if !errors.As(err, &pe) || pe.Driver != "s3" || pe.Op != "list" {
		t.Errorf("want a *PathError for s3 list, got %#v", err)
	}
	if len(got) != 2 || got[0].Key != "docker/a" || got[0].ETag != "0123abcd" || got[1].ETag != "4567ef01-2" || got[1].Size != 4 {
		t.Errorf("page 1 delivered %+v", got)
	}
	if n := reqs.Snapshot(); n["head"] != 1 || n["list"] != 2 {
		t.Errorf("requests: %v, want 1 head (New) and 2 list (no retries inside the client)", n)
	}
}

func TestFakeThrottledGetIsTransient(t *testing.T) {
	srv := httptest.NewServer(fakeS3(t))
	defer srv.Close()
	d, err := s3.New(context.Background(), fakeConfig(srv.URL), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.Get(context.Background(), "slow", 10)
	if !storage.IsTransient(err) || !strings.Contains(err.Error(), "SlowDown") {
		t.Errorf("SlowDown: want a transient error naming it, got %v", err)
	}
}

func TestFakeDeleteReplyMissingKeys(t *testing.T) {
	srv := httptest.NewServer(fakeS3(t))
	defer srv.Close()
	reqs := &storage.Requests{}
	d, err := s3.New(context.Background(), fakeConfig(srv.URL), reqs)
	if err != nil {
		t.Fatal(err)
	}
	res, err := d.Delete(context.Background(), []string{"docker/a", "docker/b", "docker/c"})
	if err != nil {
		t.Fatal(err)
	}
	errs := map[string]error{}
	for _, r := range res {
		errs[r.Key] = r.Err
	}
	if _, failed := errs["docker/a"]; failed || len(errs) != 2 {
		t.Errorf("results %v: want failures for b and c only", errs)
	}
	if !errors.Is(errs["docker/b"], storage.ErrAccessDenied) {
		t.Errorf("b: want ErrAccessDenied, got %v", errs["docker/b"])
	}
	if errs["docker/c"] == nil || !strings.Contains(errs["docker/c"].Error(), "did not mention") {
		t.Errorf("c, missing from the reply, must fail: %v", errs["docker/c"])
	}
	if n := reqs.Snapshot()["delete"]; n != 1 {
		t.Errorf("%d delete requests, want 1", n)
	}
}

func TestFakeTLS(t *testing.T) {
	srv := httptest.NewTLSServer(fakeS3(t))
	defer srv.Close()
	ctx := context.Background()

	_, err := s3.New(ctx, fakeConfig(srv.URL), nil)
	if err == nil || !strings.Contains(err.Error(), "unknown certificate authority") || !strings.Contains(err.Error(), "--s3-insecure") ||
		!strings.Contains(err.Error(), "CA file") {
		t.Errorf("unknown CA: want an error naming the CA file and --s3-insecure options, got %v", err)
	}

	caFile := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fakeConfig(srv.URL)
	cfg.CAFile = caFile
	if _, err := s3.New(ctx, cfg, nil); err != nil {
		t.Errorf("with the CA file: %v", err)
	}

	cfg = fakeConfig(srv.URL)
	cfg.SkipVerify = true
	if _, err := s3.New(ctx, cfg, nil); err != nil {
		t.Errorf("with SkipVerify: %v", err)
	}

	cfg = fakeConfig(strings.TrimPrefix(srv.URL, "https://"))
	cfg.CAFile = filepath.Join(t.TempDir(), "missing.pem")
	cfg.Secure = true
	if _, err := s3.New(ctx, cfg, nil); err == nil || !strings.Contains(err.Error(), "CA file") {
		t.Errorf("missing CA file: %v", err)
	}
}

func TestFakeHTTPSAgainstPlainHTTP(t *testing.T) {
	srv := httptest.NewServer(fakeS3(t))
	defer srv.Close()
	cfg := fakeConfig(strings.TrimPrefix(srv.URL, "http://"))
	cfg.Secure = true
	_, err := s3.New(context.Background(), cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "plain http") {
		t.Errorf("want an error saying the endpoint speaks plain http, got %v", err)
	}
}
