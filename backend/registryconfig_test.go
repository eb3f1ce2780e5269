package backend

import (
	"fmt"
	"strings"
	"testing"
)

const s3File = "version: 0.1\nstorage:\n  s3:\n    region: us-east-1\n    bucket: file-bucket\n    accesskey: file-access\n    secretkey: file-secret\n"

// Cases where the registry config is read as distribution reads it and a
// flat, case-folding reading was wrong. Each "registry:" note is what
// distribution v3.1.2 and v2.8.3 did with that file and environment when
// started by hand (`registry serve`).
func TestParseRegistryConfigFollowsDistribution(t *testing.T) {
	cases := []struct {
		name   string
		config string
		env    []string
		check  func(Config) bool
		errHas string // non-empty: the parse must fail with this in the message
	}{
		// registry: "no bucket parameter provided"; its s3 and filesystem
		// drivers look keys up as written.
		{"s3 key case is significant", "storage:\n  s3:\n    region: r\n    Bucket: b\n", nil,
			func(c Config) bool { return c.S3.Bucket == "" }, ""},
		// registry: uses /var/lib/registry.
		{"filesystem key case is significant", "storage:\n  filesystem:\n    RootDirectory: /data\n", nil,
			func(c Config) bool { return c.Filesystem.RootDirectory == "/var/lib/registry" }, ""},
		// registry: starts; the override adds a lower-case key beside the file's.
		{"override beside a key of another case", "storage:\n  s3:\n    region: r\n    Bucket: file\n",
			[]string{"REGISTRY_STORAGE_S3_BUCKET=env"}, func(c Config) bool { return c.S3.Bucket == "env" }, ""},
		// registry (2.8): starts; its swift driver matches keys in any case.
		{"swift keys in any case", "storage:\n  swift:\n    AuthURL: http://k/auth/v1.0\n    UserName: u\n    container: c\n", nil,
			func(c Config) bool { return c.Swift.AuthURL == "http://k/auth/v1.0" && c.Swift.Username == "u" }, ""},
		{"swift key given in two spellings", "storage:\n  swift:\n    authurl: http://a\n    AuthURL: http://b\n    container: c\n", nil,
			nil, "several spellings (AuthURL, authurl)"},
		// registry: "no region parameter provided": a lower-case element
		// matches no key, so it replaces the whole s3 section.
		{"lower-case element replaces the section", s3File, []string{"REGISTRY_STORAGE_s3_BUCKET=env"},
			func(c Config) bool { return c.S3.Bucket == "env" && c.S3.Region == "" && c.S3.SecretKey == "" }, ""},
		{"a nested override turns a value into a mapping", "storage:\n  s3:\n    region: r\n",
			[]string{"REGISTRY_STORAGE_S3_BUCKET_NAME=b"}, nil, "storage.s3.bucket must be a scalar, got a mapping"},
		{"a nested override below a value is ignored", s3File, []string{"REGISTRY_STORAGE_S3_BUCKET_NAME=b"},
			func(c Config) bool { return c.S3.Bucket == "file-bucket" }, ""},

		// registry: yes/no/on/off are booleans (its YAML library is YAML 1.1);
		// 1 is an integer and "secure parameter should be a boolean".
		{"YAML 1.1 yes", s3File + "    secure: yes\n    skipverify: on\n", nil,
			func(c Config) bool { return c.S3.Secure && c.S3.SkipVerify }, ""},
		{"YAML 1.1 off", s3File + "    secure: off\n    v4auth: N\n", nil, func(c Config) bool { return !c.S3.Secure && !c.S3.V4Auth }, ""},
		{"env YAML 1.1 no", s3File, []string{"REGISTRY_STORAGE_S3_SECURE=no"}, func(c Config) bool { return !c.S3.Secure }, ""},
		{"env 1 is not a boolean", s3File, []string{"REGISTRY_STORAGE_S3_SECURE=1"}, nil, "storage.s3.secure must be a boolean, got int"},
		{"quoted string t is a boolean to the driver", s3File + "    secure: \"f\"\n", nil, func(c Config) bool { return !c.S3.Secure }, ""},
		{"a YAML 1.1 boolean where a string belongs", s3File + "    rootdirectory: yes\n", nil,
			func(c Config) bool { return c.S3.RootDirectory == "true" }, ""},
		{"an octal number", "storage:\n  swift:\n    authurl: http://k\n    container: c\n    authversion: 03\n", nil,
			func(c Config) bool { return c.Swift.AuthVersion == 3 }, ""},

		// registry: an env payload is YAML, and a mapping replaces the section.
		{"env payload is a mapping", s3File, []string{`REGISTRY_STORAGE_S3={"region": "eu-west-1", "bucket": "env-bucket"}`},
			func(c Config) bool {
				return c.S3.Bucket == "env-bucket" && c.S3.Region == "eu-west-1" && c.S3.SecretKey == ""
			}, ""},
		{"env payload is YAML", s3File, []string{`REGISTRY_STORAGE_S3_SECRETKEY="quoted secret"`},
			func(c Config) bool { return c.S3.SecretKey == "quoted secret" }, ""},
		{"whole storage from the environment", s3File, []string{`REGISTRY_STORAGE={"filesystem": {"rootdirectory": "/env"}}`},
			func(c Config) bool { return c.Driver == "filesystem" && c.Filesystem.RootDirectory == "/env" }, ""},
		// registry: "no region parameter provided".
		{"REGISTRY_STORAGE=s3 drops the file's section", s3File, []string{"REGISTRY_STORAGE=s3"},
			func(c Config) bool { return c.Driver == "s3" && c.S3.Bucket == "" && c.S3.Region == "" }, ""},
		{"a driver name is not lower-cased", s3File, []string{"REGISTRY_STORAGE=S3"}, nil, `storage driver "S3" is not supported`},
		// Applied in name order, whatever the order of the environment.
		{"section before key", s3File, []string{"REGISTRY_STORAGE_S3_BUCKET=key", `REGISTRY_STORAGE_S3={"region": "r", "bucket": "section"}`},
			func(c Config) bool { return c.S3.Bucket == "key" && c.S3.Region == "r" }, ""},
		{"a duplicate key: the last wins", s3File + "    bucket: second\n", nil, func(c Config) bool { return c.S3.Bucket == "second" }, ""},

		// registry: "multiple storage drivers specified in configuration or
		// environment: filesystem, s3".
		{"override naming another driver", "storage:\n  filesystem:\n    rootdirectory: /r\n", []string{"REGISTRY_STORAGE_S3_BUCKET=b"},
			nil, "several storage drivers (filesystem, s3)"},
		// registry: s3aws is the S3 driver's second name.
		{"s3aws and its overrides", "storage:\n  s3aws:\n    region: r\n", []string{"REGISTRY_STORAGE_S3AWS_BUCKET=b"},
			func(c Config) bool { return c.Driver == "s3" && c.S3.Bucket == "b" && c.S3.Region == "r" }, ""},
		{"S3AWS overrides do not reach s3-aws", "storage:\n  s3-aws:\n    region: r\n", []string{"REGISTRY_STORAGE_S3AWS_BUCKET=b"},
			nil, "several storage drivers (s3-aws, s3aws)"},

		// registry: "cannot unmarshal !!map into string"; it does not start.
		{"a storage section that is not a mapping", s3File + "  delete: true\n", nil, nil, "storage.delete must be a mapping"},
		{"an override that is not YAML elsewhere in storage", s3File, []string{"REGISTRY_STORAGE_MAINTENANCE_READONLY={"},
			nil, "REGISTRY_STORAGE_MAINTENANCE_READONLY: not valid YAML"},
		{"a variable without a value is no variable", s3File, []string{"REGISTRY_STORAGE_S3_BUCKET"},
			func(c Config) bool { return c.S3.Bucket == "file-bucket" }, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := ParseRegistryConfig([]byte(c.config), c.env)
			switch {
			case c.errHas != "":
				if err == nil || !strings.Contains(err.Error(), c.errHas) {
					t.Fatalf("error %v, want one saying %q (config %+v)", err, c.errHas, cfg)
				}
			case err != nil:
				t.Fatal(err)
			case !c.check(cfg):
				t.Fatalf("unexpected config: %+v", cfg)
			}
		})
	}
}

// No error shows a value from the file or the environment, even when the
// value is what breaks: YAML names an unknown anchor (*name) in its error.
func TestRegistryConfigErrorsHideValues(t *testing.T) {
	const secret = "TopSecret9f2"
	for _, c := range []struct {
		config string
		env    []string
	}{
		{s3File, []string{"REGISTRY_STORAGE_S3_SECRETKEY=*" + secret}},
		{s3File + "    accesskey: *" + secret + "\n", nil},
		{s3File, []string{"REGISTRY_STORAGE_S3_SECRETKEY=[" + secret}},
		{s3File, []string{"REGISTRY_STORAGE_S3_SECRETKEY={a: " + secret + "}"}},
		{s3File, []string{"REGISTRY_STORAGE_S3=" + secret}},
		{s3File + "    secure: " + secret + "\n", nil},
		{"storage:\n  swift:\n    password: !!int " + secret + "\n", nil},
		{"storage:\n  swift:\n    authversion: " + secret + "\n", nil},
	} {
		_, err := ParseRegistryConfig([]byte(c.config), c.env)
		if err == nil {
			t.Errorf("%q %q: no error", c.config, c.env)
		} else if strings.Contains(err.Error(), secret) {
			t.Errorf("the error shows the value: %v", err)
		}
	}
}

// A file whose aliases recurse or multiply is refused with an error, not a
// crash (the registry's YAML library refuses it too), and the error does
// not name the anchor.
func TestRegistryConfigAliasesThatDoNotEnd(t *testing.T) {
	const anchor = "TopSecret9f2"
	var laughs strings.Builder
	laughs.WriteString("l0: &l0 {k: v}\n")
	for i := 1; i <= 30; i++ {
		fmt.Fprintf(&laughs, "l%d: &l%d {a: *l%d, b: *l%d}\n", i, i, i-1, i-1)
	}
	laughs.WriteString("storage:\n  filesystem:\n    rootdirectory: /r\n")
	for _, c := range []struct {
		name, config string
		env          []string
		errHas       string
	}{
		{"storage inside itself", "storage: &" + anchor + "\n  filesystem:\n    x: *" + anchor + "\n", nil, "contains itself"},
		{"a section inside itself", "storage:\n  filesystem: &" + anchor + "\n    x: *" + anchor + "\n", nil, "contains itself"},
		{"a section merged into itself", "storage:\n  filesystem: &" + anchor + "\n    <<: *" + anchor + "\n", nil, "contains itself"},
		{"an override inside itself", s3File, []string{"REGISTRY_STORAGE_S3=&" + anchor + " {x: *" + anchor + "}"}, "contains itself"},
		{"aliases doubling 30 times", laughs.String(), nil, "once its aliases are expanded"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseRegistryConfig([]byte(c.config), c.env)
			if err == nil || !strings.Contains(err.Error(), c.errHas) {
				t.Fatalf("error %v, want one saying %q", err, c.errHas)
			}
			if strings.Contains(err.Error(), anchor) {
				t.Fatalf("the error names the anchor: %v", err)
			}
		})
	}
	// Aliases that neither recurse nor multiply still resolve.
	cfg, err := ParseRegistryConfig([]byte("x: &fs {rootdirectory: /shared}\nstorage:\n  filesystem:\n    <<: *fs\n  delete: *fs\n"), nil)
	if err != nil || cfg.Filesystem.RootDirectory != "/shared" {
		t.Fatalf("got %+v, %v; want rootdirectory /shared", cfg, err)
	}
}

// Each case's verdict was checked against distribution v3.1.2 itself
// (`registry serve` with that file and environment, then POST
// /v2/x/blobs/uploads/: 405 is read-only, 202 writable, or no start at
// all); e2e's TestReadOnlyVerdictMatchesRegistry re-checks a set of them
// against the real registry on every run.
func TestRegistryReadOnlyFollowsDistribution(t *testing.T) {
	file := func(readonly string) string {
		return "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /r\n  maintenance:\n    uploadpurging:\n      enabled: false\n" + readonly
	}
	cases := []struct {
		name   string
		config string
		env    []string
		want   bool
		reason string // part of the reason when not read-only
	}{
		{"enabled true", file("    readonly:\n      enabled: true\n"), nil, true, ""},
		{"enabled false", file("    readonly:\n      enabled: false\n"), nil, false, "is false"},
		{"no readonly section", file(""), nil, false, "not set"},
		{"no maintenance", "version: 0.1\nstorage:\n  filesystem: {}\n", nil, false, "not set"},
		{"YAML 1.1 yes", file("    readonly:\n      enabled: yes\n"), nil, true, ""},
		{"YAML 1.1 Y", file("    readonly:\n      enabled: Y\n"), nil, true, ""},
		{"YAML 1.1 ON", file("    readonly:\n      enabled: ON\n"), nil, true, ""},
		{"YAML 1.1 off", file("    readonly:\n      enabled: off\n"), nil, false, "is false"},
		{"quoted true is a string", file("    readonly:\n      enabled: \"true\"\n"), nil, false, "not a boolean"},
		{"1 is not a boolean", file("    readonly:\n      enabled: 1\n"), nil, false, "not a boolean"},
		{"duplicate key, the last wins", file("    readonly:\n      enabled: true\n      enabled: false\n"), nil, false, "is false"},
		{"alias", "x: &ro\n  enabled: true\nstorage:\n  filesystem: {}\n  maintenance:\n    readonly: *ro\n", nil, true, ""},
		{"merge key", "x: &ro\n  enabled: true\nstorage:\n  filesystem: {}\n  maintenance:\n    readonly:\n      <<: *ro\n", nil, true, ""},
		{"readonly null", file("    readonly:\n"), nil, false, "not a YAML mapping"},
		{"not YAML", "storage: [\n", nil, false, "not valid YAML"},
		// distribution reads every storage section as a mapping.
		{"a storage section that is not a mapping", file("    readonly:\n      enabled: true\n") + "  delete: true\n", nil, false, "would not start"},

		{"env map turns it on", file("    readonly:\n      enabled: false\n"),
			[]string{`REGISTRY_STORAGE_MAINTENANCE_READONLY={"enabled": true}`}, true, ""},
		{"env map turns it off", file("    readonly:\n      enabled: true\n"),
			[]string{`REGISTRY_STORAGE_MAINTENANCE_READONLY={"enabled": false}`}, false, "is false"},
		{"env flow map without a file section", file(""), []string{`REGISTRY_STORAGE_MAINTENANCE_READONLY={enabled: true}`}, true, ""},
		{"env string true", file(""), []string{`REGISTRY_STORAGE_MAINTENANCE_READONLY={"enabled": "true"}`}, false, "not a boolean"},
		// distribution cannot enter the file's readonly mapping from the
		// environment: _ENABLED is ignored ...
		{"env _ENABLED ignored (on)", file("    readonly:\n      enabled: false\n"),
			[]string{"REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED=true"}, false, "is false"},
		{"env _ENABLED ignored (off)", file("    readonly:\n      enabled: true\n"),
			[]string{"REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED=false"}, true, ""},
		// ... and alone it makes a mapping the registry refuses to start with.
		{"env _ENABLED alone", file(""), []string{"REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED=true"}, false, "not a YAML mapping"},
		{"env whole maintenance", file("    readonly:\n      enabled: false\n"),
			[]string{`REGISTRY_STORAGE_MAINTENANCE={"readonly": {"enabled": true}}`}, true, ""},
		{"env whole storage", file(""),
			[]string{`REGISTRY_STORAGE={"filesystem": {}, "maintenance": {"readonly": {"enabled": true}}}`}, true, ""},
		// Applied in name order: the section first, then the key inside it.
		{"env order", file(""), []string{`REGISTRY_STORAGE_MAINTENANCE_READONLY={"enabled": false}`,
			`REGISTRY_STORAGE_MAINTENANCE={"readonly": {"enabled": true}}`}, false, "is false"},
		{"env lower-case element replaces the key", file("    readonly:\n      enabled: false\n"),
			[]string{`REGISTRY_STORAGE_MAINTENANCE_readonly={"enabled": true}`}, true, ""},
		{"env other driver keys do not matter", file("    readonly:\n      enabled: true\n"),
			[]string{"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=/x", "REGISTRY_HTTP_ADDR=:1"}, true, ""},
		{"env not YAML", file("    readonly:\n      enabled: true\n"), []string{`REGISTRY_STORAGE_MAINTENANCE_READONLY={`}, false, "would not start"},
		{"storage names a driver only, env adds readonly", "storage: inmemory\n",
			[]string{`REGISTRY_STORAGE_MAINTENANCE_READONLY={"enabled": true}`}, true, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, reason := RegistryReadOnly([]byte(c.config), c.env)
			if got != c.want {
				t.Fatalf("read-only %v (%s), want %v", got, reason, c.want)
			}
			if !c.want && !strings.Contains(reason, c.reason) {
				t.Errorf("reason %q, want it to say %q", reason, c.reason)
			}
			if c.want && reason != "" {
				t.Errorf("read-only with a reason %q", reason)
			}
		})
	}
}
