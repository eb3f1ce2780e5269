package harbordb_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/regsweep/regsweep/harbordb"
	"github.com/regsweep/regsweep/harbordb/harbortest"
	"github.com/regsweep/regsweep/internal/testenv"
)

func TestOpenDetectsSchema(t *testing.T) {
	for _, tc := range []struct {
		v    harbortest.Variant
		want harbordb.Schema
		str  string
	}{
		{harbortest.Latest, harbordb.Schema{Migration: 190}, "Harbor 2.x (migration 190)"},
		{harbortest.Harbor28, harbordb.Schema{Migration: 110}, "Harbor 2.x (migration 110)"},
		{harbortest.Harbor110, harbordb.Schema{Migration: 15, Harbor1: true}, "Harbor 1.10 (migration 15)"},
	} {
		t.Run(tc.v.String(), func(t *testing.T) {
			_, db := newHarbor(t, tc.v)
			if got := db.Schema(); got != tc.want {
				t.Fatalf("Schema() = %+v, want %+v", got, tc.want)
			}
			if got := db.Schema().String(); got != tc.str {
				t.Errorf("String() = %q, want %q", got, tc.str)
			}
			if strings.Contains(db.String(), testPassword) || !strings.Contains(db.String(), "xxxxx") {
				t.Errorf("DB.String() = %q: want the password redacted", db.String())
			}
		})
	}
}

func TestOpenRefusesUnknownSchemas(t *testing.T) {
	dsn := testenv.Postgres(t)
	h := harbortest.Create(t, dsn, harbortest.Latest)
	cfg := harbordb.Config{URL: dsn}
	for _, tc := range []struct {
		name    string
		version int
		dirty   bool
		want    harbordb.UnknownSchemaError
		msg     []string
	}{
		{"newer than known", 200, false, harbordb.UnknownSchemaError{Version: 200}, []string{"unknown Harbor schema migration 200", "migrations 30-190", "migrations 10-15"}},
		{"Harbor 1.8", 5, false, harbordb.UnknownSchemaError{Version: 5}, []string{"migration 5", "migrations 30-190"}},
		{"between 1.10 and 2.0", 20, false, harbordb.UnknownSchemaError{Version: 20}, []string{"migration 20"}},
		{"dirty", 190, true, harbordb.UnknownSchemaError{Version: 190, Dirty: true}, []string{"migration 190 is dirty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.SetMigration(tc.version, tc.dirty)
			db, err := harbordb.Open(context.Background(), cfg)
			if err == nil {
				db.Close()
				t.Fatalf("Open succeeded on migration %d (dirty %v)", tc.version, tc.dirty)
			}
			t.Logf("%s: %v", tc.name, err)
			var unknown *harbordb.UnknownSchemaError
			if !errors.As(err, &unknown) || *unknown != tc.want {
				t.Fatalf("Open error = %v (%T), want *UnknownSchemaError %+v", err, err, tc.want)
			}
			for _, m := range tc.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not say %q", err, m)
				}
			}
		})
	}

	t.Run("not a Harbor database", func(t *testing.T) {
		_, err := harbordb.Open(context.Background(), harbordb.Config{URL: testenv.Postgres(t)})
		var unknown *harbordb.UnknownSchemaError
		if !errors.As(err, &unknown) || !unknown.Missing {
			t.Fatalf("Open on an empty database: %v, want *UnknownSchemaError with Missing", err)
		}
	})
}

func TestOpenUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close() // nothing listens there now
	host := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cfg := harbordb.Config{URL: fmt.Sprintf("postgres://harbor:%s@%s/registry?sslmode=disable", testPassword, host)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := harbordb.Open(ctx, cfg)
	if err == nil {
		db.Close()
		t.Fatal("Open succeeded against a closed port")
	}
	t.Logf("unreachable: %v", err)
	if !strings.Contains(err.Error(), host) {
		t.Errorf("error %q does not name %s", err, host)
	}
	if strings.Contains(err.Error(), testPassword) {
		t.Errorf("error %q contains the password", err)
	}
}

// TestOpenOwnServers checks a wrong password and a hot standby against a
// password-protected primary and a pg_basebackup standby of it.
func TestOpenOwnServers(t *testing.T) {
	const password = "Corr3ct-horse-battery"
	primary := startPrimary(t, password)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, primary.dsn(password, "postgres"))
	if err != nil {
		t.Fatalf("connecting to the test primary: %v", err)
	}
	if _, err := admin.Exec(ctx, `CREATE DATABASE registry`); err != nil {
		t.Fatal(err)
	}
	admin.Close(ctx)
	harbortest.Create(t, primary.dsn(password, "registry"), harbortest.Latest)

	t.Run("right password", func(t *testing.T) {
		db, err := harbordb.Open(ctx, harbordb.Config{URL: primary.dsn(password, "registry")})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer db.Close()
		if db.Schema().Migration != 190 {
			t.Errorf("schema %v, want migration 190", db.Schema())
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		const wrong = "Wr0ng-horse-battery"
		cfg := harbordb.Config{URL: primary.dsn(wrong, "registry")}
		db, err := harbordb.Open(ctx, cfg)
		if err == nil {
			db.Close()
			t.Fatal("Open succeeded with a wrong password")
		}
		t.Logf("wrong password: %v", err)
		host := fmt.Sprintf("127.0.0.1:%d", primary.port)
		if !strings.Contains(err.Error(), host) {
			t.Errorf("error %q does not name %s", err, host)
		}
		if !strings.Contains(err.Error(), "password authentication failed") {
			t.Errorf("error %q does not say why", err)
		}
		for _, secret := range []string{wrong, password} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q contains a password", err)
			}
		}
	})

	t.Run("standby", func(t *testing.T) {
		standby := primary.startStandby(t)
		db, err := harbordb.Open(ctx, harbordb.Config{URL: standby.dsn(password, "registry")})
		if err == nil {
			db.Close()
			t.Fatal("Open accepted a hot standby")
		}
		t.Logf("standby: %v", err)
		if !errors.Is(err, harbordb.ErrStandby) {
			t.Fatalf("Open on a standby: %v, want ErrStandby", err)
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("127.0.0.1:%d", standby.port)) || strings.Contains(err.Error(), password) {
			t.Errorf("error %q: want the standby's address and no password", err)
		}

		// A pool may reconnect elsewhere after Open (a host list, a proxy
		// that fails over): the snapshot checks again on its own
		// connection. Primary first, standby second; then the primary
		// goes away.
		multi := fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%d,127.0.0.1:%d/registry?sslmode=disable", password, primary.port, standby.port)
		db, err = harbordb.Open(ctx, harbordb.Config{URL: multi})
		if err != nil {
			t.Fatalf("Open with the primary first: %v", err)
		}
		defer db.Close()
		primary.stop(t)
		// The pool's connection to the primary is dead: the first tries
		// may fail on it before the pool connects again.
		var snapErr error
		for range 3 {
			if _, snapErr = db.Snapshot(ctx, time.Hour); snapErr == nil || errors.Is(snapErr, harbordb.ErrStandby) {
				break
			}
			t.Logf("snapshot on the dead connection: %v", snapErr)
		}
		if !errors.Is(snapErr, harbordb.ErrStandby) {
			t.Fatalf("Snapshot after the pool reconnected to the standby: %v, want ErrStandby", snapErr)
		}
	})
}
