package backend

import (
	"errors"
	"testing"
)

func TestParseRegistryConfigS3WithEnvOverrides(t *testing.T) {
	raw := []byte(`
version: 0.1
storage:
  delete:
    enabled: true
  maintenance:
    readonly:
      enabled: true
  s3:
    region: us-east-1
    regionendpoint: http://127.0.0.1:9000
    bucket: registry
    accesskey: AKIA-FILE
    secretkey: from-file
    secure: "false"
    forcepathstyle: true
    rootdirectory: /reg
`)
	cfg, err := ParseRegistryConfig(raw, []string{"REGISTRY_STORAGE_S3_SECRETKEY=from-env", "REGISTRY_STORAGE_S3_BUCKET=other", "HOME=/root"})
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.S3
	if cfg.Driver != "s3" || s.Bucket != "other" || s.SecretKey != "from-env" || s.AccessKey != "AKIA-FILE" || s.Secure ||
		!s.ForcePathStyle || s.RootDirectory != "/reg" || s.RegionEndpoint != "http://127.0.0.1:9000" || !s.V4Auth {
		t.Fatalf("unexpected config: %+v", cfg)
	}
	for k, v := range cfg.Redacted() {
		if v == "from-env" || v == "AKIA-FILE" {
			t.Fatalf("Redacted leaks %s", k)
		}
	}
}

func TestParseRegistryConfigSwiftAndFilesystem(t *testing.T) {
	cfg, err := ParseRegistryConfig([]byte("storage:\n  swift:\n    authurl: http://k/auth/v1.0\n    username: u\n    password: p\n    container: c\n    prefix: pre\n    authversion: 1\n"), nil)
	if err != nil || cfg.Driver != "swift" || cfg.Swift.Container != "c" || cfg.Swift.Prefix != "pre" || cfg.Swift.AuthVersion != 1 {
		t.Fatalf("swift: %+v %v", cfg, err)
	}
	cfg, err = ParseRegistryConfig([]byte("storage:\n  filesystem: {}\n  cache:\n    blobdescriptor: inmemory\n"), nil)
	if err != nil || cfg.Driver != "filesystem" || cfg.Filesystem.RootDirectory != "/var/lib/registry" {
		t.Fatalf("filesystem default root: %+v %v", cfg, err)
	}
	cfg, err = ParseRegistryConfig([]byte("storage:\n  filesystem:\n    rootdirectory: /a\n"), []string{"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=/b"})
	if err != nil || cfg.Filesystem.RootDirectory != "/b" {
		t.Fatalf("filesystem env override: %+v %v", cfg, err)
	}
}

func TestParseRegistryConfigErrors(t *testing.T) {
	var unsupported *UnsupportedDriverError
	if _, err := ParseRegistryConfig([]byte("storage:\n  gcs:\n    bucket: x\n"), nil); !errors.As(err, &unsupported) || unsupported.Name != "gcs" {
		t.Errorf("gcs: want UnsupportedDriverError, got %v", err)
	}
	if _, err := ParseRegistryConfig([]byte("storage:\n  delete:\n    enabled: true\n"), nil); err == nil {
		t.Errorf("no driver: want an error")
	}
	if _, err := ParseRegistryConfig([]byte("storage:\n  s3: {}\n  filesystem: {}\n"), nil); err == nil {
		t.Errorf("two drivers: want an error")
	}
	if _, err := ParseRegistryConfig([]byte("storage: [\n"), nil); err == nil {
		t.Errorf("bad YAML: want an error")
	}
	if _, err := ParseRegistryConfig([]byte("storage:\n  s3:\n    secure: maybe\n"), nil); err == nil {
		t.Errorf("bad boolean: want an error")
	}
	if err := (Config{Driver: "azure"}).Validate(); !errors.As(err, &unsupported) {
		t.Errorf("Validate azure: %v", err)
	}
}

// Harbor's registry is distribution 2.8: with a regionendpoint it always
// uses path style, and its config.yml has no forcepathstyle key.
func TestParseRegistryConfigPathStyleFollowsRegionEndpoint(t *testing.T) {
	for _, c := range []struct {
		yaml string
		want bool
	}{
		{"storage:\n  s3:\n    bucket: b\n    region: us-east-1\n    regionendpoint: http://minio:9000\n", true},
		{"storage:\n  s3:\n    bucket: b\n    region: us-east-1\n    regionendpoint: http://minio:9000\n    forcepathstyle: false\n", false},
		{"storage:\n  s3:\n    bucket: b\n    region: us-east-1\n", false},
	} {
		cfg, err := ParseRegistryConfig([]byte(c.yaml), nil)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.S3.ForcePathStyle != c.want {
			t.Errorf("%q: path style %v, want %v", c.yaml, cfg.S3.ForcePathStyle, c.want)
		}
	}
}
