package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Registry versions accepted by RegistryOptions.Version.
const (
	RegistryV3  = "v3"   // github.com/distribution/distribution/v3 v3.1.2
	RegistryV28 = "v2.8" // github.com/docker/distribution v2.8.3 (has the swift driver)
)

// RegistryOptions configures StartRegistry.
type RegistryOptions struct {
	// Version is RegistryV3 ("v3", the default) or RegistryV28 ("v2.8").
	Version string
	// Storage is the body of the configuration's storage: section, without
	// indentation, naming the driver and its parameters, e.g.
	//
	//	"filesystem:\n  rootdirectory: /x\n"
	//
	// StartRegistry adds delete (enabled), redirect (disabled) and maintenance
	// (upload purging disabled, readonly per ReadOnly); do not set those.
	Storage string
	// ReadOnly sets storage.maintenance.readonly.enabled.
	ReadOnly bool
	// Extra is appended to the configuration at the top level, e.g. a
	// redis: section for storage.cache.blobdescriptor: redis.
	Extra string
}

// Registry is a running Docker Distribution registry on 127.0.0.1.
type Registry struct {
	Addr       string // host:port
	Version    string // RegistryV3 or RegistryV28
	Binary     string // the registry executable
	ConfigPath string // its config.yml
	LogPath    string // its stdout and stderr

	tb       testing.TB
	logShown bool // the log's tail was already part of a failure message
	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{}
}

// registryEnv is the environment for registry processes: the machine's
// AWS_CA_BUNDLE makes the v2.8 s3-aws driver fail to start.
func registryEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "AWS_CA_BUNDLE=") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// StartRegistry writes a registry configuration for opts, starts the registry
// on a free loopback port, waits until GET /v2/ answers, and stops it when the
// test ends (logging the tail of its log if the test failed).
func StartRegistry(tb testing.TB, opts RegistryOptions) *Registry {
	tb.Helper()
	if opts.Version == "" {
		opts.Version = RegistryV3
	}
	var bin string
	switch opts.Version {
	case RegistryV3:
		bin = binary(tb, "registry v3", EnvRegistryV3)
	case RegistryV28:
		bin = binary(tb, "registry v2.8", EnvRegistryV28)
	default:
		tb.Fatalf("StartRegistry: unknown Version %q (want %q or %q)", opts.Version, RegistryV3, RegistryV28)
	}
	if strings.TrimSpace(opts.Storage) == "" {
		tb.Fatalf("StartRegistry: RegistryOptions.Storage is empty")
	}
	dir := tb.TempDir()
	r := &Registry{
		Version:    opts.Version,
		Binary:     bin,
		ConfigPath: filepath.Join(dir, "config.yml"),
		LogPath:    filepath.Join(dir, "registry.log"),
		tb:         tb,
	}
	tb.Cleanup(func() {
		r.Stop()
		if tb.Failed() && !r.logShown {
			tb.Logf("registry %s (%s) log tail:\n%s", r.Addr, r.Version, tail(r.LogPath, 40))
		}
	})
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		addr, err := freeAddr()
		if err != nil {
			tb.Fatalf("finding a free port: %v", err)
		}
		r.Addr = addr
		if err := os.WriteFile(r.ConfigPath, []byte(registryConfig(addr, opts)), 0o644); err != nil {
			tb.Fatal(err)
		}
		if lastErr = r.start(); lastErr == nil {
			return r
		}
		if !strings.Contains(tail(r.LogPath, 20), "address already in use") {
			break
		}
	}
	r.logShown = true
	tb.Fatalf("starting registry %s: %v\nlog tail:\n%s\nconfig:\n%s", opts.Version, lastErr, tail(r.LogPath, 20), readFile(r.ConfigPath))
	return nil
}

func registryConfig(addr string, opts RegistryOptions) string {
	var b strings.Builder
	fmt.Fprintf(&b, "version: 0.1\n")
	fmt.Fprintf(&b, "log:\n  level: warn\n  accesslog:\n    disabled: true\n")
	fmt.Fprintf(&b, "http:\n  addr: %s\n  secret: regsweep-testenv-secret\n", addr)
	fmt.Fprintf(&b, "storage:\n")
	for _, line := range strings.Split(strings.TrimRight(opts.Storage, "\n"), "\n") {
		fmt.Fprintf(&b, "  %s\n", line)
	}
	fmt.Fprintf(&b, "  delete:\n    enabled: true\n")
	fmt.Fprintf(&b, "  redirect:\n    disable: true\n")
	fmt.Fprintf(&b, "  maintenance:\n    uploadpurging:\n      enabled: false\n    readonly:\n      enabled: %t\n", opts.ReadOnly)
	b.WriteString(opts.Extra)
	return b.String()
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// start launches the process and waits for /v2/.
func (r *Registry) start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		return errors.New("already running")
	}
	logf, err := os.OpenFile(r.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "---- %s starting %s serve %s (addr %s)\n", time.Now().Format(time.RFC3339), r.Binary, r.ConfigPath, r.Addr)
	cmd := exec.Command(r.Binary, "serve", r.ConfigPath)
	cmd.Env = registryEnv()
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	r.cmd, r.done = cmd, done

	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-done:
			r.cmd, r.done = nil, nil
			return fmt.Errorf("registry exited during startup (%v)", cmd.ProcessState)
		default:
		}
		resp, err := client.Get("http://" + r.Addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET /v2/: %s", resp.Status)
		}
		if time.Now().After(deadline) {
			r.stopLocked()
			return fmt.Errorf("registry not ready after 60s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops the registry (SIGTERM, then SIGKILL after 10 s). Stopping a
// stopped registry does nothing.
func (r *Registry) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopLocked()
}

func (r *Registry) stopLocked() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.done
	}
	r.cmd, r.done = nil, nil
}

// Running reports whether the registry process is running.
func (r *Registry) Running() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cmd != nil
}

// Restart stops the registry and starts it again with the same configuration
// and address.
func (r *Registry) Restart() {
	r.tb.Helper()
	r.Stop()
	if err := r.start(); err != nil {
		r.logShown = true
		r.tb.Fatalf("restarting registry %s: %v\nlog tail:\n%s", r.Addr, err, tail(r.LogPath, 20))
	}
}

// GarbageCollect runs the registry's own garbage collector (`registry
// garbage-collect [args] config.yml`, e.g. args "--dry-run" or
// "--delete-untagged") on the registry's storage and returns its output. A
// running registry is stopped for the collection and started again after.
func (r *Registry) GarbageCollect(tb testing.TB, args ...string) string {
	tb.Helper()
	wasRunning := r.Running()
	r.Stop()
	cmdArgs := append([]string{"garbage-collect"}, args...)
	cmdArgs = append(cmdArgs, r.ConfigPath)
	cmd := exec.Command(r.Binary, cmdArgs...)
	cmd.Env = registryEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("%s %s: %v\n%s", r.Binary, strings.Join(cmdArgs, " "), err, out)
	}
	if wasRunning {
		r.Restart()
	}
	return string(out)
}

// Ref returns Addr + "/" + name, e.g. r.Ref("library/app:1").
func (r *Registry) Ref(name string) string { return r.Addr + "/" + name }

// URL returns the registry's base URL, http://Addr.
func (r *Registry) URL() string { return "http://" + r.Addr }

// Crane runs crane with --insecure and args, returning its stdout without
// surrounding white space; it fails the test with crane's stderr on error.
func (r *Registry) Crane(tb testing.TB, args ...string) string {
	tb.Helper()
	return runCrane(tb, args...)
}

func runCrane(tb testing.TB, args ...string) string {
	tb.Helper()
	crane := Crane(tb)
	full := append([]string{"--insecure"}, args...)
	cmd := exec.Command(crane, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		tb.Fatalf("crane %s: %v\n%s", strings.Join(full, " "), err, stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	return string(b)
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	s := strings.TrimRight(readFile(path), "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
