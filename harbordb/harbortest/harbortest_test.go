package harbortest_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/regsweep/regsweep/harbordb/harbortest"
	"github.com/regsweep/regsweep/internal/testenv"
)

// pgCode runs sql and returns the SQLSTATE it fails with ("" on success).
func pgCode(t *testing.T, h *harbortest.Harbor, sql string, args ...any) string {
	t.Helper()
	_, err := h.Pool.Exec(context.Background(), sql, args...)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	if err != nil {
		t.Fatal(err)
	}
	return ""
}

// TestConstraints checks that the fixture schema refuses what Harbor's
// refuses, so a wrong delete fails in tests as it would in Harbor.
func TestConstraints(t *testing.T) {
	for _, v := range []harbortest.Variant{harbortest.Latest, harbortest.Harbor28} {
		t.Run(v.String(), func(t *testing.T) {
			h := harbortest.Create(t, testenv.Postgres(t), v)
			h.Project("library")
			img := harbortest.FakeImage("a", 1, "v1")
			a := h.PushImage("library/app", img)
			child := h.PushImage("library/app", harbortest.FakeImage("child", 1))
			h.PushIndex("library/app", harbortest.FakeBlob("idx", 10, harbortest.MediaTypeOCIIndex), nil, child)
			h.PushAccessory(a, harbortest.FakeImage("sig", 1, harbortest.CosignTag(a.Digest)), harbortest.AccessoryCosign)

			const fk, unique = "23503", "23505"
			for name, tc := range map[string]struct {
				sql  string
				args []any
				want string
			}{
				"artifact with a tag":         {`DELETE FROM artifact WHERE id = $1`, []any{a.ID}, fk},
				"child of an index":           {`DELETE FROM artifact WHERE id = $1`, []any{child.ID}, fk},
				"second artifact_blob row":    {`INSERT INTO artifact_blob (digest_af, digest_blob) VALUES ($1, $1)`, []any{a.Digest.String()}, unique},
				"second blob row of a digest": {`INSERT INTO blob (digest, content_type, size) VALUES ($1, 'x', 1)`, []any{a.Digest.String()}, unique},
				"same tag twice":              {`INSERT INTO tag (repository_id, artifact_id, name) VALUES ($1, $2, 'v1')`, []any{a.RepositoryID, child.ID}, unique},
				"same trash row twice":        {`INSERT INTO artifact_trash (media_type, manifest_media_type, repository_name, digest) VALUES ('m','m','r','d'), ('m','m','r','d')`, nil, unique},
				"task of no execution":        {`INSERT INTO task (execution_id, status, status_code, vendor_type) VALUES (999, 'x', 0, 'x')`, nil, fk},
			} {
				if got := pgCode(t, h, tc.sql, tc.args...); got != tc.want {
					t.Errorf("%s: SQLSTATE %q, want %q", name, got, tc.want)
				}
			}

			// Harbor's own deletion path goes through.
			h.DeleteArtifact(a)
			if n := h.Count(`SELECT count(*) FROM artifact_trash WHERE digest = $1`, a.Digest.String()); n != 1 {
				t.Errorf("%d trash rows for the deleted artifact", n)
			}
			if n := h.Count(`SELECT count(*) FROM artifact_accessory`); n != 0 {
				t.Errorf("the signature's accessory row survived its subject: %d", n)
			}
		})
	}
}

func TestHarbor110Rows(t *testing.T) {
	h := harbortest.Create(t, testenv.Postgres(t), harbortest.Harbor110)
	p := h.Project("library")
	img := harbortest.FakeImage("a", 2, "v1", "latest")
	h.PushImage("library/app", img)
	if n := h.Count(`SELECT count(*) FROM artifact WHERE digest = $1`, img.Manifest.Digest.String()); n != 2 {
		t.Errorf("%d tag-level artifact rows, want 2", n)
	}
	if got, want := h.QuotaUsed(p), h.ComputedUsage(p); got != want || want == 0 {
		t.Errorf("quota %d, computed %d", got, want)
	}
	if n := h.Count(`SELECT (used->>'count')::bigint FROM quota_usage`); n != 2 {
		t.Errorf("quota count %d, want 2", n)
	}
	if n := h.Count(`SELECT count(*) FROM information_schema.columns WHERE table_name = 'blob' AND column_name IN ('status', 'version', 'update_time')`); n != 0 {
		t.Errorf("1.10 blob has %d protocol columns", n)
	}
}
