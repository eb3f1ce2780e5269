package harbordb_test

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// pgCluster is a PostgreSQL cluster of the test's own, built with the
// binaries testenv/up.sh uses: the shared test server trusts every local
// connection and is a primary, so a password check and a hot standby need
// their own servers.
type pgCluster struct {
	bin     string
	base    string // owned by the server's user; holds data dirs and sockets
	dataDir string
	port    int
	runAs   string // "postgres" when the test runs as root
}

// pgBinDir finds the newest /usr/lib/postgresql/*/bin with initdb, as
// testenv/lib.sh does.
func pgBinDir(t *testing.T) string {
	t.Helper()
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi < vj
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i]
		}
	}
	t.Fatalf("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run `make testenv-up` (or `bash testenv/install.sh`)")
	return ""
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (c *pgCluster) run(t *testing.T, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(c.bin, name), args...)
	if c.runAs != "" {
		cmd = exec.Command("runuser", append([]string{"-u", c.runAs, "--", filepath.Join(c.bin, name)}, args...)...)
	}
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
	if out, err := cmd.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(c.base, filepath.Base(c.dataDir)+".log"))
		t.Fatalf("%s %s: %v\n%s\n%s", name, strings.Join(args, " "), err, out, log)
	}
}

// startPrimary initialises and starts a cluster whose TCP connections need
// the password of user postgres.
func startPrimary(t *testing.T, password string) *pgCluster {
	t.Helper()
	c := &pgCluster{bin: pgBinDir(t)}
	base, err := os.MkdirTemp("", "harbordb-pg-")
	if err != nil {
		t.Fatal(err)
	}
	c.base = base
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 { // PostgreSQL refuses to run as root
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root needs the postgres user (install the postgresql package): %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(base, uid, gid); err != nil {
			t.Fatal(err)
		}
		c.runAs = "postgres"
		pw := filepath.Join(base, "pw")
		if err := os.WriteFile(pw, []byte(password+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(pw, uid, gid); err != nil {
			t.Fatal(err)
		}
	} else if err := os.WriteFile(filepath.Join(base, "pw"), []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.dataDir = filepath.Join(base, "primary")
	c.run(t, "initdb", "-D", c.dataDir, "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256",
		"--pwfile="+filepath.Join(base, "pw"), "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
	c.start(t)
	return c
}

func (c *pgCluster) start(t *testing.T) {
	t.Helper()
	c.port = freePort(t)
	c.run(t, "pg_ctl", "-D", c.dataDir, "-l", filepath.Join(c.base, filepath.Base(c.dataDir)+".log"), "-w", "-t", "60",
		"-o", fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=20", c.port, c.base), "start")
	t.Cleanup(func() {
		cmd := exec.Command(filepath.Join(c.bin, "pg_ctl"), "-D", c.dataDir, "-m", "immediate", "-w", "stop")
		if c.runAs != "" {
			cmd = exec.Command("runuser", "-u", c.runAs, "--", filepath.Join(c.bin, "pg_ctl"), "-D", c.dataDir, "-m", "immediate", "-w", "stop")
		}
		_ = cmd.Run()
	})
}

// stop stops the server at once.
func (c *pgCluster) stop(t *testing.T) {
	t.Helper()
	c.run(t, "pg_ctl", "-D", c.dataDir, "-m", "immediate", "-w", "stop")
}

// startStandby makes a hot standby of c with pg_basebackup and starts it.
func (c *pgCluster) startStandby(t *testing.T) *pgCluster {
	t.Helper()
	s := &pgCluster{bin: c.bin, base: c.base, runAs: c.runAs, dataDir: filepath.Join(c.base, "standby")}
	c.run(t, "pg_basebackup", "-D", s.dataDir, "-h", c.base, "-p", strconv.Itoa(c.port), "-U", "postgres",
		"-R", "-X", "stream", "-c", "fast", "--no-sync")
	s.start(t)
	return s
}

// dsn is a URL for database db as user postgres with password.
func (c *pgCluster) dsn(password, db string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword("postgres", password),
		Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)), Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}
