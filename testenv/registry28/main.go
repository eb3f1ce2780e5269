// Command registry28 is a minimal build of the Docker Distribution v2.8.3
// registry (the line Harbor ships, and the only one with the swift storage
// driver) for regsweep's test environment.
//
// The upstream command package (github.com/docker/distribution/registry) no
// longer builds against the current module graph, so this wrapper parses the
// configuration and serves handlers.NewApp itself. It supports the two
// subcommands the tests need:
//
//	registry28 serve CONFIG
//	registry28 garbage-collect [--dry-run] [--delete-untagged] CONFIG
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/docker/distribution/configuration"
	dcontext "github.com/docker/distribution/context"
	"github.com/docker/distribution/registry/handlers"
	"github.com/docker/distribution/registry/storage"
	"github.com/docker/distribution/registry/storage/driver/factory"
	_ "github.com/docker/distribution/registry/storage/driver/filesystem"
	_ "github.com/docker/distribution/registry/storage/driver/inmemory"
	_ "github.com/docker/distribution/registry/storage/driver/s3-aws"
	_ "github.com/docker/distribution/registry/storage/driver/swift"
	"github.com/docker/libtrust"
	"github.com/sirupsen/logrus"
)

func usage() {
	fmt.Fprintf(os.Stderr, "usage:\n  %[1]s serve CONFIG\n  %[1]s garbage-collect [--dry-run] [--delete-untagged] CONFIG\n", os.Args[0])
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "garbage-collect":
		err = garbageCollect(os.Args[2:])
	case "--version", "-v", "version":
		fmt.Println("registry28 github.com/docker/distribution v2.8.3")
		return
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "registry28: %v\n", err)
		os.Exit(1)
	}
}

func loadConfig(path string) (*configuration.Configuration, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cfg, err := configuration.Parse(f)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", path, err)
	}
	return cfg, nil
}

func configureLogging(ctx context.Context, cfg *configuration.Configuration) context.Context {
	level, err := logrus.ParseLevel(string(cfg.Log.Level))
	if err != nil {
		level = logrus.InfoLevel
	}
	logrus.SetLevel(level)
	switch cfg.Log.Formatter {
	case "json":
		logrus.SetFormatter(&logrus.JSONFormatter{TimestampFormat: time.RFC3339Nano})
	default:
		logrus.SetFormatter(&logrus.TextFormatter{TimestampFormat: time.RFC3339Nano})
	}
	if len(cfg.Log.Fields) > 0 {
		var fields []interface{}
		for k := range cfg.Log.Fields {
			fields = append(fields, k)
		}
		ctx = dcontext.WithValues(ctx, cfg.Log.Fields)
		ctx = dcontext.WithLogger(ctx, dcontext.GetLogger(ctx, fields...))
	}
	return ctx
}

func serve(args []string) error {
	if len(args) != 1 {
		usage()
	}
	cfg, err := loadConfig(args[0])
	if err != nil {
		return err
	}
	ctx := configureLogging(dcontext.Background(), cfg)

	app := handlers.NewApp(ctx, cfg)
	var handler http.Handler = app
	if !cfg.Log.AccessLog.Disabled {
		handler = accessLog(handler)
	}
	addr := cfg.HTTP.Addr
	if addr == "" {
		addr = "127.0.0.1:5000"
	}
	srv := &http.Server{Addr: addr, Handler: handler, ReadHeaderTimeout: 30 * time.Second}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-stop:
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}

func accessLog(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		h.ServeHTTP(w, r)
		logrus.Infof("%s %s %s (%s)", r.RemoteAddr, r.Method, r.URL.RequestURI(), time.Since(start))
	})
}

func garbageCollect(args []string) error {
	fs := flag.NewFlagSet("garbage-collect", flag.ExitOnError)
	dryRun := fs.Bool("dry-run", false, "do everything except remove the blobs")
	fs.BoolVar(dryRun, "d", false, "shorthand for --dry-run")
	removeUntagged := fs.Bool("delete-untagged", false, "delete manifests that are not currently referenced via tag")
	fs.BoolVar(removeUntagged, "m", false, "shorthand for --delete-untagged")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		usage()
	}
	cfg, err := loadConfig(fs.Arg(0))
	if err != nil {
		return err
	}
	driver, err := factory.Create(cfg.Storage.Type(), cfg.Storage.Parameters())
	if err != nil {
		return fmt.Errorf("constructing %s driver: %w", cfg.Storage.Type(), err)
	}
	ctx := configureLogging(dcontext.Background(), cfg)
	k, err := libtrust.GenerateECP256PrivateKey()
	if err != nil {
		return err
	}
	reg, err := storage.NewRegistry(ctx, driver, storage.Schema1SigningKey(k))
	if err != nil {
		return fmt.Errorf("constructing registry: %w", err)
	}
	return storage.MarkAndSweep(ctx, driver, reg, storage.GCOpts{DryRun: *dryRun, RemoveUntagged: *removeUntagged})
}
