package harbordb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/opencontainers/go-digest"
)

// BlobRows returns the rows that exist now for digests: a blob that had no
// row at the snapshot but has one now was pushed meanwhile, and must stay.
func (db *DB) BlobRows(ctx context.Context, digests []digest.Digest) ([]Blob, error) {
	if len(digests) == 0 {
		return nil, nil
	}
	names := make([]string, len(digests))
	for i, d := range digests {
		names[i] = d.String()
	}
	rows, _ := db.pool.Query(ctx, `SELECT id, digest, size, content_type FROM blob WHERE digest = ANY($1)`, names)
	var (
		out []Blob
		b   Blob
		dg  string
	)
	_, err := pgx.ForEachRow(rows, []any{&b.ID, &dg, &b.Size, &b.ContentType}, func() error {
		d, err := parseDigest("blob", b.ID, dg)
		if err != nil {
			return err
		}
		b.Digest = d
		out = append(out, b)
		return nil
	})
	if err != nil {
		return nil, db.fail("reading the blob rows of storage-only blobs", err)
	}
	return out, nil
}

// CheckCanClaim tells, before anything is deleted, whether ClaimBlobs can
// work: on schemas without blob status Harbor must be read-only, as its own
// GC of those versions required.
func (db *DB) CheckCanClaim(ctx context.Context) error {
	if db.schema.HasBlobStatus() {
		return nil
	}
	if err := requireReadOnly(ctx, db.pool); err != nil {
		if errors.Is(err, ErrNotReadOnly) {
			return fmt.Errorf("%s: %w", db.schema, err)
		}
		return db.fail("reading Harbor's read_only setting", err)
	}
	return nil
}

// LinksInUse reports, for each link (a repository and the digest it links),
// whether deleting it now could break what Harbor serves or a push in
// progress: an artifact of that repository is that digest or references it
// (artifact_blob), or the digest's blob row is not as snap saw it (a row
// that snap did not have, another version: Harbor's push path touches the
// row of every blob a client finds), or was touched within snap's window.
// gc asks just before each batch of links is deleted.
func (db *DB) LinksInUse(ctx context.Context, links []ManifestRef, snap *Snapshot) ([]bool, error) {
	inUse := make([]bool, len(links))
	if len(links) == 0 {
		return inUse, nil
	}
	repos := make([]string, len(links))
	digests := make([]string, len(links))
	for i, l := range links {
		repos[i], digests[i] = l.Repo, l.Digest.String()
	}
	repoColumn := "repository_name"
	if db.schema.Harbor1 {
		repoColumn = "repo"
	}
	rows, _ := db.pool.Query(ctx, `
SELECT l.i FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS l(repo, digest, i)
WHERE EXISTS (SELECT 1 FROM artifact a WHERE a.`+repoColumn+` = l.repo
              AND (a.digest = l.digest OR EXISTS (SELECT 1 FROM artifact_blob ab WHERE ab.digest_af = a.digest AND ab.digest_blob = l.digest)))`,
		repos, digests)
	var i int64
	if _, err := pgx.ForEachRow(rows, []any{&i}, func() error {
		inUse[i-1] = true
		return nil
	}); err != nil {
		return nil, db.fail("checking the artifacts of links about to be deleted", err)
	}

	sql := `SELECT digest, 0::bigint, creation_time FROM blob WHERE digest = ANY($1)`
	if db.schema.HasBlobStatus() {
		sql = `SELECT digest, COALESCE(version, 0), COALESCE(update_time, LOCALTIMESTAMP) FROM blob WHERE digest = ANY($1)`
	}
	rows, _ = db.pool.Query(ctx, sql, digests)
	touched := map[digest.Digest]bool{}
	var (
		dg      string
		version int64
		updated time.Time
	)
	if _, err := pgx.ForEachRow(rows, []any{&dg, &version, &updated}, func() error {
		d, err := parseDigest("blob", 0, dg)
		if err != nil {
			return err
		}
		was, ok := snap.Blobs[d]
		touched[d] = !ok || was.Version != version || updated.After(snap.Cutoff())
		return nil
	}); err != nil {
		return nil, db.fail("checking the blob rows of links about to be deleted", err)
	}
	for i, l := range links {
		inUse[i] = inUse[i] || touched[l.Digest]
	}
	return inUse, nil
}
