package backend

import (
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// FuzzParseRegistryConfig: whatever distribution's config.yml and
// environment hold, parsing never panics, names a supported driver or
// fails, never shows a secret in Redacted, lists every secret in Secrets,
// lets REGISTRY_STORAGE_<DRIVER>_<KEY> override the file, and a parsed
// configuration written back as a config.yml parses to the same value.
func FuzzParseRegistryConfig(f *testing.F) {
	seeds := []struct{ yaml, env string }{
		{"storage:\n  filesystem:\n    rootdirectory: /var/lib/registry\n", ""},
		{"storage:\n  s3:\n    region: us-east-1\n    bucket: b\n    accesskey: AK\n    secretkey: SK\n    secure: false\n    v4auth: \"true\"\n", "REGISTRY_STORAGE_S3_BUCKET=other"},
		{"storage:\n  swift:\n    authurl: http://k/auth/v1.0\n    username: u\n    password: p\n    container: c\n    authversion: 1\n", ""},
		{"storage:\n  delete:\n    enabled: true\n  maintenance:\n    readonly:\n      enabled: true\n  filesystem: {}\n", "REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED=false"},
		{"storage:\n  s3: {}\n  filesystem: {}\n", "REGISTRY_STORAGE=s3"},
		{"storage:\n  gcs:\n    bucket: x\n", ""},
		{"storage: [\n", ""},
		{"storage:\n  s3:\n    secure: maybe\n", ""},
		{"storage:\n  s3-aws:\n    bucket: 1e3\n    region: 7\n", "REGISTRY_STORAGE_S3AWS_SECRETKEY=s"},
		{"", "REGISTRY_STORAGE=swift\nREGISTRY_STORAGE_SWIFT_AUTHVERSION=x"},
	}
	for _, s := range seeds {
		f.Add([]byte(s.yaml), s.env)
	}
	f.Fuzz(func(t *testing.T, raw []byte, envText string) {
		env := strings.Split(envText, "\n")
		cfg, err := ParseRegistryConfig(raw, env)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an error with no message")
			}
			return
		}
		if !slices.Contains(supportedDrivers, cfg.Driver) {
			t.Fatalf("parsed driver %q is not supported", cfg.Driver)
		}
		red := cfg.Redacted()
		for _, k := range []string{"accesskey", "secretkey", "password"} {
			if v := red[k]; v != "" && v != "<redacted>" {
				t.Fatalf("Redacted shows %s", k)
			}
		}
		secrets := cfg.Secrets()
		for _, s := range []string{cfg.S3.AccessKey, cfg.S3.SecretKey, cfg.Swift.Password} {
			if s != "" && !slices.Contains(secrets, s) {
				t.Fatalf("Secrets misses a secret")
			}
		}
		// The last assignment of a variable wins, as in a process
		// environment. A payload is YAML, so only a plain word is checked
		// verbatim, and only while every override is REGISTRY_STORAGE or
		// one key of the driver (nothing else can replace the section).
		last := map[string]string{}
		for _, kv := range env {
			if k, v, ok := strings.Cut(kv, "="); ok {
				last[k] = v
			}
		}
		envDriver := strings.ToUpper(cfg.Driver)
		oneKey := regexp.MustCompile(`^REGISTRY_STORAGE_` + envDriver + `_[A-Z]+$`)
		for k := range last {
			if strings.HasPrefix(k, "REGISTRY_STORAGE_") && !oneKey.MatchString(k) {
				return
			}
		}
		override := func(key, got string) {
			v, ok := last["REGISTRY_STORAGE_"+envDriver+"_"+key]
			if ok && plainWord.MatchString(v) && !yaml11Word[strings.ToLower(v)] && v != got {
				t.Fatalf("REGISTRY_STORAGE_%s_%s=%q did not override the file: got %q", envDriver, key, v, got)
			}
		}
		switch cfg.Driver {
		case "filesystem":
			override("ROOTDIRECTORY", cfg.Filesystem.RootDirectory)
		case "s3":
			override("BUCKET", cfg.S3.Bucket)
			override("SECRETKEY", cfg.S3.SecretKey)
		case "swift":
			override("CONTAINER", cfg.Swift.Container)
			override("PASSWORD", cfg.Swift.Password)
		}

		// Round trip: write what was parsed as a config.yml, parse it again.
		back, err := ParseRegistryConfig(registryYAML(t, cfg), nil)
		if err != nil {
			if !utf8.ValidString(strings.Join(configStrings(cfg), "")) {
				return // YAML cannot carry invalid UTF-8 as a plain string
			}
			t.Fatalf("re-parsing the written config: %v", err)
		}
		if !reflect.DeepEqual(back, cfg) && utf8.ValidString(strings.Join(configStrings(cfg), "")) {
			t.Fatalf("round trip changed the config:\n got %+v\nwant %+v", back, cfg)
		}
	})
}

// plainWord is a payload YAML reads as itself, unless it is one of
// yaml11Word (booleans and null in YAML 1.1, in any case).
var (
	plainWord  = regexp.MustCompile(`^[A-Za-z/][A-Za-z0-9/._-]*$`)
	yaml11Word = map[string]bool{"y": true, "n": true, "yes": true, "no": true, "on": true, "off": true,
		"true": true, "false": true, "null": true}
)

func configStrings(c Config) []string {
	s, w := c.S3, c.Swift
	return []string{c.Filesystem.RootDirectory, s.Region, s.RegionEndpoint, s.Bucket, s.AccessKey, s.SecretKey, s.RootDirectory,
		w.AuthURL, w.Username, w.Password, w.Container, w.Region, w.Tenant, w.TenantID, w.Domain, w.DomainID, w.Prefix}
}

// registryYAML writes c as distribution's config.yml would hold it.
func registryYAML(t *testing.T, c Config) []byte {
	params := map[string]any{}
	switch c.Driver {
	case "filesystem":
		params["rootdirectory"] = c.Filesystem.RootDirectory
	case "s3":
		s := c.S3
		for k, v := range map[string]string{"region": s.Region, "regionendpoint": s.RegionEndpoint, "bucket": s.Bucket,
			"accesskey": s.AccessKey, "secretkey": s.SecretKey, "rootdirectory": s.RootDirectory} {
			params[k] = v
		}
		for k, v := range map[string]bool{"secure": s.Secure, "skipverify": s.SkipVerify, "forcepathstyle": s.ForcePathStyle, "v4auth": s.V4Auth} {
			params[k] = v
		}
	case "swift":
		s := c.Swift
		for k, v := range map[string]string{"authurl": s.AuthURL, "username": s.Username, "password": s.Password, "container": s.Container,
			"region": s.Region, "tenant": s.Tenant, "tenantid": s.TenantID, "domain": s.Domain, "domainid": s.DomainID, "prefix": s.Prefix} {
			params[k] = v
		}
		params["insecureskipverify"] = s.InsecureSkipVerify
		params["authversion"] = strconv.Itoa(s.AuthVersion)
	}
	doc := map[string]any{"storage": map[string]any{c.Driver: params}}
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatalf("writing config: %v", err)
	}
	return b
}
