package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/regsweep/regsweep/backend"
	"github.com/regsweep/regsweep/storage"
)

// globalOptions are the flags every command shares.
type globalOptions struct {
	stdout, stderr io.Writer

	configFile string
	// configSearch is where a configuration file is looked for when
	// neither --config nor REGSWEEP_CONFIG names one.
	configSearch []string
	// layers is what PersistentPreRunE resolved: the file and where each
	// flag's value came from (config check prints it).
	layers *flagLayers

	registryConfig string
	storageDriver  string
	fsRoot         string
	s3             backend.S3Config
	s3Insecure     bool
	s3HTTP         bool
	swift          backend.SwiftConfig
	swiftInsecure  bool

	concurrency int
	rateLimit   float64
	logFormat   string
	logLevel    string
	quiet       bool
	memProfile  string
	// progressInterval is the least time between two progress log lines
	// when stderr is not a terminal.
	progressInterval time.Duration
}

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	g := &globalOptions{stdout: stdout, stderr: stderr, configSearch: defaultConfigSearch()}
	root := &cobra.Command{
		Use:           "regsweep",
		Short:         "Offline garbage collector and storage auditor for Docker Distribution registries",
		SilenceErrors: true,
		SilenceUsage:  true,
		// Every flag not given on the command line comes from its REGSWEEP_*
		// variable, else from the configuration file, else its default.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return g.resolveFlags(cmd)
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	g.addFlags(root.PersistentFlags())
	root.AddCommand(newVersionCommand(g), newInventoryCommand(g), newGCCommand(g), newSweepCommand(g), newUnlockCommand(g), newAuditCommand(g),
		newConfigCommand(g), newGenManCommand(g))
	return root
}

func (g *globalOptions) addFlags(f *pflag.FlagSet) {
	f.StringVar(&g.configFile, configFlag, "", "read flag values from this YAML file (default: the first of ./regsweep.yaml, $XDG_CONFIG_HOME/regsweep/regsweep.yaml, /etc/regsweep/regsweep.yaml that exists; empty: no file)")
	f.StringVar(&g.registryConfig, "registry-config", "", "read the storage from the registry's own config.yml (distribution's REGISTRY_STORAGE env overrides apply)")
	f.StringVar(&g.storageDriver, "storage-driver", "", "storage driver: filesystem, s3 or swift (default filesystem)")
	f.StringVar(&g.fsRoot, "fs-root", "", "filesystem root directory (default /var/lib/registry)")

	f.StringVar(&g.s3.RegionEndpoint, "s3-endpoint", "", "S3 endpoint URL, e.g. http://127.0.0.1:9000 (default AWS)")
	f.StringVar(&g.s3.Region, "s3-region", "", "S3 region")
	f.StringVar(&g.s3.Bucket, "s3-bucket", "", "S3 bucket")
	f.StringVar(&g.s3.AccessKey, "s3-access-key", "", "S3 access key (prefer REGSWEEP_S3_ACCESS_KEY)")
	f.StringVar(&g.s3.SecretKey, "s3-secret-key", "", "S3 secret key (prefer REGSWEEP_S3_SECRET_KEY)")
	f.StringVar(&g.s3.RootDirectory, "s3-root", "", "S3 rootdirectory of the registry")
	f.BoolVar(&g.s3.ForcePathStyle, "s3-path-style", false, "use path-style S3 URLs (MinIO, Ceph RGW)")
	f.BoolVar(&g.s3.ListV1, "s3-list-v1", false, "list with ListObjects V1 (for stores that mishandle V2)")
	f.BoolVar(&g.s3Insecure, "s3-insecure", false, "do not verify the S3 endpoint's TLS certificate")
	f.BoolVar(&g.s3HTTP, "s3-http", false, "use plain HTTP to the S3 endpoint")
	f.StringVar(&g.s3.CAFile, "s3-ca-file", "", "PEM file of CA certificates for the S3 endpoint")

	f.StringVar(&g.swift.AuthURL, "swift-auth-url", "", "Swift auth URL")
	f.StringVar(&g.swift.Username, "swift-username", "", "Swift user name")
	f.StringVar(&g.swift.Password, "swift-password", "", "Swift password or key (prefer REGSWEEP_SWIFT_PASSWORD)")
	f.StringVar(&g.swift.Container, "swift-container", "", "Swift container")
	f.StringVar(&g.swift.Prefix, "swift-prefix", "", "Swift prefix of the registry")
	f.StringVar(&g.swift.Region, "swift-region", "", "Swift region")
	f.StringVar(&g.swift.Tenant, "swift-tenant", "", "Swift tenant (project) name")
	f.StringVar(&g.swift.TenantID, "swift-tenant-id", "", "Swift tenant (project) ID")
	f.StringVar(&g.swift.Domain, "swift-domain", "", "Swift (Keystone v3) domain name")
	f.StringVar(&g.swift.DomainID, "swift-domain-id", "", "Swift (Keystone v3) domain ID")
	f.IntVar(&g.swift.AuthVersion, "swift-auth-version", 0, "Swift auth version 1, 2 or 3 (default: from the URL)")
	f.StringVar(&g.swift.StorageURL, "swift-storage-url", "", "override the storage URL the auth server returns")
	f.BoolVar(&g.swiftInsecure, "swift-insecure", false, "do not verify the Swift endpoint's TLS certificate")
	f.StringVar(&g.swift.CAFile, "swift-ca-file", "", "PEM file of CA certificates for the Swift endpoint")

	f.IntVar(&g.concurrency, "concurrency", 32, "requests in flight")
	f.Float64Var(&g.rateLimit, "rate-limit", 0, "at most this many storage calls a second (0: no limit)")
	f.StringVar(&g.logFormat, "log-format", "text", "log format on stderr: text or json")
	f.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.BoolVarP(&g.quiet, "quiet", "q", false, "log only warnings and errors, and show no progress")
	f.DurationVar(&g.progressInterval, "progress-interval", 30*time.Second, "when stderr is not a terminal, log a long stage's progress at most this often (0: only when stages start and end)")
	f.StringVar(&g.memProfile, "memprofile", "", "write a heap profile here when the command ends (for performance work)")
	f.MarkHidden("memprofile")
}

// writeHeapProfile writes the heap in use now to --memprofile, if set:
// commands call it where their memory peaks.
func (g *globalOptions) writeHeapProfile() {
	if g.memProfile == "" {
		return
	}
	runtime.GC()
	if f, err := os.Create(g.memProfile); err == nil {
		pprof.WriteHeapProfile(f)
		f.Close()
	}
}

func (g *globalOptions) logger() *slog.Logger { return g.loggerTo(g.stderr) }

// loggerTo is logger writing to w (the progress meter's writer while it
// draws on the terminal).
func (g *globalOptions) loggerTo(w io.Writer) *slog.Logger {
	level := slog.LevelInfo
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		level = slog.LevelInfo
	}
	if g.quiet {
		level = slog.LevelWarn
	}
	opts := &slog.HandlerOptions{Level: level}
	if g.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// storageConfig resolves the storage: the registry's config file if given,
// then flags and REGSWEEP_* env on top.
func (g *globalOptions) storageConfig(f *pflag.FlagSet) (backend.Config, error) {
	cfg := backend.DefaultConfig()
	if g.registryConfig != "" {
		var err error
		cfg, err = backend.FromRegistryConfig(g.registryConfig, os.Environ())
		if err != nil {
			var unsupported *backend.UnsupportedDriverError
			if errorsAs(err, &unsupported) {
				return cfg, err
			}
			return cfg, usageError{err}
		}
	}
	changed := func(name string) bool { return f.Changed(name) }
	// An empty --storage-driver or --fs-root (a template's "" or an empty
	// variable) means the default, as their help says.
	if changed("storage-driver") && g.storageDriver != "" {
		cfg.Driver = g.storageDriver
	} else if g.registryConfig == "" {
		switch {
		case g.s3.Bucket != "":
			cfg.Driver = "s3"
		case g.swift.AuthURL != "":
			cfg.Driver = "swift"
		}
	}
	if changed("fs-root") && g.fsRoot != "" {
		cfg.Filesystem.RootDirectory = g.fsRoot
	}
	s := &cfg.S3
	set := func(name string, dst *string, v string) {
		if changed(name) {
			*dst = v
		}
	}
	set("s3-endpoint", &s.RegionEndpoint, g.s3.RegionEndpoint)
	set("s3-region", &s.Region, g.s3.Region)
	set("s3-bucket", &s.Bucket, g.s3.Bucket)
	set("s3-access-key", &s.AccessKey, g.s3.AccessKey)
	set("s3-secret-key", &s.SecretKey, g.s3.SecretKey)
	set("s3-root", &s.RootDirectory, g.s3.RootDirectory)
	set("s3-ca-file", &s.CAFile, g.s3.CAFile)
	if changed("s3-path-style") {
		s.ForcePathStyle = g.s3.ForcePathStyle
	}
	if changed("s3-list-v1") {
		s.ListV1 = g.s3.ListV1
	}
	if changed("s3-insecure") {
		s.SkipVerify = g.s3Insecure
	}
	if changed("s3-http") {
		s.Secure = !g.s3HTTP
	}
	if s.Region == "" && s.RegionEndpoint != "" {
		s.Region = "us-east-1"
	}
	w := &cfg.Swift
	set("swift-auth-url", &w.AuthURL, g.swift.AuthURL)
	set("swift-username", &w.Username, g.swift.Username)
	set("swift-password", &w.Password, g.swift.Password)
	set("swift-container", &w.Container, g.swift.Container)
	set("swift-prefix", &w.Prefix, g.swift.Prefix)
	set("swift-region", &w.Region, g.swift.Region)
	set("swift-tenant", &w.Tenant, g.swift.Tenant)
	set("swift-tenant-id", &w.TenantID, g.swift.TenantID)
	set("swift-domain", &w.Domain, g.swift.Domain)
	set("swift-domain-id", &w.DomainID, g.swift.DomainID)
	set("swift-storage-url", &w.StorageURL, g.swift.StorageURL)
	set("swift-ca-file", &w.CAFile, g.swift.CAFile)
	if changed("swift-auth-version") {
		w.AuthVersion = g.swift.AuthVersion
	}
	if changed("swift-insecure") {
		w.InsecureSkipVerify = g.swiftInsecure
	}
	if err := cfg.Validate(); err != nil {
		var unsupported *backend.UnsupportedDriverError
		if errorsAs(err, &unsupported) {
			return cfg, err
		}
		return cfg, usageError{err}
	}
	return cfg, nil
}

// openStorage opens the configured storage with the standard wrappers.
func (g *globalOptions) openStorage(ctx context.Context, f *pflag.FlagSet, readOnly bool, reqs *storage.Requests) (storage.Driver, backend.Config, error) {
	cfg, err := g.storageConfig(f)
	if err != nil {
		return nil, cfg, err
	}
	d, err := backend.Open(ctx, cfg, backend.OpenOptions{Concurrency: g.concurrency, ReadOnly: readOnly, Retry: storage.DefaultRetry(), Requests: reqs, RateLimit: g.rateLimit})
	if err != nil {
		return nil, cfg, storageOpenError{err}
	}
	return d, cfg, nil
}
