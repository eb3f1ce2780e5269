package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/regsweep/regsweep/backend"
	"github.com/regsweep/regsweep/config"
	"github.com/regsweep/regsweep/storage"
)

// globalOptions are the flags every command shares.
type globalOptions struct {
	stdout, stderr io.Writer

	// layers is what PersistentPreRunE resolved: the file and where each
	// flag's value came from (config check prints it).
	layers *config.Layers

	registryConfig string
	storage        backend.Flags

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
	g := &globalOptions{stdout: stdout, stderr: stderr}
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
		newConfigCommand(g), newGenManCommand(g), newPolicyCommand(g))
	return root
}

func (g *globalOptions) addFlags(f *pflag.FlagSet) {
	f.String(config.FileFlag, "", "read flag values from this YAML file (default: the first of ./regsweep.yaml, $XDG_CONFIG_HOME/regsweep/regsweep.yaml, /etc/regsweep/regsweep.yaml that exists; empty: no file)")
	f.StringVar(&g.registryConfig, "registry-config", "", "read the storage from the registry's own config.yml (distribution's REGISTRY_STORAGE env overrides apply)")
	g.storage.AddFlags(f)

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
// then flags, REGSWEEP_* env and regsweep.yaml on top.
func (g *globalOptions) storageConfig() (backend.Config, error) {
	cfg, err := g.storage.Config(g.registryConfig, os.Environ())
	var unsupported *backend.UnsupportedDriverError
	if err != nil && !errors.As(err, &unsupported) {
		err = usageError{err}
	}
	return cfg, err
}

// openStorage opens the configured storage with the standard wrappers. The
// storage flags are global: the command's flag set is not needed.
func (g *globalOptions) openStorage(ctx context.Context, _ *pflag.FlagSet, readOnly bool, reqs *storage.Requests) (storage.Driver, backend.Config, error) {
	cfg, err := g.storageConfig()
	if err != nil {
		return nil, cfg, err
	}
	d, err := backend.Open(ctx, cfg, backend.OpenOptions{Concurrency: g.concurrency, ReadOnly: readOnly, Retry: storage.DefaultRetry(), Requests: reqs, RateLimit: g.rateLimit})
	if err != nil {
		return nil, cfg, storageOpenError{err}
	}
	return d, cfg, nil
}
