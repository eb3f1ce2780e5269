package backend

import "github.com/spf13/pflag"

// Flags are the storage's command-line flags: --storage-driver and one per
// Setting that has a flag.
type Flags struct {
	driver     string
	values     Config        // each flag's value, in its setting's field
	given      []*pflag.Flag // by Settings index; nil for a setting with no flag
	driverFlag *pflag.Flag
}

// AddFlags defines the flags on f.
func (o *Flags) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.driver, "storage-driver", "", "storage driver: filesystem, s3 or swift (default filesystem)")
	o.driverFlag = f.Lookup("storage-driver")
	o.given = make([]*pflag.Flag, len(Settings))
	for i, s := range Settings {
		if s.Flag != "" {
			s.field.addFlag(f, &o.values, s.Flag, s.Help)
			o.given[i] = f.Lookup(s.Flag)
		}
	}
}

// Config resolves the storage: regsweep's defaults, then the registry's
// config.yml with env's REGISTRY_STORAGE* overrides (when registryConfig
// names one), then every flag that was given. A flag's REGSWEEP_* variable
// or regsweep.yaml key counts as given: the caller sets flags from them
// before.
func (o *Flags) Config(registryConfig string, env []string) (Config, error) {
	cfg := DefaultConfig()
	if registryConfig != "" {
		var err error
		if cfg, err = FromRegistryConfig(registryConfig, env); err != nil {
			return cfg, err
		}
	}
	o.apply(&cfg, registryConfig != "")
	return cfg, cfg.Validate()
}

// apply sets cfg's fields from the flags given.
func (o *Flags) apply(cfg *Config, fromRegistry bool) {
	// An empty --storage-driver (a template's "" or an empty variable)
	// means the default, as its help says.
	if o.driverFlag.Changed && o.driver != "" {
		cfg.Driver = o.driver
	} else if !fromRegistry {
		switch {
		case o.values.S3.Bucket != "":
			cfg.Driver = "s3"
		case o.values.Swift.AuthURL != "":
			cfg.Driver = "swift"
		}
	}
	for i, s := range Settings {
		if fl := o.given[i]; fl != nil && fl.Changed && !(s.KeepOnEmpty && s.field.format(&o.values) == "") {
			s.field.copy(cfg, &o.values)
		}
	}
	if cfg.S3.Region == "" && cfg.S3.RegionEndpoint != "" {
		cfg.S3.Region = "us-east-1"
	}
}
