package harbordb

import (
	"context"
	"errors"
	"fmt"

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
