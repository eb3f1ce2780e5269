package e2e

import (
	"testing"
	"time"

	"github.com/regsweep/regsweep/harbordb/harbortest"
	"github.com/regsweep/regsweep/internal/testenv"
)

// TestBadInputHarbor: Harbor mode refuses before the walk (exit 10) when
// its database or cache cannot be trusted, naming what failed; nothing is
// deleted. Rows of docs/bad-input.md.
func TestBadInputHarbor(t *testing.T) {
	b := newBadTree(t)
	b.flush(t)
	fresh := func(v harbortest.Variant) *harbortest.Harbor { return harbortest.Create(t, testenv.Postgres(t), v) }

	t.Run("database unreachable", func(t *testing.T) {
		expectRefusal(t, b.root, 10, []string{"127.0.0.1:1", "connection refused"},
			gcDeleteArgs(b.root, "--harbor-db", "postgres://postgres@127.0.0.1:1/registry?sslmode=disable&connect_timeout=3")...)
	})
	t.Run("not a Harbor database", func(t *testing.T) {
		expectRefusal(t, b.root, 10, []string{"no Harbor schema version", "supported"}, gcDeleteArgs(b.root, "--harbor-db", testenv.Postgres(t))...)
	})
	t.Run("unknown schema version", func(t *testing.T) {
		h := fresh(harbortest.Latest)
		h.SetMigration(250, false)
		expectRefusal(t, b.root, 10, []string{"250", "supported"}, gcDeleteArgs(b.root, "--harbor-db", h.DSN)...)
	})
	t.Run("dirty migration", func(t *testing.T) {
		h := fresh(harbortest.Latest)
		h.SetMigration(190, true)
		expectRefusal(t, b.root, 10, []string{"190", "dirty"}, gcDeleteArgs(b.root, "--harbor-db", h.DSN)...)
	})
	t.Run("a query fails", func(t *testing.T) {
		h := fresh(harbortest.Latest)
		h.Exec(`DROP TABLE artifact_trash`)
		expectRefusal(t, b.root, 10, []string{"snapshot", "artifact_trash"}, gcDeleteArgs(b.root, "--harbor-db", h.DSN)...)
	})
	t.Run("Redis down", func(t *testing.T) {
		h := fresh(harbortest.Latest)
		expectRefusal(t, b.root, 10, []string{"Redis", "127.0.0.1:1", "does not answer"},
			gcDeleteArgs(b.root, "--harbor-db", h.DSN, "--harbor-redis", "redis://127.0.0.1:1/1")...)
	})
	t.Run("a logical replica", func(t *testing.T) {
		h := fresh(harbortest.Latest)
		h.Exec(`CREATE SUBSCRIPTION regsweep_badinput CONNECTION 'host=127.0.0.1 port=1 dbname=registry' PUBLICATION harbor WITH (connect = false)`)
		t.Cleanup(func() {
			h.Exec(`ALTER SUBSCRIPTION regsweep_badinput SET (slot_name = NONE)`)
			h.Exec(`DROP SUBSCRIPTION regsweep_badinput`)
		})
		t.Log(expectRefusal(t, b.root, 10, []string{"logical replica", "regsweep_badinput", "primary"}, gcDeleteArgs(b.root, "--harbor-db", h.DSN)...))
	})
	t.Run("update_time in the future", func(t *testing.T) {
		h := fresh(harbortest.Latest)
		h.Project("lib")
		img := harbortest.FakeImage("written east of UTC", 1, "v1")
		h.PushImage("lib/app", img)
		h.Exec(`UPDATE blob SET update_time = LOCALTIMESTAMP + interval '2 hours' WHERE digest = $1`, img.Layers[0].Digest.String())
		t.Log(expectRefusal(t, b.root, 10, []string{"in the future", img.Layers[0].Digest.String(), "2h0m", "harbor-core must run in UTC"},
			gcDeleteArgs(b.root, "--harbor-db", h.DSN)...))
	})
	t.Run("database behind storage", func(t *testing.T) {
		// Storage written ten minutes ago by pushes the database (a
		// restored backup) never recorded.
		behind := newBadTree(t)
		behind.flush(t)
		ageStorage(t, behind.root, 10*time.Minute)
		h := fresh(harbortest.Latest)
		args := gcDeleteArgs(behind.root, "--harbor-db", h.DSN, "--grace", "2h")
		t.Log(expectRefusal(t, behind.root, 10, []string{"behind storage", "app@" + behind.image.Digest.String(), "restored backup"}, args...))
	})
	t.Run("lookback shorter than an hour", func(t *testing.T) {
		h := fresh(harbortest.Latest)
		expectRefusal(t, b.root, 2, []string{"--harbor-behind-lookback 10m0s", "at least 1h0m0s"},
			gcDeleteArgs(b.root, "--harbor-db", h.DSN, "--harbor-behind-lookback", "10m")...)
	})
	t.Run("Harbor 1.10 not read-only", func(t *testing.T) {
		h := fresh(harbortest.Harbor110)
		h.Project("lib")
		h.PushImage("lib/app", harbortest.FakeImage("x", 1, "v1"))
		// An empty Harbor against a full storage trips the nothing-marked
		// guard first; force past it to reach the read-only check.
		expectRefusal(t, b.root, 10, []string{"read-only"}, gcDeleteArgs(b.root, "--harbor-db", h.DSN, "--force")...)
	})
}
