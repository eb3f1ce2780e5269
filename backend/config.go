// Package backend opens the storage an operator points regsweep at: it
// resolves the configuration (flags, REGSWEEP_* env, or the registry's own
// config.yml with distribution's REGISTRY_STORAGE_* overrides) and puts the
// driver and its wrappers together in one place. Settings is the one list
// of storage settings: each one's flag, config.yml key and Config field.
// It reads no regsweep.yaml and no REGSWEEP_* variable itself: the command
// line sets the flags from them first.
//
// It owns the storage settings and the order of the wrappers around a
// driver. It may not read or delete registry data itself (the walker and
// sweep do, through the driver it returns).
package backend

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
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

// Redacted is a printable view of the configuration: every setting of its
// driver by its key, secrets replaced.
func (c Config) Redacted() map[string]string {
	m := map[string]string{"driver": c.Driver}
	for _, s := range Settings {
		if s.Driver != settingsDriver(c.Driver) {
			continue
		}
		v := s.field.format(&c)
		if s.Secret && v != "" {
			v = "<redacted>"
		}
		m[s.Key] = v
	}
	return m
}

// Secrets lists the secret values of the configuration, so outputs can be
// checked (and scrubbed) for them.
func (c Config) Secrets() []string {
	var out []string
	for _, s := range Settings {
		if v := s.field.format(&c); s.Secret && v != "" {
			out = append(out, v)
		}
	}
	return out
}

// FromRegistryConfig reads the storage section of distribution's
// config.yml with distribution's REGISTRY_STORAGE* environment overrides
// from env (e.g. os.Environ()), as the registry itself does
// (ReadRegistryStorage).
func FromRegistryConfig(path string, env []string) (Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("reading registry config: %w", err)
	}
	return ParseRegistryConfig(raw, env)
}

// ParseRegistryConfig is FromRegistryConfig on the file's content.
func ParseRegistryConfig(raw []byte, env []string) (Config, error) {
	storage, err := ReadRegistryStorage(raw, env)
	if err != nil {
		return Config{}, err
	}
	driver, params, err := storage.driver()
	if err != nil {
		return Config{}, err
	}
	cfg := DefaultConfig()
	switch driver {
	case "filesystem", "s3", "swift":
		cfg.Driver = driver
	case "s3aws", "s3-aws":
		// distribution registers its S3 driver as s3 and s3aws; s3-aws is
		// regsweep's own older spelling.
		cfg.Driver = "s3"
	default:
		return Config{}, &UnsupportedDriverError{Name: driver}
	}
	// distribution's s3 and filesystem drivers look their keys up as
	// written; its swift driver decodes them case-insensitively.
	p := paramReader{params: params, driver: driver, foldCase: driver == "swift"}
	for _, s := range Settings {
		if s.Driver == cfg.Driver && !s.OwnKey {
			s.field.read(&p, &cfg, s.Key)
		}
	}
	// distribution 2.8 (Harbor's) always uses path style with a
	// regionendpoint and has no forcepathstyle key; 3.x reads the key.
	if cfg.Driver == "s3" && p.get("forcepathstyle") == nil {
		cfg.S3.ForcePathStyle = cfg.S3.RegionEndpoint != ""
	}
	if p.err != nil {
		return Config{}, p.err
	}
	return cfg, nil
}

// paramReader reads a driver's parameters. Its types are more lenient than
// distribution's drivers (a number is a string, a string such as "true" a
// boolean); a mapping or sequence where a value belongs is an error.
type paramReader struct {
	params   *cfgValue // a mapping or null
	driver   string
	foldCase bool
	err      error
}

func (p *paramReader) fail(key, want, got string) {
	if p.err == nil {
		p.err = fmt.Errorf("registry config: storage.%s.%s must be %s, got %s", p.driver, key, want, got)
	}
}

// get returns key's value, or nil when it is absent or null.
func (p *paramReader) get(key string) any {
	var v *cfgValue
	switch {
	case p.params == nil:
	case !p.foldCase:
		v = p.params.entries[key]
	default:
		var found []string
		for k, kv := range p.params.entries {
			if strings.EqualFold(k, key) {
				found, v = append(found, k), kv
			}
		}
		if len(found) > 1 {
			sort.Strings(found)
			p.fail(key, "given once", "several spellings ("+strings.Join(found, ", ")+")")
			return nil
		}
	}
	x, err := v.value()
	if err != nil {
		p.fail(key, "a scalar", err.Error())
		return nil
	}
	return x
}

func (p *paramReader) str(key, def string) string {
	switch t := p.get(key).(type) {
	case nil:
		return def
	case string:
		return t
	default:
		return fmt.Sprint(t)
	}
}

func (p *paramReader) boolean(key string, def bool) bool {
	return readAs(p, key, def, "a boolean", strconv.ParseBool)
}

func (p *paramReader) integer(key string, def int) int {
	return readAs(p, key, def, "an integer", strconv.Atoi)
}

// readAs reads key as a T, or as a string that parse reads as one.
func readAs[T bool | int](p *paramReader, key string, def T, want string, parse func(string) (T, error)) T {
	switch t := p.get(key).(type) {
	case nil:
		return def
	case T:
		return t
	case string:
		if x, err := parse(t); err == nil {
			return x
		}
		p.fail(key, want, "a string that is not one")
	default:
		p.fail(key, want, fmt.Sprintf("%T", t))
	}
	return def
}
