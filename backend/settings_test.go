package backend

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// fieldPtr is the address of the setting's field in c.
func fieldPtr(s Setting, c *Config) any {
	switch f := s.field.(type) {
	case stringField:
		return f(c)
	case boolField:
		return f(c)
	case negatedField:
		return f(c)
	case intField:
		return f(c)
	}
	panic(fmt.Sprintf("setting %s.%s: field of kind %T", s.Driver, s.Key, s.field))
}

// configFields names every field of a driver's part of Config by its
// address in c: "S3.Bucket".
func configFields(c *Config) map[uintptr]string {
	out := map[uintptr]string{}
	v := reflect.ValueOf(c).Elem()
	for i := 0; i < v.NumField(); i++ {
		part := v.Field(i)
		if part.Kind() != reflect.Struct {
			continue // Driver
		}
		for j := 0; j < part.NumField(); j++ {
			out[part.Field(j).Addr().Pointer()] = v.Type().Field(i).Name + "." + part.Type().Field(j).Name
		}
	}
	return out
}

// fieldName is the name of the setting's field: "S3.Bucket".
func fieldName(t *testing.T, s Setting) string {
	var c Config
	name, ok := configFields(&c)[reflect.ValueOf(fieldPtr(s, &c)).Pointer()]
	if !ok {
		t.Fatalf("setting %s.%s points outside the drivers' parts of Config", s.Driver, s.Key)
	}
	return name
}

// A field added to FilesystemConfig, S3Config or SwiftConfig without a
// setting would be neither a flag nor read from the registry's config.yml
// nor shown by config check.
func TestEveryConfigFieldHasExactlyOneSetting(t *testing.T) {
	var c Config
	settingsOf := map[string][]string{}
	for _, name := range configFields(&c) {
		settingsOf[name] = nil
	}
	flags, keys := map[string]bool{}, map[string]bool{}
	for _, s := range Settings {
		name := fieldName(t, s)
		settingsOf[name] = append(settingsOf[name], s.Driver+"."+s.Key)
		part := map[string]string{"Filesystem": "filesystem", "S3": "s3", "Swift": "swift"}[strings.Split(name, ".")[0]]
		if part != s.Driver {
			t.Errorf("setting %s.%s sets %s, a field of another driver", s.Driver, s.Key, name)
		}
		if s.Key == "" || keys[s.Driver+"."+s.Key] {
			t.Errorf("setting %s.%s: its key is empty or not unique in its driver", s.Driver, s.Key)
		}
		keys[s.Driver+"."+s.Key] = true
		if s.Flag != "" && (flags[s.Flag] || s.Help == "") {
			t.Errorf("flag --%s: given twice or without help", s.Flag)
		}
		flags[s.Flag] = true
		if s.Flag == "" && s.OwnKey {
			t.Errorf("setting %s.%s can be set neither by a flag nor by the registry's config.yml", s.Driver, s.Key)
		}
	}
	for name, settings := range settingsOf {
		if len(settings) != 1 {
			t.Errorf("Config field %s is set by %d settings %v, want exactly 1", name, len(settings), settings)
		}
	}
}

// The names are a contract: operators' scripts, charts and config.yml
// files use them. A change here must be deliberate.
func TestSettingNamesAreTheContract(t *testing.T) {
	const want = `
filesystem  fs-root             rootdirectory       Filesystem.RootDirectory  string
s3          s3-region           region              S3.Region                 string
s3          s3-endpoint         regionendpoint      S3.RegionEndpoint         string
s3          s3-bucket           bucket              S3.Bucket                 string
s3          s3-access-key       accesskey           S3.AccessKey              string secret
s3          s3-secret-key       secretkey           S3.SecretKey              string secret
s3          s3-root             rootdirectory       S3.RootDirectory          string
s3          s3-http             secure              S3.Secure                 negated
s3          s3-insecure         skipverify          S3.SkipVerify             bool
s3          s3-path-style       forcepathstyle      S3.ForcePathStyle         bool
s3          -                   v4auth              S3.V4Auth                 bool
s3          s3-list-v1          (listv1)            S3.ListV1                 bool
s3          s3-ca-file          (cafile)            S3.CAFile                 string
swift       swift-auth-url      authurl             Swift.AuthURL             string
swift       swift-username      username            Swift.Username            string
swift       swift-password      password            Swift.Password            string secret
swift       swift-container     container           Swift.Container           string
swift       swift-region        region              Swift.Region              string
swift       swift-tenant        tenant              Swift.Tenant              string
swift       swift-tenant-id     tenantid            Swift.TenantID            string
swift       swift-domain        domain              Swift.Domain              string
swift       swift-domain-id     domainid            Swift.DomainID            string
swift       swift-prefix        prefix              Swift.Prefix              string
swift       swift-insecure      insecureskipverify  Swift.InsecureSkipVerify  bool
swift       swift-auth-version  authversion         Swift.AuthVersion         int
swift       swift-storage-url   (storageurl)        Swift.StorageURL          string
swift       swift-ca-file       (cafile)            Swift.CAFile              string
`
	var b strings.Builder
	b.WriteString("\n")
	for _, s := range Settings {
		flag, key := s.Flag, s.Key
		if flag == "" {
			flag = "-"
		}
		if s.OwnKey {
			key = "(" + key + ")"
		}
		kind := strings.TrimSuffix(reflect.TypeOf(s.field).Name(), "Field")
		if s.Secret {
			kind += " secret"
		}
		fmt.Fprintf(&b, "%-10s  %-18s  %-18s  %-24s  %s\n", s.Driver, flag, key, fieldName(t, s), kind)
	}
	if b.String() != want {
		t.Errorf("the settings changed; got:%s", b.String())
	}
}

// parsedFlags are the storage flags after parsing args.
func parsedFlags(t *testing.T, args ...string) *Flags {
	t.Helper()
	var o Flags
	f := pflag.NewFlagSet("test", pflag.ContinueOnError)
	o.AddFlags(f)
	if err := f.Parse(args); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return &o
}

// Each flag sets its setting's field and nothing else; not given, it
// leaves the field alone.
func TestEverySettingRoundTripsFromItsFlag(t *testing.T) {
	base := DefaultConfig()
	parsedFlags(t).apply(&base, false)
	if !reflect.DeepEqual(base, DefaultConfig()) {
		t.Fatalf("no flag given changed the defaults: %+v", base)
	}
	for _, s := range Settings {
		if s.Flag == "" {
			continue
		}
		value, want := "value-of-"+s.Flag, "value-of-"+s.Flag
		switch s.field.(type) {
		case boolField:
			value, want = "true", "true"
		case negatedField:
			value, want = "true", "false"
		case intField:
			value, want = "3", "3"
		}
		o := parsedFlags(t, "--"+s.Flag+"="+value)
		got := DefaultConfig()
		o.apply(&got, true)
		if v := s.field.format(&got); v != want {
			t.Errorf("--%s=%s: %s is %q, want %q", s.Flag, value, fieldName(t, s), v, want)
		}
		// Nothing else changed.
		expect := DefaultConfig()
		s.field.copy(&expect, &got)
		if s.Flag == "s3-endpoint" {
			expect.S3.Region = "us-east-1" // an endpoint with no region
		}
		if !reflect.DeepEqual(got, expect) {
			t.Errorf("--%s=%s changed more than %s:\n got %+v\nwant %+v", s.Flag, value, fieldName(t, s), got, expect)
		}
	}
}

// An empty value (a template's "" or an empty variable) replaces the
// registry's, except where the help promises a default.
func TestAnEmptyFlagReplacesTheRegistrysValueOrKeepsIt(t *testing.T) {
	for _, s := range Settings {
		if _, ok := s.field.(stringField); !ok || s.Flag == "" {
			continue
		}
		o := parsedFlags(t, "--"+s.Flag+"=")
		got := DefaultConfig()
		*fieldPtr(s, &got).(*string) = "from-the-registry"
		o.apply(&got, true)
		want := ""
		if s.KeepOnEmpty {
			want = "from-the-registry"
		}
		if v := s.field.format(&got); v != want {
			t.Errorf("--%s= over the registry's value: %q, want %q", s.Flag, v, want)
		}
	}
}

// Each of distribution's keys sets its setting's field and nothing else;
// a key of regsweep's own is not read from the registry's config.yml.
func TestEverySettingRoundTripsFromTheRegistryConfig(t *testing.T) {
	for _, s := range Settings {
		base, err := ParseRegistryConfig([]byte("storage:\n  "+s.Driver+": {}\n"), nil)
		if err != nil {
			t.Fatal(err)
		}
		value := "value-of-" + s.Key
		switch s.field.(type) {
		case boolField, negatedField:
			value = fmt.Sprint(s.field.format(&base) != "true") // not the default
		case intField:
			value = "3"
		}
		got, err := ParseRegistryConfig([]byte("storage:\n  "+s.Driver+":\n    "+s.Key+": "+value+"\n"), nil)
		if err != nil {
			t.Fatalf("%s: %s: %v", s.Driver, s.Key, err)
		}
		expect := base
		if !s.OwnKey {
			s.field.copy(&expect, &got)
			if v := s.field.format(&got); v != value {
				t.Errorf("%s: %s: %s is %q, want %q", s.Driver, s.Key, fieldName(t, s), v, value)
			}
		}
		if s.Key == "regionendpoint" {
			expect.S3.ForcePathStyle = true // distribution 2.8's path style with an endpoint
		}
		if !reflect.DeepEqual(got, expect) {
			t.Errorf("%s: %s: %s changed the wrong fields:\n got %+v\nwant %+v", s.Driver, s.Key, value, got, expect)
		}
	}
}

// config check shows every setting of the driver; secrets only redacted.
func TestRedactedShowsEverySettingAndNoSecret(t *testing.T) {
	for _, driver := range supportedDrivers {
		c := DefaultConfig()
		c.Driver = driver
		for _, s := range Settings {
			if p, ok := fieldPtr(s, &c).(*string); ok {
				*p = "value-of-" + s.Driver + "-" + s.Key
			}
		}
		red := c.Redacted()
		n := 0
		for _, s := range Settings {
			if s.Driver == driver {
				n++
			}
			v, shown := red[s.Key]
			switch {
			case s.Driver != driver:
			case !shown:
				t.Errorf("%s: Redacted lacks %s", driver, s.Key)
			case s.Secret && v != "<redacted>":
				t.Errorf("%s: Redacted shows the secret %s", driver, s.Key)
			case !s.Secret && v != s.field.format(&c):
				t.Errorf("%s: Redacted shows %s as %q, want %q", driver, s.Key, v, s.field.format(&c))
			}
		}
		if len(red) != n+1 {
			t.Errorf("%s: Redacted has %d entries, want the driver and %d settings: %v", driver, len(red), n, red)
		}
	}
	c := DefaultConfig()
	var want []string
	for _, s := range Settings {
		if p, ok := fieldPtr(s, &c).(*string); ok && s.Secret {
			*p = "secret-" + s.Flag
			want = append(want, *p)
		}
	}
	if got := c.Secrets(); !reflect.DeepEqual(got, want) {
		t.Errorf("Secrets() = %v, want %v", got, want)
	}
}

// docs/configuration.md names every flag and every key read from the
// registry's config.yml.
func TestConfigurationDocsNameEverySetting(t *testing.T) {
	raw, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	for _, s := range Settings {
		if s.Flag != "" && !strings.Contains(doc, "`--"+s.Flag+"`") {
			t.Errorf("docs/configuration.md does not document --%s", s.Flag)
		}
		if s.OwnKey {
			continue
		}
		row := regexp.MustCompile("(?m)^\\| `" + s.Driver + "`.*\\|(.*)\\|$").FindStringSubmatch(doc)
		if row == nil || !regexp.MustCompile(`\b`+s.Key+`\b`).MatchString(row[1]) {
			t.Errorf("docs/configuration.md's table of registry keys lacks %s for %s", s.Key, s.Driver)
		}
	}
}

// Without --storage-driver or the registry's config.yml, the driver is the
// one whose bucket or auth URL is given.
func TestFlagsInferTheDriver(t *testing.T) {
	for _, c := range []struct {
		args         []string
		fromRegistry bool
		want         string
	}{
		{nil, false, "filesystem"},
		{[]string{"--s3-bucket=b"}, false, "s3"},
		{[]string{"--swift-auth-url=u"}, false, "swift"},
		{[]string{"--s3-bucket=b", "--swift-auth-url=u"}, false, "s3"},
		{[]string{"--s3-bucket=b", "--storage-driver="}, false, "s3"},
		{[]string{"--s3-bucket=b", "--storage-driver=swift"}, false, "swift"},
		{[]string{"--s3-bucket=b"}, true, "filesystem"}, // the registry's driver stays
		{[]string{"--storage-driver=s3"}, true, "s3"},
	} {
		o := parsedFlags(t, c.args...)
		got := DefaultConfig()
		o.apply(&got, c.fromRegistry)
		if got.Driver != c.want {
			t.Errorf("%v (registry config: %v): driver %s, want %s", c.args, c.fromRegistry, got.Driver, c.want)
		}
	}
}
