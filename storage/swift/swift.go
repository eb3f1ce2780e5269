// Package swift is the storage driver for distribution v2.8's OpenStack
// Swift driver.
//
// Layout, as distribution v2.8 writes it in one container:
//
//	[prefix/]files/docker/registry/v2/...   every registry path
//	[prefix/]segments/<3 hex>/<rest>/%016d  the segments of large objects
//
// An object name is strings.TrimLeft(strings.TrimRight(prefix+"/files"+"/"+key,
// "/"), "/"), exactly distribution's swiftPath rule, prefix not normalised: a
// prefix "/reg/" gives "reg//files/...", as distribution does. Every blob
// written through an upload is a 0-byte Dynamic Large Object manifest with
// header X-Object-Manifest: <container>/[prefix/]segments/<3 hex>/<rest>; a
// listing shows it with size 0, a HEAD or GET goes through the manifest to
// the segments (see LargeObject).
//
// It owns the Swift protocol (auth, listings, DLOs, bulk delete). It may
// not interpret keys as registry data (walker and layout do).
package swift

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ncw/swift/v2"

	"github.com/regsweep/regsweep/storage"
)

const driverName = "swift"

// DefaultConcurrency bounds parallel single DELETEs and bulk-delete requests
// when Config.Concurrency is 0.
const DefaultConcurrency = 16

// listingLimit is the most names one container listing returns (Swift's
// container_listing_limit default).
const listingLimit = 10000

// defaultBulkMax is used when /info offers bulk_delete without saying how
// many names one request may carry.
const defaultBulkMax = 1000

// Config says how to reach the container. Field names follow distribution's
// swift driver parameters.
type Config struct {
	AuthURL   string
	Username  string
	Password  string
	Container string
	Region    string
	Tenant    string
	TenantID  string
	Domain    string
	DomainID  string
	// Prefix is distribution's "prefix" parameter, used as written.
	Prefix string
	// AuthVersion is 1, 2 or 3; 0 tells it from the auth URL.
	AuthVersion        int
	InsecureSkipVerify bool
	// CAFile is a PEM bundle trusted on top of the system roots.
	CAFile string
	// StorageURL replaces the storage URL the auth server returns, for
	// every request and every re-authentication (Ceph RGW behind a proxy
	// returns a wrong X-Storage-Url).
	StorageURL string
	// Concurrency bounds parallel deletes; 0 means DefaultConcurrency.
	Concurrency int
}

// Driver reads and deletes the objects of one container.
type Driver struct {
	conn        *swift.Connection
	container   string
	filesRoot   string // "[prefix/]files/"
	segRoot     string // "[prefix/]segments/"
	location    string
	storageURL  string
	bulkMax     int // names per bulk-delete request; 0 means no bulk delete
	pageSize    int
	concurrency int
}

var (
	_ storage.Driver       = (*Driver)(nil)
	_ storage.LargeObjects = (*Driver)(nil)
)

// New authenticates, checks that the container exists and reads the
// cluster's /info to learn whether bulk delete is offered. Requests,
// including the authentication, are counted in reqs (which may be nil).
func New(ctx context.Context, cfg Config, reqs *storage.Requests) (*Driver, error) {
	switch {
	case cfg.AuthURL == "":
		return nil, openErr("config", errors.New("no auth URL given"))
	case cfg.Username == "":
		return nil, openErr("config", errors.New("no username given"))
	case cfg.Container == "":
		return nil, openErr("config", errors.New("no container given"))
	case strings.Contains(cfg.Container, "/"):
		return nil, openErr("config", fmt.Errorf("container name %q contains a slash", cfg.Container))
	}
	authVersion := cfg.AuthVersion
	if authVersion == 0 {
		// The library's own message for this is a 500 error, which would
		// read as a server failure.
		switch {
		case strings.Contains(cfg.AuthURL, "v3"):
			authVersion = 3
		case strings.Contains(cfg.AuthURL, "v2"):
			authVersion = 2
		case strings.Contains(cfg.AuthURL, "v1"):
			authVersion = 1
		default:
			return nil, openErr("config", fmt.Errorf("cannot tell the auth version from auth URL %s: set it explicitly (1, 2 or 3)", redact(cfg.AuthURL)))
		}
	}
	if authVersion < 1 || authVersion > 3 {
		return nil, openErr("config", fmt.Errorf("auth version %d is not 1, 2 or 3", authVersion))
	}
	tlsConfig := &tls.Config{InsecureSkipVerify: cfg.InsecureSkipVerify}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, openErr("config", fmt.Errorf("CA file: %w", err))
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, openErr("config", fmt.Errorf("CA file %s holds no PEM certificate", cfg.CAFile))
		}
		tlsConfig.RootCAs = pool
	}
	concurrency := cfg.Concurrency
	if concurrency < 1 {
		concurrency = DefaultConcurrency
	}
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.TLSClientConfig = tlsConfig
	base.MaxIdleConnsPerHost = max(2*concurrency, 64)

	// The listing URL is known only after authentication; until then
	// every GET is the auth request or /info, counted as get.
	var containerPath atomic.Pointer[string]
	classify := func(req *http.Request) storage.Op {
		switch req.Method {
		case http.MethodHead:
			return storage.OpHead
		case http.MethodPut:
			return storage.OpPut
		case http.MethodDelete:
			return storage.OpDelete
		case http.MethodPost:
			if req.URL.Query().Has("bulk-delete") {
				return storage.OpDelete
			}
			return storage.OpGet // Keystone token request
		}
		if p := containerPath.Load(); p != nil && req.URL.Path == *p {
			return storage.OpList
		}
		return storage.OpGet
	}

	conn := &swift.Connection{
		UserName:    cfg.Username,
		ApiKey:      cfg.Password,
		AuthUrl:     cfg.AuthURL,
		AuthVersion: authVersion,
		Region:      cfg.Region,
		Tenant:      cfg.Tenant,
		TenantId:    cfg.TenantID,
		Domain:      cfg.Domain,
		DomainId:    cfg.DomainID,
		UserAgent:   "regsweep",
		// One retry: enough to re-authenticate once when a token expires
		// (the library spends retries on that too); backoff for failures
		// belongs to storage.Retry.
		Retries: 1,
		// The library applies ConnectTimeout until response headers arrive.
		ConnectTimeout: 60 * time.Second,
		Timeout:        5 * time.Minute,
		Transport:      storage.CountingTransport(base, reqs, classify),
	}
	if err := conn.Authenticate(ctx); err != nil {
		return nil, openErr("auth", authError(err, cfg))
	}
	storageURL := conn.StorageUrl
	if cfg.StorageURL != "" {
		storageURL = strings.TrimRight(cfg.StorageURL, "/")
		if u, err := url.Parse(storageURL); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return nil, openErr("config", fmt.Errorf("StorageURL setting %s is not an http(s) URL", redact(storageURL)))
		}
		// Authenticate sets StorageUrl from the authenticator on every
		// re-authentication, so the override lives in the authenticator.
		conn.Auth = fixedStorageURL{Authenticator: conn.Auth, url: storageURL}
		conn.StorageUrl = storageURL
	}
	su, err := url.Parse(storageURL)
	if err != nil || su.Host == "" {
		return nil, openErr("auth", fmt.Errorf("unusable storage URL %q", redact(storageURL)))
	}
	cp := su.Path + "/" + cfg.Container
	containerPath.Store(&cp)

	d := &Driver{
		conn:      conn,
		container: cfg.Container,
		filesRoot: strings.TrimLeft(cfg.Prefix+"/files/", "/"),
		segRoot:   strings.TrimLeft(cfg.Prefix+"/segments/", "/"),
		// The account path (/v1/AUTH_x) is part of the identity: two accounts
		// on one host may hold containers of the same name.
		location:    "swift://" + su.Host + strings.TrimSuffix(su.Path, "/") + "/" + cfg.Container + "/" + cfg.Prefix,
		storageURL:  storageURL,
		pageSize:    listingLimit,
		concurrency: concurrency,
	}
	if _, _, err := conn.Container(ctx, cfg.Container); err != nil {
		return nil, openErr("open", d.containerError(err, cfg.StorageURL != "", cfg.AuthURL))
	}
	d.readInfo(ctx)
	return d, nil
}

// readInfo learns bulk delete and the listing limit from /info. Without
// /info there is no bulk delete, and listings page until an empty page,
// since a server that caps pages below the requested limit would
// otherwise end a listing early without an error.
func (d *Driver) readInfo(ctx context.Context) {
	info, err := d.conn.QueryInfo(ctx)
	if err != nil {
		d.conn.FetchUntilEmptyPage = true
		return
	}
	if sw, ok := info["swift"].(map[string]any); ok {
		if n, ok := sw["container_listing_limit"].(float64); ok && n >= 1 && int(n) < d.pageSize {
			d.pageSize = int(n)
		}
	}
	if bd, ok := info["bulk_delete"]; ok {
		d.bulkMax = defaultBulkMax
		if m, ok := bd.(map[string]any); ok {
			if n, ok := m["max_deletes_per_request"].(float64); ok && n >= 1 {
				d.bulkMax = int(n)
			}
		}
	}
}

// fixedStorageURL keeps a configured storage URL across re-authentication.
type fixedStorageURL struct {
	swift.Authenticator
	url string
}

func (a fixedStorageURL) StorageUrl(bool) string { return a.url }

func (a fixedStorageURL) Expires() time.Time {
	if e, ok := a.Authenticator.(swift.Expireser); ok {
		return e.Expires()
	}
	return time.Time{}
}

func (d *Driver) Name() string { return driverName }

// Location is swift://<storage host>/<container>/<prefix>, without
// credentials.
func (d *Driver) Location() string { return d.location }

// Container is the container's name.
func (d *Driver) Container() string { return d.container }

// StorageURL is the storage URL in use (the override when one is set).
func (d *Driver) StorageURL() string { return d.storageURL }

// BulkDeleteMax is the number of names one bulk-delete request carries,
// from the cluster's /info; 0 means the cluster does not offer bulk delete
// and deletes are single DELETE requests.
func (d *Driver) BulkDeleteMax() int { return d.bulkMax }

// PageSize is the number of names one listing request asks for.
func (d *Driver) PageSize() int { return d.pageSize }

func openErr(op string, err error) error {
	return &storage.PathError{Op: op, Driver: driverName, Err: err}
}

// authError explains a failed authentication. It never includes the
// password.
func authError(err error, cfg Config) error {
	var se *swift.Error
	if errors.As(err, &se) && (se.StatusCode == http.StatusUnauthorized || se.StatusCode == http.StatusForbidden) {
		return fmt.Errorf("user %q at %s: %w (%d %s)", cfg.Username, redact(cfg.AuthURL), storage.ErrAccessDenied, se.StatusCode, http.StatusText(se.StatusCode))
	}
	if tlsErr := describeTLS(err); tlsErr != nil {
		return fmt.Errorf("auth endpoint %s: %w", redact(cfg.AuthURL), tlsErr)
	}
	if isNetError(err) {
		return fmt.Errorf("cannot reach the auth endpoint %s: %w", redact(cfg.AuthURL), err)
	}
	return fmt.Errorf("auth endpoint %s: %w", redact(cfg.AuthURL), translate(err))
}

// redact hides a password written into a URL.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// containerError explains a failed check of the container. A storage URL
// from the auth server that cannot be reached is the common failure behind
// a proxy or NAT (Swift and Ceph RGW hand out the address they know
// themselves by): the message names the URL and the flag that replaces it.
func (d *Driver) containerError(err error, overridden bool, authURL string) error {
	where := "storage URL " + redact(d.storageURL)
	if overridden {
		where += " (the StorageURL setting, --swift-storage-url)"
	} else {
		where += " (from the auth server)"
	}
	var se *swift.Error
	if errors.As(err, &se) {
		switch se.StatusCode {
		case http.StatusNotFound:
			return fmt.Errorf("container %q does not exist at %s: %w", d.container, where, storage.ErrNotFound)
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("container %q at %s: %w (%d %s)", d.container, where, storage.ErrAccessDenied, se.StatusCode, http.StatusText(se.StatusCode))
		}
	}
	if tlsErr := describeTLS(err); tlsErr != nil {
		return fmt.Errorf("%s: %w", where, tlsErr)
	}
	if isNetError(err) {
		if overridden {
			return fmt.Errorf("cannot reach %s: %w", where, err)
		}
		return fmt.Errorf("cannot reach the storage URL %s that the auth server %s returned: %w; an auth server behind a proxy or NAT often returns an address only its own network reaches: give the storage URL to use with --swift-storage-url (the StorageURL setting)",
			redact(d.storageURL), redact(authURL), err)
	}
	return fmt.Errorf("container %q at %s: %w", d.container, where, translate(err))
}

func describeTLS(err error) error {
	var unknownCA x509.UnknownAuthorityError
	if errors.As(err, &unknownCA) {
		return fmt.Errorf("TLS: the server certificate is signed by an unknown authority (trust it with CAFile, --swift-ca-file FILE, or skip verification with InsecureSkipVerify, --swift-insecure): %w", err)
	}
	var host x509.HostnameError
	if errors.As(err, &host) {
		return fmt.Errorf("TLS: the server certificate does not match the host name (skip verification with --swift-insecure): %w", err)
	}
	var invalid x509.CertificateInvalidError
	if errors.As(err, &invalid) {
		return fmt.Errorf("TLS: the server certificate is invalid (skip verification with --swift-insecure): %w", err)
	}
	var rec tls.RecordHeaderError
	if errors.As(err, &rec) {
		return fmt.Errorf("TLS: the server does not speak TLS (use http://?): %w", err)
	}
	return nil
}

func isNetError(err error) bool {
	var ne net.Error
	var ue *url.Error
	return errors.As(err, &ne) || errors.As(err, &ue)
}

// translate maps a library error to the storage sentinels. It is the one
// place that knows Swift's status codes.
func translate(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var se *swift.Error
	if !errors.As(err, &se) {
		return err
	}
	switch code := se.StatusCode; {
	case code == http.StatusNotFound:
		return fmt.Errorf("%w (%w)", storage.ErrNotFound, err)
	case code == http.StatusPreconditionFailed: // If-None-Match: * on a key that exists
		return fmt.Errorf("%w (%w)", storage.ErrExists, err)
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return fmt.Errorf("%w (%w)", storage.ErrAccessDenied, err)
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code == 498 || code >= 500,
		code == http.StatusUnprocessableEntity: // a body that did not match its checksum
		return fmt.Errorf("%w (%w)", storage.ErrTransient, err)
	}
	return err
}

func (d *Driver) pathErr(op, key string, err error) error {
	return &storage.PathError{Op: op, Driver: driverName, Key: key, Err: translate(err)}
}
