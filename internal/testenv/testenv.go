// Package testenv connects regsweep's integration tests to the real servers
// started by testenv/up.sh: MinIO, OpenStack Swift, PostgreSQL, Redis, and the
// Docker Distribution registries (v3 and v2.8.3) with crane.
//
// The servers are described by REGSWEEP_TEST_* environment variables written to
// $REGSWEEP_TESTENV_DIR/env.sh by testenv/up.sh (the Makefile sources it). A
// test that asks for a server that is not configured or not answering fails
// with a message saying how to start it; it is never skipped.
//
// Test support only: it may not be imported by product code.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/ncw/swift/v2"
)

// Environment variables read by this package (written by testenv/up.sh).
const (
	EnvMinIOEndpoint  = "REGSWEEP_TEST_MINIO_ENDPOINT"   // host:port
	EnvMinIOAccessKey = "REGSWEEP_TEST_MINIO_ACCESS_KEY" //
	EnvMinIOSecretKey = "REGSWEEP_TEST_MINIO_SECRET_KEY" //
	EnvMinIOBin       = "REGSWEEP_TEST_MINIO_BIN"        // path to the minio binary
	EnvSwiftAuthURL   = "REGSWEEP_TEST_SWIFT_AUTHURL"    // http://127.0.0.1:18080/auth/v1.0
	EnvSwiftUser      = "REGSWEEP_TEST_SWIFT_USER"       // test:tester
	EnvSwiftKey       = "REGSWEEP_TEST_SWIFT_KEY"        // testing
	EnvPostgresDSN    = "REGSWEEP_TEST_PG_DSN"           // admin DSN (database postgres)
	EnvRedisAddr      = "REGSWEEP_TEST_REDIS_ADDR"       // host:port
	EnvRegistryV3     = "REGSWEEP_TEST_REGISTRY_V3"      // path to the v3 registry binary
	EnvRegistryV28    = "REGSWEEP_TEST_REGISTRY_V28"     // path to the v2.8.3 registry binary
	EnvCrane          = "REGSWEEP_TEST_CRANE"            // path to crane
)

const howToStart = "run `make testenv-up` (or `bash testenv/install.sh && bash testenv/up.sh && . /tmp/regsweep-testenv/env.sh`)"

// env returns the value of name or fails the test naming what is missing.
func env(tb testing.TB, what, name string) string {
	tb.Helper()
	v := os.Getenv(name)
	if v == "" {
		tb.Fatalf("%s is not running: %s (%s unset)", what, howToStart, name)
	}
	return v
}

// binary returns the executable named by the environment variable name.
func binary(tb testing.TB, what, name string) string {
	tb.Helper()
	p := os.Getenv(name)
	if p == "" {
		tb.Fatalf("%s is not installed: %s (%s unset)", what, howToStart, name)
	}
	st, err := os.Stat(p)
	if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		tb.Fatalf("%s is not installed at %s (%s): run `make testenv-up` (or `bash testenv/install.sh`)", what, p, name)
	}
	return p
}

// randomSuffix returns n random hex characters.
func randomSuffix(n int) string {
	b := make([]byte, (n+1)/2)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)[:n]
}

var nonAlnum = regexp.MustCompile(`[^a-z0-9]+`)

// uniqueName builds "<sanitized test name>-<random>" of at most max characters
// from [a-z0-9-], starting with a letter.
func uniqueName(tb testing.TB, max int) string {
	base := strings.TrimPrefix(strings.ToLower(tb.Name()), "test")
	base = strings.Trim(nonAlnum.ReplaceAllString(base, "-"), "-")
	if base == "" || base[0] < 'a' || base[0] > 'z' {
		base = "t-" + base
	}
	suffix := randomSuffix(8)
	if limit := max - len(suffix) - 1; len(base) > limit {
		base = strings.TrimRight(base[:limit], "-")
	}
	return base + "-" + suffix
}

func ctxTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// ---------------------------------------------------------------- MinIO ----

// MinIOServer is the S3 endpoint of the test MinIO server.
type MinIOServer struct {
	Endpoint  string // host:port, plain HTTP
	AccessKey string
	SecretKey string
}

// URL returns the endpoint as an http:// URL (the s3 drivers' regionendpoint).
func (s MinIOServer) URL() string { return "http://" + s.Endpoint }

// Client returns a minio-go client for the server.
func (s MinIOServer) Client(tb testing.TB) *minio.Client {
	tb.Helper()
	c, err := minio.New(s.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Secure: false,
		Region: "us-east-1",
	})
	if err != nil {
		tb.Fatalf("minio client for %s: %v", s.Endpoint, err)
	}
	return c
}

// MinIO returns the test MinIO server, failing the test if it is not
// configured or does not answer.
func MinIO(tb testing.TB) MinIOServer {
	tb.Helper()
	s := MinIOServer{
		Endpoint:  env(tb, "MinIO", EnvMinIOEndpoint),
		AccessKey: env(tb, "MinIO", EnvMinIOAccessKey),
		SecretKey: env(tb, "MinIO", EnvMinIOSecretKey),
	}
	ctx, cancel := ctxTimeout(10 * time.Second)
	defer cancel()
	if _, err := s.Client(tb).ListBuckets(ctx); err != nil {
		tb.Fatalf("MinIO is not answering at %s (%v): %s", s.Endpoint, err, howToStart)
	}
	return s
}

// NewBucket creates a bucket with a unique name derived from the test name and
// removes it, with all its objects and incomplete multipart uploads, when the
// test ends.
func NewBucket(tb testing.TB, s MinIOServer) string {
	tb.Helper()
	c := s.Client(tb)
	name := uniqueName(tb, 63)
	ctx, cancel := ctxTimeout(30 * time.Second)
	defer cancel()
	if err := c.MakeBucket(ctx, name, minio.MakeBucketOptions{Region: "us-east-1"}); err != nil {
		tb.Fatalf("creating bucket %s on MinIO %s: %v", name, s.Endpoint, err)
	}
	tb.Cleanup(func() {
		if err := removeBucket(c, name); err != nil {
			tb.Errorf("removing bucket %s: %v", name, err)
		}
	})
	return name
}

func removeBucket(c *minio.Client, bucket string) error {
	ctx, cancel := ctxTimeout(2 * time.Minute)
	defer cancel()
	var errs []error

	// Incomplete multipart uploads. MinIO lists them reliably only with an
	// empty prefix (a prefix such as "docker/" returned nothing), so list all.
	core := minio.Core{Client: c}
	keyMarker, uploadIDMarker := "", ""
	for {
		res, err := core.ListMultipartUploads(ctx, bucket, "", keyMarker, uploadIDMarker, "", 1000)
		if err != nil {
			errs = append(errs, fmt.Errorf("listing multipart uploads: %w", err))
			break
		}
		for _, u := range res.Uploads {
			if err := core.AbortMultipartUpload(ctx, bucket, u.Key, u.UploadID); err != nil {
				errs = append(errs, fmt.Errorf("aborting upload %s of %s: %w", u.UploadID, u.Key, err))
			}
		}
		if !res.IsTruncated {
			break
		}
		keyMarker, uploadIDMarker = res.NextKeyMarker, res.NextUploadIDMarker
	}

	objects := c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true, WithVersions: true})
	for e := range c.RemoveObjects(ctx, bucket, objects, minio.RemoveObjectsOptions{}) {
		errs = append(errs, fmt.Errorf("removing %s: %w", e.ObjectName, e.Err))
	}
	if err := c.RemoveBucket(ctx, bucket); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// ---------------------------------------------------------------- Swift ----

// SwiftServer is the test Swift all-in-one (tempauth, auth version 1).
type SwiftServer struct {
	AuthURL string // http://127.0.0.1:18080/auth/v1.0
	User    string // test:tester
	Key     string
}

// Connection returns an authenticated ncw/swift connection.
func (s SwiftServer) Connection(tb testing.TB) *swift.Connection {
	tb.Helper()
	c, err := s.connect()
	if err != nil {
		tb.Fatalf("Swift is not answering at %s (%v): %s", s.AuthURL, err, howToStart)
	}
	return c
}

func (s SwiftServer) connect() (*swift.Connection, error) {
	c := &swift.Connection{
		UserName:       s.User,
		ApiKey:         s.Key,
		AuthUrl:        s.AuthURL,
		AuthVersion:    1,
		ConnectTimeout: 5 * time.Second,
		Timeout:        60 * time.Second,
	}
	ctx, cancel := ctxTimeout(15 * time.Second)
	defer cancel()
	if err := c.Authenticate(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Swift returns the test Swift server, failing the test if it is not
// configured or does not answer.
func Swift(tb testing.TB) SwiftServer {
	tb.Helper()
	s := SwiftServer{
		AuthURL: env(tb, "Swift", EnvSwiftAuthURL),
		User:    env(tb, "Swift", EnvSwiftUser),
		Key:     env(tb, "Swift", EnvSwiftKey),
	}
	s.Connection(tb)
	return s
}

// NewContainer creates a container with a unique name derived from the test
// name and removes it when the test ends, after deleting every object in it
// (DLO segments live in the same container with the v2.8 driver) and in
// "<name>_segments" if something created that.
func NewContainer(tb testing.TB, s SwiftServer) string {
	tb.Helper()
	c := s.Connection(tb)
	name := uniqueName(tb, 200)
	ctx, cancel := ctxTimeout(30 * time.Second)
	defer cancel()
	if err := c.ContainerCreate(ctx, name, nil); err != nil {
		tb.Fatalf("creating Swift container %s: %v", name, err)
	}
	tb.Cleanup(func() {
		c, err := s.connect() // the token may have expired
		if err != nil {
			tb.Errorf("removing Swift container %s: %v", name, err)
			return
		}
		for _, ct := range []string{name, name + "_segments"} {
			if err := removeContainer(c, ct); err != nil {
				tb.Errorf("removing Swift container %s: %v", ct, err)
			}
		}
	})
	return name
}

func removeContainer(c *swift.Connection, container string) error {
	ctx, cancel := ctxTimeout(2 * time.Minute)
	defer cancel()
	names, err := c.ObjectNamesAll(ctx, container, nil)
	if errors.Is(err, swift.ContainerNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listing: %w", err)
	}
	for len(names) > 0 {
		n := min(len(names), 1000)
		batch := names[:n]
		names = names[n:]
		res, err := c.BulkDelete(ctx, container, batch)
		if err != nil && !errors.Is(err, swift.Forbidden) {
			return fmt.Errorf("bulk delete: %w", err)
		}
		if err != nil || len(res.Errors) > 0 {
			// No bulk delete, or some failed: one by one.
			for _, o := range batch {
				if err := c.ObjectDelete(ctx, container, o); err != nil && !errors.Is(err, swift.ObjectNotFound) {
					return fmt.Errorf("deleting %s: %w", o, err)
				}
			}
		}
	}
	// Container listings are updated asynchronously in general; retry briefly
	// on 409 Conflict.
	for i := 0; ; i++ {
		err := c.ContainerDelete(ctx, container)
		if err == nil || errors.Is(err, swift.ContainerNotFound) {
			return nil
		}
		if !errors.Is(err, swift.ContainerNotEmpty) || i == 20 {
			return err
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// ----------------------------------------------------------- PostgreSQL ----

// Postgres creates a fresh database on the test PostgreSQL server and returns
// a DSN for it (postgres://...). The database is dropped when the test ends.
func Postgres(tb testing.TB) string {
	tb.Helper()
	admin := env(tb, "PostgreSQL", EnvPostgresDSN)
	ctx, cancel := ctxTimeout(30 * time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		tb.Fatalf("PostgreSQL is not answering at %s (%v): %s", admin, err, howToStart)
	}
	defer conn.Close(context.Background())
	name := strings.ReplaceAll(uniqueName(tb, 63), "-", "_")
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		tb.Fatalf("creating database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := ctxTimeout(30 * time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			tb.Errorf("dropping database %s: %v", name, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			tb.Errorf("dropping database %s: %v", name, err)
		}
	})
	u, err := url.Parse(admin)
	if err != nil || u.Scheme == "" {
		tb.Fatalf("%s must be a postgres:// URL, got %q", EnvPostgresDSN, admin)
	}
	u.Path = "/" + name
	return u.String()
}

// ---------------------------------------------------------------- Redis ----

// Redis returns the host:port of the test Redis server after checking that it
// answers PING.
func Redis(tb testing.TB) string {
	tb.Helper()
	addr := env(tb, "Redis", EnvRedisAddr)
	if err := redisPing(addr); err != nil {
		tb.Fatalf("Redis is not answering at %s (%v): %s", addr, err, howToStart)
	}
	return addr
}

func redisPing(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if got := string(buf[:n]); !strings.HasPrefix(got, "+PONG") {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(got))
	}
	return nil
}

// ---------------------------------------------------------------- tools ----

// Crane returns the path of the crane binary.
func Crane(tb testing.TB) string {
	tb.Helper()
	return binary(tb, "crane", EnvCrane)
}

// MinIOBinary returns the path of the minio server binary (for tests that run
// a MinIO of their own).
func MinIOBinary(tb testing.TB) string {
	tb.Helper()
	return binary(tb, "minio", EnvMinIOBin)
}
