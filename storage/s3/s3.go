// Package s3 is the storage driver for distribution's s3-aws driver: keys
// live in one bucket below an optional root directory, and uploads in
// progress are S3 multipart uploads.
//
// Keys map exactly as distribution maps them: the object key of the
// logical key p is TrimLeft(TrimRight(rootdirectory, "/") + "/" + p, "/").
// Objects outside the root directory are never returned.
//
// Every HTTP request the driver makes is counted in the storage.Requests
// given to New, classified as list, get, head, put or delete. minio-go's
// own retries are switched off: retrying is storage.Retry's job, so an
// unreachable endpoint fails at once and every request is counted.
//
// It owns the S3 protocol (listings and their pages, multipart uploads,
// batched deletes). It may not interpret keys as registry data (walker
// and layout do).
package s3

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"golang.org/x/sync/errgroup"

	"github.com/regsweep/regsweep/storage"
)

const (
	driverName = "s3"
	// awsEndpoint is used when Config.Endpoint is empty.
	awsEndpoint = "s3.amazonaws.com"
	// deleteBatch is the most keys one DeleteObjects request may carry.
	deleteBatch = 1000
	// DefaultConcurrency is used when Config.Concurrency is below 1.
	DefaultConcurrency = 4
)

// Config says where the registry's objects are. The fields follow
// distribution's s3 driver parameters.
type Config struct {
	// Endpoint is host:port or a URL such as http://127.0.0.1:9000
	// (distribution's regionendpoint); a URL's scheme decides Secure.
	// Empty means AWS S3, always over https.
	Endpoint string
	// Region signs requests. Empty lets the client ask the bucket's
	// location once (one extra request, the first time).
	Region    string
	Bucket    string
	AccessKey string
	// SecretKey is never printed. With AccessKey and SecretKey both empty
	// the credentials come from the environment (AWS_*, MINIO_*), the AWS
	// credentials file or the EC2/ECS instance role, in that order.
	SecretKey     string
	RootDirectory string
	// Secure selects https for an Endpoint given without a scheme.
	Secure     bool
	SkipVerify bool
	// CAFile is a PEM file of CA certificates trusted besides the system's.
	CAFile string
	// ForcePathStyle sends http://host/bucket/key; otherwise the client
	// picks virtual-host style where the store supports it (AWS).
	ForcePathStyle bool
	// V4Auth selects signature v4, as distribution does by default; false
	// means signature v2. AWS endpoints always use v4.
	V4Auth bool
	// ListV1 uses ListObjects V1 for stores that mishandle V2 (Ceph RGW
	// releases that omit KeyCount).
	ListV1 bool
	// Concurrency bounds the DeleteObjects requests one Delete runs at
	// once; below 1 means DefaultConcurrency.
	Concurrency int
}

// ErrNoSuchBucket is wrapped by operations that find the bucket gone. It
// is deliberately not storage.ErrNotFound: a vanished bucket must never
// look like a missing object.
var ErrNoSuchBucket = errors.New("no such bucket")

// Driver reads and deletes the objects of one bucket below a root
// directory.
type Driver struct {
	client      *minio.Client
	core        minio.Core
	creds       *credentials.Credentials
	http        *http.Client // listings, on the client's transport (list.go)
	bucket      string
	endpoint    string // host[:port], for messages and Location
	rootPrefix  string // object key prefix of the root: "" or "dir/"
	rootDir     string // root directory without surrounding slashes
	listV1      bool
	pathStyle   bool // listings' URLs with anonymous credentials (list.go)
	concurrency int

	// mpPrefix remembers whether the store honours a prefix in
	// ListMultipartUploads; see WalkMultipartUploads.
	mpPrefix atomic.Int32
}

var (
	_ storage.Driver           = (*Driver)(nil)
	_ storage.MultipartUploads = (*Driver)(nil)
)

// New connects to the bucket and checks that it exists with one request
// (two when Region is empty: the bucket's location comes first). A missing
// bucket, refused credentials, an unreachable endpoint and an untrusted
// certificate each give their own clear error.
func New(ctx context.Context, cfg Config, reqs *storage.Requests) (*Driver, error) {
	if cfg.Bucket == "" {
		return nil, openErr(errors.New("no bucket given"))
	}
	host, secure, err := parseEndpoint(cfg.Endpoint, cfg.Secure)
	if err != nil {
		return nil, openErr(err)
	}
	if (cfg.AccessKey == "") != (cfg.SecretKey == "") {
		return nil, openErr(errors.New("give both the access key and the secret key, or neither"))
	}
	if cfg.Concurrency < 1 {
		cfg.Concurrency = DefaultConcurrency
	}
	transport, err := newTransport(cfg, secure)
	if err != nil {
		return nil, openErr(err)
	}
	lookup := minio.BucketLookupAuto
	if cfg.ForcePathStyle {
		lookup = minio.BucketLookupPath
	}
	creds := newCredentials(cfg)
	counted := storage.CountingTransport(transport, reqs, classifier(cfg.Bucket))
	client, err := minio.New(host, &minio.Options{
		Creds:        creds,
		Secure:       secure,
		Region:       cfg.Region,
		BucketLookup: lookup,
		Transport:    counted,
		MaxRetries:   1,
	})
	if err != nil {
		return nil, openErr(fmt.Errorf("endpoint %q: %w", host, err))
	}
	d := &Driver{
		client: client,
		core:   minio.Core{Client: client},
		creds:  creds,
		// No redirects: minio-go follows none either, and a listing
		// redirected elsewhere is no listing of this bucket.
		http:        &http.Client{Transport: counted, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		bucket:      cfg.Bucket,
		endpoint:    host,
		rootPrefix:  objectKey(cfg.RootDirectory, ""),
		rootDir:     strings.Trim(cfg.RootDirectory, "/"),
		listV1:      cfg.ListV1,
		pathStyle:   cfg.ForcePathStyle,
		concurrency: cfg.Concurrency,
	}
	exists, err := client.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, openErr(d.explainOpen(cfg, secure, err))
	}
	if !exists {
		return nil, openErr(fmt.Errorf("bucket %q does not exist at %s: %w", cfg.Bucket, host, storage.ErrNotFound))
	}
	return d, nil
}

func openErr(err error) error {
	return &storage.PathError{Op: "open", Driver: driverName, Err: err}
}

// explainOpen turns the error of the bucket check into a sentence that
// says what to fix, naming regsweep's flag for it (and the key of the
// registry's config.yml where distribution has one).
func (d *Driver) explainOpen(cfg Config, secure bool, err error) error {
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		switch {
		case er.Code == "InvalidAccessKeyId":
			return fmt.Errorf("%s refused the credentials: access key %q is not known (%w)", d.endpoint, cfg.AccessKey, storage.ErrAccessDenied)
		case er.Code == "SignatureDoesNotMatch":
			return fmt.Errorf("%s refused the credentials: the secret key does not match access key %q (%w)", d.endpoint, cfg.AccessKey, storage.ErrAccessDenied)
		case isRegionError(er, cfg.Region):
			return d.regionError(cfg, er, err)
		case er.Code == "SecondLevelDomainForbidden" || strings.Contains(strings.ToLower(er.Message), "virtual hosted style"):
			return fmt.Errorf("%s wants the bucket in the host name (virtual-host style), not in the path: drop --s3-path-style (forcepathstyle: false in the registry's config.yml) (%w)", d.endpoint, translate(err))
		case er.Code == "AccessDenied" || er.StatusCode == http.StatusForbidden:
			return fmt.Errorf("%s refused the credentials of access key %q for bucket %q (%w)", d.endpoint, cfg.AccessKey, cfg.Bucket, storage.ErrAccessDenied)
		case !secure && er.StatusCode == http.StatusBadRequest && er.Code == er.Message && speaksTLS(d.endpoint):
			// A 400 with no S3 error code is what a TLS server answers to
			// plain http.
			return fmt.Errorf("%s speaks https, not plain http: give an https:// endpoint in --s3-endpoint (%w)", d.endpoint, translate(err))
		}
		return fmt.Errorf("checking bucket %q at %s: %w", cfg.Bucket, d.endpoint, translate(err))
	}
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalid x509.CertificateInvalidError
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &unknownCA):
		return fmt.Errorf("the TLS certificate of %s is signed by an unknown certificate authority: trust that CA with --s3-ca-file FILE (its PEM certificate; the CA file option), or skip verification with --s3-insecure (skipverify: true in the registry's config.yml) (%w)", d.endpoint, err)
	case errors.As(err, &hostErr), errors.As(err, &invalid):
		return fmt.Errorf("the TLS certificate of %s is not valid for it: fix the endpoint's name in --s3-endpoint, or skip verification with --s3-insecure (skipverify: true in the registry's config.yml) (%w)", d.endpoint, err)
	case secure && strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return fmt.Errorf("%s speaks plain http, not https: give an http:// endpoint in --s3-endpoint, or --s3-http (secure: false in the registry's config.yml) (%w)", d.endpoint, err)
	case errors.As(err, &dnsErr) && strings.HasPrefix(dnsErr.Name, cfg.Bucket+"."):
		return fmt.Errorf("cannot resolve %s: the bucket is addressed in the host name (virtual-host style), which this endpoint's DNS does not serve: use --s3-path-style (forcepathstyle: true in the registry's config.yml) (%w)", dnsErr.Name, err)
	}
	return fmt.Errorf("cannot reach the S3 endpoint %s: %w", d.endpoint, err)
}

// speaksTLS reports whether a TLS handshake with host succeeds (whatever
// its certificate): asked only to explain a failure.
func speaksTLS(host string) bool {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", host, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// regionPattern finds the region a store expects in its message ("the
// region 'us-east-1' is wrong; expecting 'eu-west-7'").
var regionPattern = regexp.MustCompile(`expecting '([^']+)'`)

// isRegionError reports whether the store refused the request for the
// region it was signed for, or said the bucket lives elsewhere.
func isRegionError(er minio.ErrorResponse, region string) bool {
	switch er.Code {
	case "AuthorizationHeaderMalformed":
		return strings.Contains(er.Message, "region")
	case "InvalidRegion", "IllegalLocationConstraintException", "PermanentRedirect", "AuthorizationQueryParametersError":
		return true
	}
	return er.Region != "" && region != "" && er.Region != region && er.StatusCode == http.StatusMovedPermanently
}

// regionError names the bucket's region when the store says it.
func (d *Driver) regionError(cfg Config, er minio.ErrorResponse, err error) error {
	signed := cfg.Region
	if signed == "" {
		signed = "(none)"
	}
	want := er.Region
	if m := regionPattern.FindStringSubmatch(er.Message); m != nil {
		want = m[1]
	}
	if want == "" || want == cfg.Region {
		return fmt.Errorf("bucket %q at %s is not in region %s: set its region with --s3-region (region in the registry's config.yml) (%w)", cfg.Bucket, d.endpoint, signed, translate(err))
	}
	return fmt.Errorf("bucket %q at %s is in region %s, not %s: set --s3-region %s (region: %s in the registry's config.yml) (%w)", cfg.Bucket, d.endpoint, want, signed, want, want, translate(err))
}

// parseEndpoint returns host[:port] and whether to use https.
func parseEndpoint(endpoint string, secure bool) (string, bool, error) {
	if endpoint == "" {
		return awsEndpoint, true, nil
	}
	if !strings.Contains(endpoint, "://") {
		if strings.ContainsAny(endpoint, "/?#") {
			return "", false, fmt.Errorf("endpoint %q: want host:port or http(s)://host:port", endpoint)
		}
		return endpoint, secure, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", false, fmt.Errorf("endpoint %q: %w", endpoint, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", false, fmt.Errorf("endpoint %q: scheme must be http or https", endpoint)
	case u.Host == "":
		return "", false, fmt.Errorf("endpoint %q has no host", endpoint)
	case u.User != nil:
		return "", false, fmt.Errorf("endpoint must not carry credentials; use the access and secret key options")
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		return "", false, fmt.Errorf("endpoint %q: a path is not supported, give only scheme://host:port", endpoint)
	}
	return u.Host, u.Scheme == "https", nil
}

func newTransport(cfg Config, secure bool) (*http.Transport, error) {
	tr, err := minio.DefaultTransport(secure)
	if err != nil {
		return nil, err
	}
	if n := 2 * cfg.Concurrency; n > tr.MaxIdleConnsPerHost {
		tr.MaxIdleConnsPerHost = n
	}
	if !secure {
		return tr, nil
	}
	if tr.TLSClientConfig == nil {
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading the CA file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", cfg.CAFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	tr.TLSClientConfig.InsecureSkipVerify = cfg.SkipVerify
	return tr, nil
}

func newCredentials(cfg Config) *credentials.Credentials {
	if cfg.AccessKey == "" && cfg.SecretKey == "" {
		return credentials.NewChainCredentials([]credentials.Provider{
			&credentials.EnvAWS{},
			&credentials.EnvMinio{},
			&credentials.FileAWSCredentials{},
			&credentials.IAM{},
		})
	}
	if cfg.V4Auth {
		return credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, "")
	}
	return credentials.NewStaticV2(cfg.AccessKey, cfg.SecretKey, "")
}

func (d *Driver) Name() string { return driverName }

// Location is s3://endpoint/bucket/rootdirectory, without credentials.
func (d *Driver) Location() string {
	return "s3://" + d.endpoint + "/" + d.bucket + "/" + d.rootDir
}

// Bucket is the bucket's name.
func (d *Driver) Bucket() string { return d.bucket }

// objectKey maps a logical key to its object key as distribution's s3Path
// does (distribution's logical paths start with "/", ours do not).
func objectKey(rootDirectory, key string) string {
	return strings.TrimLeft(strings.TrimRight(rootDirectory, "/")+"/"+key, "/")
}

func (d *Driver) key(logical string) string {
	return d.rootPrefix + logical
}

// logical maps an object key back; ok is false outside the root.
func (d *Driver) logical(object string) (string, bool) {
	if !strings.HasPrefix(object, d.rootPrefix) {
		return "", false
	}
	k := object[len(d.rootPrefix):]
	return k, k != ""
}

func (d *Driver) pathErr(op, key string, err error) error {
	return &storage.PathError{Op: op, Driver: driverName, Key: key, Err: translate(err)}
}

// translate maps an S3 error to the storage sentinels, keeping the
// original error in the chain. It is the only place that does.
func translate(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var er minio.ErrorResponse
	if !errors.As(err, &er) {
		// minio-go replaces the EOF of a connection closed before the
		// response with a message of its own.
		var ue *url.Error
		if errors.As(err, &ue) && ue.Err != nil && strings.HasPrefix(ue.Err.Error(), "Connection closed by foreign host") {
			return fmt.Errorf("%w: the connection closed before the response: %w", storage.ErrTransient, err)
		}
		return err
	}
	code := er.Code
	if code == "" {
		code = fmt.Sprint(er.StatusCode)
	}
	switch er.Code {
	case "NoSuchBucket":
		return fmt.Errorf("%w %q: %w", ErrNoSuchBucket, er.BucketName, err)
	case "NoSuchKey", "NoSuchUpload":
		return fmt.Errorf("%w: %s: %w", storage.ErrNotFound, code, err)
	case "PreconditionFailed":
		return fmt.Errorf("%w: %s: %w", storage.ErrExists, code, err)
	case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled", "AccountProblem":
		return fmt.Errorf("%w: %s: %w", storage.ErrAccessDenied, code, err)
	case "SlowDown", "SlowDownRead", "SlowDownWrite", "RequestTimeout", "InternalError", "ServiceUnavailable",
		"Throttling", "ThrottlingException", "RequestLimitExceeded", "RequestThrottled", "XMinioServerNotInitialized":
		return fmt.Errorf("%w: %s: %w", storage.ErrTransient, code, err)
	}
	switch er.StatusCode {
	case http.StatusNotFound:
		return fmt.Errorf("%w: %s: %w", storage.ErrNotFound, code, err)
	case http.StatusForbidden:
		return fmt.Errorf("%w: %s: %w", storage.ErrAccessDenied, code, err)
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return fmt.Errorf("%w: %s: %w", storage.ErrTransient, code, err)
	}
	if er.Code != "" && er.Code != er.Message {
		return fmt.Errorf("%s: %w", er.Code, err)
	}
	return err
}

// classifier counts a request as the operation it performs.
func classifier(bucket string) func(*http.Request) storage.Op {
	return func(r *http.Request) storage.Op {
		q := r.URL.Query()
		switch r.Method {
		case http.MethodHead:
			return storage.OpHead
		case http.MethodGet:
			if q.Has("list-type") || q.Has("uploads") || q.Has("uploadId") || requestKey(r, bucket) == "" {
				return storage.OpList
			}
			return storage.OpGet
		case http.MethodDelete:
			return storage.OpDelete
		case http.MethodPost:
			if q.Has("delete") {
				return storage.OpDelete
			}
			return storage.OpPut
		}
		return storage.OpPut
	}
}

// requestKey is the object key a request addresses, "" for the bucket.
func requestKey(r *http.Request, bucket string) string {
	p := strings.TrimPrefix(r.URL.Path, "/")
	host := r.URL.Host
	if host == "" {
		host = r.Host
	}
	if strings.HasPrefix(host, bucket+".") {
		return p // virtual-host style: the path is the key
	}
	if p == bucket {
		return ""
	}
	return strings.TrimPrefix(p, bucket+"/")
}

// Walk lists every object below prefix with a flat, paginated listing
// (ListObjectsV2, or V1 when configured) and calls fn for each in this
// goroutine. It stops at once when fn fails or ctx ends; a failed page is
// an error, never a shorter listing.
func (d *Driver) Walk(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	return d.WalkAfter(ctx, prefix, "", fn)
}

var _ storage.AfterWalker = (*Driver)(nil)

// WalkAfter is Walk from the first key after startAfter (S3's start-after;
// all keys when it is empty).
func (d *Driver) WalkAfter(ctx context.Context, prefix, startAfter string, fn func(storage.ObjectInfo) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// A start outside the prefix means all of it or none (MinIO refuses a
	// V1 marker that is not under the prefix).
	rawAfter := ""
	switch {
	case startAfter == "":
	case strings.HasPrefix(startAfter, prefix):
		rawAfter = d.key(startAfter)
	case startAfter > prefix:
		return nil
	}
	err := d.list(ctx, d.key(prefix), "", rawAfter, func(o listedObject) error {
		key, ok := d.logical(o.key)
		// Not a key below the root: the root's own folder marker (made
		// in a console). Before startAfter: a server that ignored it.
		if !ok || o.key <= rawAfter {
			return nil
		}
		return fn(storage.ObjectInfo{Key: key, Size: o.size, ModTime: o.mtime, ETag: trimETag(o.etag)})
	}, nil)
	return d.listErr(ctx, prefix, err)
}

// listErr returns a listing's error: fn's own as it is, a request's as a
// PathError, and the context's when it ended.
func (d *Driver) listErr(ctx context.Context, prefix string, err error) error {
	if err == nil {
		return ctx.Err()
	}
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	var callErr *listCallError
	if errors.As(err, &callErr) {
		return d.pathErr("list", prefix, callErr.err)
	}
	return err
}

var _ storage.DirLister = (*Driver)(nil)

// ListDir lists one level below prefix with a delimiter listing.
func (d *Driver) ListDir(ctx context.Context, prefix string, fn func(storage.ObjectInfo, bool) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := d.list(ctx, d.key(prefix), "/", "", func(o listedObject) error {
		key, ok := d.logical(o.key)
		if !ok { // the root's own folder marker, not a key below it
			return nil
		}
		return fn(storage.ObjectInfo{Key: key, Size: o.size, ModTime: o.mtime, ETag: trimETag(o.etag)}, strings.HasSuffix(key, "/"))
	}, func(p string) error {
		key, ok := d.logical(p)
		if !ok { // (the root itself: list checked that p is below it)
			return nil
		}
		return fn(storage.ObjectInfo{Key: key}, true)
	})
	return d.listErr(ctx, prefix, err)
}

func trimETag(etag string) string {
	return strings.TrimSuffix(strings.TrimPrefix(etag, `"`), `"`)
}

func checkKey(key string) error {
	if key == "" {
		return errors.New("empty key")
	}
	return nil
}

// Stat is one HEAD request.
func (d *Driver) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	if err := checkKey(key); err != nil {
		return storage.ObjectInfo{}, d.pathErr("stat", key, err)
	}
	oi, err := d.client.StatObject(ctx, d.bucket, d.key(key), minio.StatObjectOptions{})
	if err != nil {
		return storage.ObjectInfo{}, d.pathErr("stat", key, err)
	}
	return storage.ObjectInfo{Key: key, Size: oi.Size, ModTime: oi.LastModified, ETag: trimETag(oi.ETag)}, nil
}

// Get is one GET request. The size in the response headers is checked
// before the body is read, and the body is read through a limit anyway.
func (d *Driver) Get(ctx context.Context, key string, limit int64) ([]byte, error) {
	if err := checkKey(key); err != nil {
		return nil, d.pathErr("get", key, err)
	}
	limit = max(limit, 0)
	body, oi, _, err := d.core.GetObject(ctx, d.bucket, d.key(key), minio.GetObjectOptions{})
	if err != nil {
		return nil, d.pathErr("get", key, err)
	}
	defer body.Close()
	if oi.Size > limit {
		return nil, d.pathErr("get", key, fmt.Errorf("%w: %d bytes, limit %d", storage.ErrTooLarge, oi.Size, limit))
	}
	b, err := storage.ReadAtMost(body, oi.Size, limit)
	if err != nil {
		return nil, d.pathErr("get", key, err)
	}
	return b, nil
}

var _ storage.Streamer = (*Driver)(nil)

// Open streams an object with one GET.
func (d *Driver) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := checkKey(key); err != nil {
		return nil, d.pathErr("get", key, err)
	}
	body, _, _, err := d.core.GetObject(ctx, d.bucket, d.key(key), minio.GetObjectOptions{})
	if err != nil {
		return nil, d.pathErr("get", key, err)
	}
	return body, nil
}

// Put writes a small object with one PUT request.
func (d *Driver) Put(ctx context.Context, key string, data []byte) error {
	if err := checkKey(key); err != nil {
		return d.pathErr("put", key, err)
	}
	_, err := d.client.PutObject(ctx, d.bucket, d.key(key), bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{DisableMultipart: true, ContentType: "application/octet-stream"})
	if err != nil {
		return d.pathErr("put", key, err)
	}
	return nil
}

// Create is Put with If-None-Match: * (AWS S3 and MinIO honour it).
func (d *Driver) Create(ctx context.Context, key string, data []byte) error {
	if err := checkKey(key); err != nil {
		return d.pathErr("create", key, err)
	}
	opts := minio.PutObjectOptions{DisableMultipart: true, ContentType: "application/octet-stream"}
	opts.SetMatchETagExcept("*")
	if _, err := d.client.PutObject(ctx, d.bucket, d.key(key), bytes.NewReader(data), int64(len(data)), opts); err != nil {
		return d.pathErr("create", key, err)
	}
	return nil
}

// Delete sends one DeleteObjects request per 1000 keys, up to
// Concurrency at once. A key the store reports as failed comes back as a
// DeleteResult; so does a key the store's answer does not mention at all,
// so a reply that lost keys can never count them as deleted. A request
// that fails as a whole (refused, unreachable, cancelled) ends the call
// with its error; the keys of other requests already answered keep their
// results. Deleting a missing key succeeds, as S3 does.
func (d *Driver) Delete(ctx context.Context, keys []string) ([]storage.DeleteResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var (
		mu      sync.Mutex
		results []storage.DeleteResult
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(d.concurrency)
	for start := 0; start < len(keys); start += deleteBatch {
		batch := keys[start:min(start+deleteBatch, len(keys))]
		g.Go(func() error {
			res, err := d.deleteBatch(gctx, batch)
			mu.Lock()
			results = append(results, res...)
			mu.Unlock()
			return err
		})
	}
	err := g.Wait()
	if ctxErr := ctx.Err(); ctxErr != nil {
		return results, ctxErr
	}
	return results, err
}

func (d *Driver) deleteBatch(ctx context.Context, batch []string) ([]storage.DeleteResult, error) {
	var results []storage.DeleteResult
	pending := make(map[string]string, len(batch)) // object key -> logical key
	objects := make(chan minio.ObjectInfo, len(batch))
	for _, k := range batch {
		if err := checkKey(k); err != nil {
			results = append(results, storage.DeleteResult{Key: k, Err: d.pathErr("delete", k, err)})
			continue
		}
		if _, dup := pending[d.key(k)]; dup {
			continue
		}
		pending[d.key(k)] = k
		objects <- minio.ObjectInfo{Key: d.key(k)}
	}
	close(objects)
	if len(pending) == 0 {
		return results, nil
	}
	var callErr error
	for res := range d.client.RemoveObjectsWithResult(ctx, d.bucket, objects, minio.RemoveObjectsOptions{}) {
		if res.Err != nil && isCallError(res.Err) {
			if callErr == nil {
				callErr = res.Err
			}
			continue
		}
		logical, ok := pending[res.ObjectName]
		if !ok {
			continue // an answer for a key we did not send, or one already answered
		}
		delete(pending, res.ObjectName)
		if res.Err != nil {
			results = append(results, storage.DeleteResult{Key: logical, Err: d.pathErr("delete", logical, res.Err)})
		}
	}
	if callErr != nil {
		if err := ctx.Err(); err != nil {
			return results, err
		}
		return results, d.pathErr("delete", "", callErr)
	}
	for _, logical := range pending {
		results = append(results, storage.DeleteResult{Key: logical,
			Err: d.pathErr("delete", logical, errors.New("the store's DeleteObjects reply did not mention the key"))})
	}
	return results, nil
}

// isCallError tells the failure of a whole DeleteObjects request (an HTTP
// error status, a transport error, a reply that does not parse) from the
// failure of one key inside a successful reply, which minio-go reports as
// an ErrorResponse without a status code.
func isCallError(err error) bool {
	var er minio.ErrorResponse
	return !errors.As(err, &er) || er.StatusCode != 0
}
