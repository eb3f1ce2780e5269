// Package backend opens the storage an operator points regsweep at: it
// resolves the configuration (flags, REGSWEEP_* env, or the registry's own
// config.yml with distribution's REGISTRY_STORAGE_* overrides) and puts the
// driver and its wrappers together in one place.
package backend

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Config is a resolved storage configuration. Secrets live only here and
// are never printed: use Redacted.
type Config struct {
	Driver     string // filesystem, s3, swift
	Filesystem FilesystemConfig
	S3         S3Config
	Swift      SwiftConfig
}

type FilesystemConfig struct {
	RootDirectory string
}

type S3Config struct {
	Region, RegionEndpoint, Bucket, AccessKey, SecretKey, RootDirectory string
	Secure, SkipVerify, ForcePathStyle, V4Auth, ListV1                  bool
	CAFile                                                              string
}

type SwiftConfig struct {
	AuthURL, Username, Password, Container, Region, Tenant, TenantID, Domain, DomainID, Prefix string
	AuthVersion                                                                                int
	InsecureSkipVerify                                                                         bool
	CAFile, StorageURL                                                                         string
}

// Drivers regsweep can open.
var supportedDrivers = []string{"filesystem", "s3", "swift"}

// UnsupportedDriverError names a storage driver regsweep cannot read.
type UnsupportedDriverError struct{ Name string }

func (e *UnsupportedDriverError) Error() string {
	return fmt.Sprintf("storage driver %q is not supported (supported: %s)", e.Name, strings.Join(supportedDrivers, ", "))
}

// DefaultConfig is the filesystem driver at distribution's default root.
func DefaultConfig() Config {
	return Config{Driver: "filesystem", Filesystem: FilesystemConfig{RootDirectory: "/var/lib/registry"},
		S3: S3Config{Secure: true, V4Auth: true}}
}

// Validate reports the first missing or unsupported setting.
func (c Config) Validate() error {
	switch c.Driver {
	case "filesystem":
		if c.Filesystem.RootDirectory == "" {
			return fmt.Errorf("filesystem storage needs a root directory")
		}
	case "s3", "s3-aws":
		if c.S3.Bucket == "" {
			return fmt.Errorf("s3 storage needs a bucket")
		}
		if c.S3.Region == "" && c.S3.RegionEndpoint == "" {
			return fmt.Errorf("s3 storage needs a region or a region endpoint")
		}
	case "swift":
		if c.Swift.AuthURL == "" || c.Swift.Container == "" {
			return fmt.Errorf("swift storage needs an auth URL and a container")
		}
	default:
		return &UnsupportedDriverError{Name: c.Driver}
	}
	return nil
}

// Redacted is a printable view of the configuration with every secret
// replaced.
func (c Config) Redacted() map[string]string {
	m := map[string]string{"driver": c.Driver}
	hide := func(s string) string {
		if s == "" {
			return ""
		}
		return "<redacted>"
	}
	switch c.Driver {
	case "filesystem":
		m["rootdirectory"] = c.Filesystem.RootDirectory
	case "s3", "s3-aws":
		s := c.S3
		m["region"], m["regionendpoint"], m["bucket"], m["rootdirectory"] = s.Region, s.RegionEndpoint, s.Bucket, s.RootDirectory
		m["accesskey"], m["secretkey"] = hide(s.AccessKey), hide(s.SecretKey)
		m["secure"], m["skipverify"], m["forcepathstyle"] = strconv.FormatBool(s.Secure), strconv.FormatBool(s.SkipVerify), strconv.FormatBool(s.ForcePathStyle)
	case "swift":
		s := c.Swift
		m["authurl"], m["username"], m["container"], m["prefix"], m["region"] = s.AuthURL, s.Username, s.Container, s.Prefix, s.Region
		m["password"] = hide(s.Password)
		m["storageurl"] = s.StorageURL
	}
	return m
}

// Secrets lists the secret values of the configuration, so outputs can be
// checked (and scrubbed) for them.
func (c Config) Secrets() []string {
	var out []string
	for _, s := range []string{c.S3.SecretKey, c.S3.AccessKey, c.Swift.Password} {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// storage: sections that are settings, not drivers.
var nonDriverKeys = map[string]bool{"delete": true, "redirect": true, "cache": true, "maintenance": true, "tag": true}

// FromRegistryConfig reads the storage section of distribution's
// config.yml, applying distribution's environment overrides
// (REGISTRY_STORAGE=<driver>, REGISTRY_STORAGE_<DRIVER>_<KEY>=value) from
// env (e.g. os.Environ()).
func FromRegistryConfig(path string, env []string) (Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("reading registry config: %w", err)
	}
	return ParseRegistryConfig(raw, env)
}

// ParseRegistryConfig is FromRegistryConfig on the file's content.
func ParseRegistryConfig(raw []byte, env []string) (Config, error) {
	var doc struct {
		Storage map[string]any `yaml:"storage"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return Config{}, fmt.Errorf("registry config is not valid YAML: %w", err)
	}
	var drivers []string
	for k := range doc.Storage {
		if !nonDriverKeys[k] {
			drivers = append(drivers, k)
		}
	}
	sort.Strings(drivers)
	envMap := map[string]string{}
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "REGISTRY_STORAGE") {
			envMap[k] = v
		}
	}
	driver := ""
	if v, ok := envMap["REGISTRY_STORAGE"]; ok {
		driver = strings.ToLower(v)
	} else {
		switch len(drivers) {
		case 0:
			return Config{}, fmt.Errorf("registry config has no storage driver in its storage section")
		case 1:
			driver = drivers[0]
		default:
			return Config{}, fmt.Errorf("registry config names several storage drivers (%s); distribution requires exactly one", strings.Join(drivers, ", "))
		}
	}
	params := map[string]any{}
	if p, ok := doc.Storage[driver].(map[string]any); ok {
		for k, v := range p {
			params[strings.ToLower(k)] = v
		}
	}
	envPrefix := "REGISTRY_STORAGE_" + strings.ToUpper(strings.ReplaceAll(driver, "-", "")) + "_"
	for k, v := range envMap {
		if strings.HasPrefix(k, envPrefix) {
			params[strings.ToLower(strings.TrimPrefix(k, envPrefix))] = v
		}
	}
	cfg := DefaultConfig()
	cfg.Driver = driver
	p := paramReader{params: params, driver: driver}
	switch driver {
	case "filesystem":
		cfg.Filesystem.RootDirectory = p.str("rootdirectory", "/var/lib/registry")
	case "s3", "s3-aws":
		cfg.Driver = "s3"
		s := &cfg.S3
		s.Region = p.str("region", "")
		s.RegionEndpoint = p.str("regionendpoint", "")
		s.Bucket = p.str("bucket", "")
		s.AccessKey = p.str("accesskey", "")
		s.SecretKey = p.str("secretkey", "")
		s.RootDirectory = p.str("rootdirectory", "")
		s.Secure = p.boolean("secure", true)
		s.SkipVerify = p.boolean("skipverify", false)
		// distribution 2.8 (Harbor's) always uses path style with a
		// regionendpoint and has no forcepathstyle key; 3.x reads the key.
		s.ForcePathStyle = p.boolean("forcepathstyle", s.RegionEndpoint != "")
		s.V4Auth = p.boolean("v4auth", true)
	case "swift":
		s := &cfg.Swift
		s.AuthURL = p.str("authurl", "")
		s.Username = p.str("username", "")
		s.Password = p.str("password", "")
		s.Container = p.str("container", "")
		s.Region = p.str("region", "")
		s.Tenant = p.str("tenant", "")
		s.TenantID = p.str("tenantid", "")
		s.Domain = p.str("domain", "")
		s.DomainID = p.str("domainid", "")
		s.Prefix = p.str("prefix", "")
		s.InsecureSkipVerify = p.boolean("insecureskipverify", false)
		s.AuthVersion = p.integer("authversion", 0)
	default:
		return Config{}, &UnsupportedDriverError{Name: driver}
	}
	if p.err != nil {
		return Config{}, p.err
	}
	return cfg, nil
}

type paramReader struct {
	params map[string]any
	driver string
	err    error
}

func (p *paramReader) fail(key string, v any, want string) {
	if p.err == nil {
		p.err = fmt.Errorf("registry config: storage.%s.%s must be %s, got %T", p.driver, key, want, v)
	}
}

func (p *paramReader) str(key, def string) string {
	v, ok := p.params[key]
	if !ok || v == nil {
		return def
	}
	switch t := v.(type) {
	case string:
		return t
	case int, int64, float64, bool:
		return fmt.Sprint(t)
	}
	p.fail(key, v, "a string")
	return def
}

func (p *paramReader) boolean(key string, def bool) bool {
	v, ok := p.params[key]
	if !ok || v == nil {
		return def
	}
	b, ok := asBool(v, def)
	if !ok {
		p.fail(key, v, "a boolean")
	}
	return b
}

func (p *paramReader) integer(key string, def int) int {
	v, ok := p.params[key]
	if !ok || v == nil {
		return def
	}
	switch t := v.(type) {
	case int:
		return t
	case string:
		if n, err := strconv.Atoi(t); err == nil {
			return n
		}
	}
	p.fail(key, v, "an integer")
	return def
}

func asBool(v any, def bool) (bool, bool) {
	switch t := v.(type) {
	case nil:
		return def, true
	case bool:
		return t, true
	case string:
		b, err := strconv.ParseBool(strings.TrimSpace(t))
		return b, err == nil
	}
	return def, false
}
