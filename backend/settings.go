package backend

import (
	"strconv"

	"github.com/spf13/pflag"
)

// A Setting is one storage setting under every name it goes by: its flag
// (which also names its REGSWEEP_* variable and its regsweep.yaml key),
// distribution's config.yml parameter, and the Config field it sets. The
// flags, --registry-config's reader, Redacted and Secrets all read
// Settings, so a setting cannot be added in one of them and forgotten in
// another.
type Setting struct {
	Driver string // filesystem, s3 or swift
	// Flag is "" for a parameter only the registry's config.yml sets.
	Flag string
	// Key is distribution's parameter for the setting, and its name in
	// Redacted (config check's storage).
	Key string
	// OwnKey marks a setting of regsweep's own: distribution has no such
	// parameter, so --registry-config does not read Key.
	OwnKey bool
	// Secret values are never shown, and are scrubbed from output.
	Secret bool
	// KeepOnEmpty: an empty value (a template's "" or an empty variable)
	// leaves the setting at its default, as the help promises.
	KeepOnEmpty bool
	Help        string
	// field is the Config field and its kind.
	field field
}

// Settings are the storage settings (read-only), each driver's in the
// order the registry's config.yml is read (the first bad key is the one
// reported).
var Settings = []Setting{
	{Driver: "filesystem", Flag: "fs-root", Key: "rootdirectory", KeepOnEmpty: true,
		Help: "filesystem root directory (default /var/lib/registry)", field: stringField(func(c *Config) *string { return &c.Filesystem.RootDirectory })},

	{Driver: "s3", Flag: "s3-region", Key: "region",
		Help: "S3 region", field: stringField(func(c *Config) *string { return &c.S3.Region })},
	{Driver: "s3", Flag: "s3-endpoint", Key: "regionendpoint",
		Help: "S3 endpoint URL, e.g. http://127.0.0.1:9000 (default AWS)", field: stringField(func(c *Config) *string { return &c.S3.RegionEndpoint })},
	{Driver: "s3", Flag: "s3-bucket", Key: "bucket",
		Help: "S3 bucket", field: stringField(func(c *Config) *string { return &c.S3.Bucket })},
	{Driver: "s3", Flag: "s3-access-key", Key: "accesskey", Secret: true,
		Help: "S3 access key (prefer REGSWEEP_S3_ACCESS_KEY)", field: stringField(func(c *Config) *string { return &c.S3.AccessKey })},
	{Driver: "s3", Flag: "s3-secret-key", Key: "secretkey", Secret: true,
		Help: "S3 secret key (prefer REGSWEEP_S3_SECRET_KEY)", field: stringField(func(c *Config) *string { return &c.S3.SecretKey })},
	{Driver: "s3", Flag: "s3-root", Key: "rootdirectory",
		Help: "S3 rootdirectory of the registry", field: stringField(func(c *Config) *string { return &c.S3.RootDirectory })},
	{Driver: "s3", Flag: "s3-http", Key: "secure",
		Help: "use plain HTTP to the S3 endpoint", field: negatedField(func(c *Config) *bool { return &c.S3.Secure })},
	{Driver: "s3", Flag: "s3-insecure", Key: "skipverify",
		Help: "do not verify the S3 endpoint's TLS certificate", field: boolField(func(c *Config) *bool { return &c.S3.SkipVerify })},
	{Driver: "s3", Flag: "s3-path-style", Key: "forcepathstyle",
		Help: "use path-style S3 URLs (MinIO, Ceph RGW)", field: boolField(func(c *Config) *bool { return &c.S3.ForcePathStyle })},
	{Driver: "s3", Key: "v4auth", field: boolField(func(c *Config) *bool { return &c.S3.V4Auth })},
	{Driver: "s3", Flag: "s3-list-v1", Key: "listv1", OwnKey: true,
		Help: "list with ListObjects V1 (for stores that mishandle V2)", field: boolField(func(c *Config) *bool { return &c.S3.ListV1 })},
	{Driver: "s3", Flag: "s3-ca-file", Key: "cafile", OwnKey: true,
		Help: "PEM file of CA certificates for the S3 endpoint", field: stringField(func(c *Config) *string { return &c.S3.CAFile })},

	{Driver: "swift", Flag: "swift-auth-url", Key: "authurl",
		Help: "Swift auth URL", field: stringField(func(c *Config) *string { return &c.Swift.AuthURL })},
	{Driver: "swift", Flag: "swift-username", Key: "username",
		Help: "Swift user name", field: stringField(func(c *Config) *string { return &c.Swift.Username })},
	{Driver: "swift", Flag: "swift-password", Key: "password", Secret: true,
		Help: "Swift password or key (prefer REGSWEEP_SWIFT_PASSWORD)", field: stringField(func(c *Config) *string { return &c.Swift.Password })},
	{Driver: "swift", Flag: "swift-container", Key: "container",
		Help: "Swift container", field: stringField(func(c *Config) *string { return &c.Swift.Container })},
	{Driver: "swift", Flag: "swift-region", Key: "region",
		Help: "Swift region", field: stringField(func(c *Config) *string { return &c.Swift.Region })},
	{Driver: "swift", Flag: "swift-tenant", Key: "tenant",
		Help: "Swift tenant (project) name", field: stringField(func(c *Config) *string { return &c.Swift.Tenant })},
	{Driver: "swift", Flag: "swift-tenant-id", Key: "tenantid",
		Help: "Swift tenant (project) ID", field: stringField(func(c *Config) *string { return &c.Swift.TenantID })},
	{Driver: "swift", Flag: "swift-domain", Key: "domain",
		Help: "Swift (Keystone v3) domain name", field: stringField(func(c *Config) *string { return &c.Swift.Domain })},
	{Driver: "swift", Flag: "swift-domain-id", Key: "domainid",
		Help: "Swift (Keystone v3) domain ID", field: stringField(func(c *Config) *string { return &c.Swift.DomainID })},
	{Driver: "swift", Flag: "swift-prefix", Key: "prefix",
		Help: "Swift prefix of the registry", field: stringField(func(c *Config) *string { return &c.Swift.Prefix })},
	{Driver: "swift", Flag: "swift-insecure", Key: "insecureskipverify",
		Help: "do not verify the Swift endpoint's TLS certificate", field: boolField(func(c *Config) *bool { return &c.Swift.InsecureSkipVerify })},
	{Driver: "swift", Flag: "swift-auth-version", Key: "authversion",
		Help: "Swift auth version 1, 2 or 3 (default: from the URL)", field: intField(func(c *Config) *int { return &c.Swift.AuthVersion })},
	{Driver: "swift", Flag: "swift-storage-url", Key: "storageurl", OwnKey: true,
		Help: "override the storage URL the auth server returns", field: stringField(func(c *Config) *string { return &c.Swift.StorageURL })},
	{Driver: "swift", Flag: "swift-ca-file", Key: "cafile", OwnKey: true,
		Help: "PEM file of CA certificates for the Swift endpoint", field: stringField(func(c *Config) *string { return &c.Swift.CAFile })},
}

// field is a Config field of one kind: a string, a switch, a negated
// switch or an integer.
type field interface {
	// addFlag binds a flag to the field in c, with the zero value as its
	// default: the setting's default is DefaultConfig's, or the registry's.
	addFlag(f *pflag.FlagSet, c *Config, name, help string)
	read(p *paramReader, c *Config, key string)
	copy(dst, src *Config)
	format(c *Config) string
}

type (
	stringField func(*Config) *string
	boolField   func(*Config) *bool
	intField    func(*Config) *int
	// negatedField is a switch whose flag says the opposite of the field:
	// --s3-http is secure: false.
	negatedField func(*Config) *bool
)

func (f stringField) addFlag(fs *pflag.FlagSet, c *Config, name, help string) {
	fs.StringVar(f(c), name, "", help)
}
func (f stringField) read(p *paramReader, c *Config, key string) { *f(c) = p.str(key, *f(c)) }
func (f stringField) copy(dst, src *Config)                      { *f(dst) = *f(src) }
func (f stringField) format(c *Config) string                    { return *f(c) }

func (f boolField) addFlag(fs *pflag.FlagSet, c *Config, name, help string) {
	fs.BoolVar(f(c), name, false, help)
}
func (f boolField) read(p *paramReader, c *Config, key string) { *f(c) = p.boolean(key, *f(c)) }
func (f boolField) copy(dst, src *Config)                      { *f(dst) = *f(src) }
func (f boolField) format(c *Config) string                    { return strconv.FormatBool(*f(c)) }

func (f intField) addFlag(fs *pflag.FlagSet, c *Config, name, help string) {
	fs.IntVar(f(c), name, 0, help)
}
func (f intField) read(p *paramReader, c *Config, key string) { *f(c) = p.integer(key, *f(c)) }
func (f intField) copy(dst, src *Config)                      { *f(dst) = *f(src) }
func (f intField) format(c *Config) string                    { return strconv.Itoa(*f(c)) }

func (f negatedField) addFlag(fs *pflag.FlagSet, c *Config, name, help string) {
	*f(c) = true // the flag is off
	fl := fs.VarPF(negatedValue{f(c)}, name, "", help)
	fl.NoOptDefVal = "true" // a bare --s3-http, as for any switch
}
func (f negatedField) read(p *paramReader, c *Config, key string) { boolField(f).read(p, c, key) }
func (f negatedField) copy(dst, src *Config)                      { *f(dst) = *f(src) }
func (f negatedField) format(c *Config) string                    { return boolField(f).format(c) }

// negatedValue is a switch flag setting the negation of a bool. It reads,
// prints and is documented exactly like pflag's own switches.
type negatedValue struct{ p *bool }

func (v negatedValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err == nil {
		*v.p = !b
	}
	return err
}
func (v negatedValue) String() string   { return strconv.FormatBool(!*v.p) }
func (v negatedValue) Type() string     { return "bool" }
func (v negatedValue) IsBoolFlag() bool { return true }

// settingsDriver is the driver whose Settings apply to a Config's driver
// (s3-aws is regsweep's own older spelling of s3).
func settingsDriver(driver string) string {
	if driver == "s3-aws" {
		return "s3"
	}
	return driver
}
