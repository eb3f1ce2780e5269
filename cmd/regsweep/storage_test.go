package main

import (
	"bytes"
	"os"
	"testing"

	"github.com/regsweep/regsweep/backend"
	"github.com/regsweep/regsweep/config"
)

// Every storage setting with a flag can also be given as its REGSWEEP_*
// variable and as its regsweep.yaml key, and either overrides the
// registry's config.yml, as docs/configuration.md says; config check shows
// it under the setting's key, redacted when secret.
func TestEveryStorageSettingFromEnvAndFile(t *testing.T) {
	dir := isolate(t)
	registry := map[string]string{
		"filesystem": writeFile(t, dir, "fs.yml", "storage:\n  filesystem:\n    rootdirectory: /base\n"),
		"s3":         writeFile(t, dir, "s3.yml", "storage:\n  s3:\n    bucket: base\n    region: base\n"),
		"swift":      writeFile(t, dir, "swift.yml", "storage:\n  swift:\n    authurl: http://base\n    container: base\n"),
	}
	flags := newRootCommand(&bytes.Buffer{}, &bytes.Buffer{}).PersistentFlags()
	for _, s := range backend.Settings {
		if s.Flag == "" {
			continue
		}
		fl := flags.Lookup(s.Flag)
		if fl == nil {
			t.Errorf("--%s is not a global flag", s.Flag)
			continue
		}
		if config.IsSecretName(s.Flag) != s.Secret {
			t.Errorf("--%s: secret %v in backend.Settings, %v by its name: config check would show one of them", s.Flag, s.Secret, !s.Secret)
		}
		value := map[string]string{"bool": "true", "int": "3", "string": "value-of-" + s.Flag}[fl.Value.Type()]
		base := checkReport(t, "--config", "", "--registry-config", registry[s.Driver]).Storage[s.Key]

		for _, from := range []string{config.FromEnv, config.FromFile} {
			args := []string{"--registry-config", registry[s.Driver]}
			if from == config.FromEnv {
				t.Setenv(config.EnvName(s.Flag), value)
				args = append(args, "--config", "")
			} else {
				args = append(args, "--config", writeFile(t, dir, "regsweep.yaml", s.Flag+": "+value+"\n"))
			}
			rep := checkReport(t, args...)
			got, shown := rep.flag(t, s.Flag), rep.Storage[s.Key]
			if got.Source != from || (from == config.FromEnv && got.Env != config.EnvName(s.Flag)) {
				t.Errorf("--%s from %s: source %s %s", s.Flag, from, got.Source, got.Env)
			}
			switch {
			case s.Secret:
				if got.Value != config.Redacted || shown != config.Redacted {
					t.Errorf("--%s from %s: a secret shown as %q, %s as %q", s.Flag, from, got.Value, s.Key, shown)
				}
			case got.Value != value:
				t.Errorf("--%s from %s: flag value %q, want %q", s.Flag, from, got.Value, value)
			case shown == base || fl.Value.Type() != "bool" && shown != value:
				t.Errorf("--%s=%s from %s over the registry's %s %q: storage shows %q", s.Flag, value, from, s.Key, base, shown)
			}
			if from == config.FromEnv {
				os.Unsetenv(config.EnvName(s.Flag)) // t.Setenv restores it after the test
			}
		}
	}
}
