package backend

import (
	"context"
	"strings"

	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/storage/filesystem"
	"github.com/regsweep/regsweep/storage/s3"
	"github.com/regsweep/regsweep/storage/swift"
)

// OpenOptions are the behaviours wrapped around every driver.
type OpenOptions struct {
	// Concurrency bounds requests in flight.
	Concurrency int
	// ReadOnly makes every write refuse: audit and dry runs set it.
	ReadOnly bool
	// Retry is the retry policy for transient failures.
	Retry storage.RetryPolicy
	// Requests, if set, counts every request the driver makes.
	Requests *storage.Requests
	// RateLimit, when > 0, bounds calls per second.
	RateLimit float64
}

// Open opens the configured driver and wraps it, in this order from the
// inside out: retry (each try counted by the driver), rate limit,
// concurrency limit, read-only.
func Open(ctx context.Context, cfg Config, opts OpenOptions) (storage.Driver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Concurrency < 1 {
		opts.Concurrency = 16
	}
	var d storage.Driver
	var err error
	switch cfg.Driver {
	case "filesystem":
		d, err = filesystem.New(cfg.Filesystem.RootDirectory, opts.Concurrency, opts.Requests)
	case "s3", "s3-aws":
		s := cfg.S3
		d, err = s3.New(ctx, s3.Config{
			Endpoint: s.RegionEndpoint, Region: s.Region, Bucket: s.Bucket,
			AccessKey: s.AccessKey, SecretKey: s.SecretKey, RootDirectory: s.RootDirectory,
			Secure: s.Secure && !strings.HasPrefix(s.RegionEndpoint, "http://"), SkipVerify: s.SkipVerify, CAFile: s.CAFile,
			ForcePathStyle: s.ForcePathStyle, V4Auth: s.V4Auth, ListV1: s.ListV1, Concurrency: opts.Concurrency,
		}, opts.Requests)
	case "swift":
		s := cfg.Swift
		d, err = swift.New(ctx, swift.Config{
			AuthURL: s.AuthURL, Username: s.Username, Password: s.Password, Container: s.Container,
			Region: s.Region, Tenant: s.Tenant, TenantID: s.TenantID, Domain: s.Domain, DomainID: s.DomainID,
			Prefix: s.Prefix, AuthVersion: s.AuthVersion, InsecureSkipVerify: s.InsecureSkipVerify,
			CAFile: s.CAFile, StorageURL: s.StorageURL, Concurrency: opts.Concurrency,
		}, opts.Requests)
	default:
		return nil, &UnsupportedDriverError{Name: cfg.Driver}
	}
	if err != nil {
		return nil, err
	}
	if opts.Retry.Attempts > 0 {
		d = storage.Retry(d, opts.Retry)
	}
	if opts.RateLimit > 0 {
		d = storage.RateLimit(d, opts.RateLimit)
	}
	d = storage.Limit(d, opts.Concurrency)
	if opts.ReadOnly {
		d = storage.ReadOnly(d)
	}
	return d, nil
}
