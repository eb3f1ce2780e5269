package s3_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/regsweep/regsweep/internal/testenv"
	"github.com/regsweep/regsweep/storage/s3"
)

// A bucket in another region than the one requests are signed for: the
// error names the bucket's region and --s3-region.
func TestS3WrongRegionNamesTheFlag(t *testing.T) {
	m := testenv.RegionalMinIO(t, "eu-west-7")
	cfg := s3.Config{Endpoint: m.URL(), Region: "eu-west-7", Bucket: "regional", AccessKey: m.AccessKey, SecretKey: m.SecretKey, ForcePathStyle: true, V4Auth: true}
	ctx := context.Background()
	if _, err := s3.New(ctx, cfg, nil); err != nil {
		t.Fatalf("the right region: %v", err)
	}
	cfg.Region = "us-east-1" // what regsweep signs with when only an endpoint is given
	_, err := s3.New(ctx, cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "--s3-region eu-west-7") || !strings.Contains(err.Error(), `bucket "regional"`) ||
		!strings.Contains(err.Error(), "not us-east-1") {
		t.Errorf("wrong region: want an error naming the bucket, its region and --s3-region eu-west-7, got %v", err)
	}
	if err != nil && strings.Contains(err.Error(), cfg.SecretKey) {
		t.Errorf("the secret is in the error: %v", err)
	}
}

// TLS mismatches name the flag that fixes each: an unknown CA
// --s3-ca-file, an https:// endpoint that speaks plain http an http://
// one, and the other way round.
func TestS3TLSMismatchesNameTheFlag(t *testing.T) {
	ctx := context.Background()
	m := testenv.MinIO(t)
	bucket := testenv.NewBucket(t, m)
	cfg := s3.Config{Region: "us-east-1", Bucket: bucket, AccessKey: m.AccessKey, SecretKey: m.SecretKey, ForcePathStyle: true, V4Auth: true}

	cfg.Endpoint = "https://" + m.Endpoint // the real MinIO speaks plain http
	_, err := s3.New(ctx, cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "speaks plain http") || !strings.Contains(err.Error(), "http:// endpoint in --s3-endpoint") {
		t.Errorf("https against plain http: got %v", err)
	}

	self := httptest.NewTLSServer(http.NotFoundHandler()) // a self-signed certificate
	defer self.Close()
	cfg.Endpoint = self.URL
	_, err = s3.New(ctx, cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "unknown certificate authority") || !strings.Contains(err.Error(), "--s3-ca-file") ||
		!strings.Contains(err.Error(), "--s3-insecure") {
		t.Errorf("self-signed: want --s3-ca-file and --s3-insecure named, got %v", err)
	}

	cfg.Endpoint = "http://" + strings.TrimPrefix(self.URL, "https://")
	_, err = s3.New(ctx, cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "speaks https") || !strings.Contains(err.Error(), "https:// endpoint in --s3-endpoint") {
		t.Errorf("http against https: got %v", err)
	}
}

// A store that wants virtual-host addressing refuses path style with
// SecondLevelDomainForbidden (Alibaba OSS): the error says to drop
// --s3-path-style.
func TestS3AddressingStyleNamesTheFlag(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		w.Header().Set("x-minio-error-code", "SecondLevelDomainForbidden") // a HEAD carries no body
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SecondLevelDomainForbidden</Code><Message>Please use virtual hosted style to access.</Message></Error>`)
	}))
	defer srv.Close()
	cfg := s3.Config{Endpoint: srv.URL, Region: "us-east-1", Bucket: "reg", AccessKey: "a", SecretKey: "secret-s", ForcePathStyle: true, V4Auth: true}
	_, err := s3.New(context.Background(), cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "virtual-host style") || !strings.Contains(err.Error(), "drop --s3-path-style") {
		t.Errorf("want an error saying to drop --s3-path-style, got %v", err)
	}
}
