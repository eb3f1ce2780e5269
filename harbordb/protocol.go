package harbordb

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/opencontainers/go-digest"
)

// claimChunk bounds the ids sent in one statement.
const claimChunk = 1000

// liveNow is true for the blob row b while Harbor needs its digest, evaluated
// against the latest committed state (the snapshot may be minutes old).
func liveNow(s Schema) string {
	q := `(EXISTS (SELECT 1 FROM artifact_blob ab JOIN artifact a ON a.digest = ab.digest_af
	               WHERE ab.digest_blob = b.digest AND ` + liveProject + `)
	   OR EXISTS (SELECT 1 FROM artifact a WHERE a.digest = b.digest AND ` + liveProject + `)`
	if s.HasSystemArtifacts() {
		q += `
	   OR EXISTS (SELECT 1 FROM system_artifact sa WHERE sa.digest = b.digest)`
	}
	return q + `)`
}

// olderThan is true for a timestamp column older than LOCALTIMESTAMP minus
// the window given in microseconds as parameter $n.
func olderThan(column string, n int) string {
	return fmt.Sprintf(`%s <= LOCALTIMESTAMP - make_interval(secs => $%d::double precision / 1000000)`, column, n)
}

// ClaimBlobs runs Harbor's deletion protocol on candidate blob rows:
// none|delete|deletefailed -> delete, then delete -> deleting, each a
// compare-and-set on the version the caller read (the snapshot's). A row is
// claimed only if, when it is marked, its version is unchanged, it is still
// older than the window by update_time and no artifact of a live project and
// no system artifact references its digest. Every other row is returned in
// lost and must not be deleted. Claimed rows carry their new version and
// status (deleting).
//
// On schemas without blob status see the package comment: ClaimBlobs then
// requires Harbor to be read-only (ErrNotReadOnly) and writes nothing.
//
// It claims in chunks, each committed: when a chunk fails (a timeout, a
// failover), claimed still holds the rows the chunks before it claimed,
// with the error. They are in deleting and the caller must release them
// (ReleaseFailed), or Harbor refuses pushes of their digests.
func (db *DB) ClaimBlobs(ctx context.Context, blobs []Blob, window time.Duration) (claimed, lost []Blob, err error) {
	uniq := make([]Blob, 0, len(blobs))
	seen := map[int64]bool{}
	for _, b := range blobs {
		if b.ID <= 0 || seen[b.ID] {
			if b.ID <= 0 {
				lost = append(lost, b) // not a row: nothing to claim
			}
			continue
		}
		seen[b.ID] = true
		uniq = append(uniq, b)
	}
	won := map[int64]Blob{}
	done := 0 // rows of the chunks that answered
	for start := 0; start < len(uniq); start += claimChunk {
		chunk := uniq[start:min(start+claimChunk, len(uniq))]
		var got map[int64]Blob
		if db.schema.HasBlobStatus() {
			got, err = db.claimChunk(ctx, chunk, window)
		} else {
			got, err = db.checkChunkReadOnly(ctx, chunk, window)
		}
		if err != nil {
			break
		}
		for id, b := range got {
			won[id] = b
		}
		done += len(chunk)
	}
	for _, b := range uniq[:done] {
		if c, ok := won[b.ID]; ok {
			claimed = append(claimed, c)
		} else {
			lost = append(lost, b)
		}
	}
	return claimed, lost, err
}

// claimChunk does the two compare-and-set steps. They are separate
// statements, committed one after the other, as Harbor's are: a push that
// touches a row marked delete in between makes the second step miss it.
func (db *DB) claimChunk(ctx context.Context, chunk []Blob, window time.Duration) (map[int64]Blob, error) {
	ids, versions := idsAndVersions(chunk)
	marked, err := db.casStatus(ctx, "marking candidate blobs as delete", `
UPDATE blob AS b SET status = 'delete', version = b.version + 1, update_time = LOCALTIMESTAMP
FROM unnest($1::bigint[], $2::bigint[]) AS c(id, version)
WHERE b.id = c.id AND b.version = c.version AND b.status IN ('none', 'delete', 'deletefailed')
  AND `+olderThan("b.update_time", 3)+`
  AND NOT `+liveNow(db.schema)+`
RETURNING b.id, b.version, b.update_time`, ids, versions, micros(window))
	if err != nil {
		return nil, err
	}
	if len(marked) == 0 {
		return nil, nil
	}
	ids, versions = ids[:0], versions[:0]
	for id, v := range marked {
		ids = append(ids, id)
		versions = append(versions, v.version)
	}
	deleting, err := db.casStatus(ctx, "marking blobs as deleting", `
UPDATE blob AS b SET status = 'deleting', version = b.version + 1, update_time = LOCALTIMESTAMP
FROM unnest($1::bigint[], $2::bigint[]) AS c(id, version)
WHERE b.id = c.id AND b.version = c.version AND b.status = 'delete'
RETURNING b.id, b.version, b.update_time`, ids, versions)
	if err != nil {
		return nil, err
	}
	out := map[int64]Blob{}
	for _, b := range chunk {
		if d, ok := deleting[b.ID]; ok {
			b.Status, b.Version, b.UpdateTime = StatusDeleting, d.version, d.updateTime
			out[b.ID] = b
		}
	}
	return out, nil
}

type casResult struct {
	version    int64
	updateTime time.Time
}

func (db *DB) casStatus(ctx context.Context, purpose, sql string, args ...any) (map[int64]casResult, error) {
	rows, _ := db.pool.Query(ctx, sql, args...)
	out := map[int64]casResult{}
	var (
		id int64
		r  casResult
	)
	if _, err := pgx.ForEachRow(rows, []any{&id, &r.version, &r.updateTime}, func() error {
		out[id] = r
		return nil
	}); err != nil {
		return nil, db.fail(purpose, err)
	}
	return out, nil
}

// checkChunkReadOnly is ClaimBlobs on a schema without blob status.
func (db *DB) checkChunkReadOnly(ctx context.Context, chunk []Blob, window time.Duration) (map[int64]Blob, error) {
	ids, _ := idsAndVersions(chunk)
	out := map[int64]Blob{}
	err := db.inTx(ctx, "checking candidate blobs", func(tx pgx.Tx) error {
		if err := requireReadOnly(ctx, tx); errors.Is(err, ErrNotReadOnly) {
			return fmt.Errorf("harbordb: %s: %w", db.schema, err)
		} else if err != nil {
			return db.fail("checking that Harbor is read-only", err)
		}
		rows, _ := tx.Query(ctx, `
SELECT b.id FROM blob b JOIN unnest($1::bigint[]) AS c(id) ON b.id = c.id
WHERE `+olderThan("b.creation_time", 2)+` AND NOT `+liveNow(db.schema), ids, micros(window))
		var id int64
		_, err := pgx.ForEachRow(rows, []any{&id}, func() error {
			out[id] = Blob{}
			return nil
		})
		return db.fail("checking candidate blobs", err)
	})
	if err != nil {
		return nil, err
	}
	for _, b := range chunk {
		if _, ok := out[b.ID]; ok {
			out[b.ID] = b
		}
	}
	return out, nil
}

// requireReadOnly returns ErrNotReadOnly unless Harbor's read_only setting
// (a user-scope configuration item, kept in properties) is true.
func requireReadOnly(ctx context.Context, q querier) error {
	var v string
	err := q.QueryRow(ctx, `SELECT v FROM properties WHERE k = 'read_only'`).Scan(&v)
	if err == pgx.ErrNoRows {
		return ErrNotReadOnly
	}
	if err != nil {
		return err
	}
	if !strings.EqualFold(strings.TrimSpace(v), "true") {
		return ErrNotReadOnly
	}
	return nil
}

func idsAndVersions(bs []Blob) (ids, versions []int64) {
	ids = make([]int64, len(bs))
	versions = make([]int64, len(bs))
	for i, b := range bs {
		ids[i], versions[i] = b.ID, b.Version
	}
	return ids, versions
}

// ReleaseFailed moves claimed blobs whose storage delete failed from deleting
// to deletefailed (compare-and-set on the claimed version), as Harbor's
// markDeleteFailed does; the next run may pick them again.
func (db *DB) ReleaseFailed(ctx context.Context, blobs []Blob) error {
	if !db.schema.HasBlobStatus() || len(blobs) == 0 {
		return nil
	}
	for start := 0; start < len(blobs); start += claimChunk {
		ids, versions := idsAndVersions(blobs[start:min(start+claimChunk, len(blobs))])
		if _, err := db.pool.Exec(ctx, `
UPDATE blob AS b SET status = 'deletefailed', version = b.version + 1, update_time = LOCALTIMESTAMP
FROM unnest($1::bigint[], $2::bigint[]) AS c(id, version)
WHERE b.id = c.id AND b.version = c.version AND b.status = 'deleting'`, ids, versions); err != nil {
			return db.fail("marking blobs as deletefailed", err)
		}
	}
	return nil
}

// RecoverStuck resets to none the blob rows left in deleting for longer
// than window whose data inStorage still finds (a GC killed between
// claiming and deleting; Harbor never repairs them and they block pushes of
// the digest), a compare-and-set on version, so a row changed meanwhile is
// left to its new owner. inStorage answers for a complete walk of storage.
// A stuck row whose data is gone is RemoveRowsWithoutData's.
func (db *DB) RecoverStuck(ctx context.Context, window time.Duration, inStorage func(digest.Digest) bool) (reset int, err error) {
	if !db.schema.HasBlobStatus() {
		return 0, nil
	}
	rows, _ := db.pool.Query(ctx, `
SELECT id, digest, version FROM blob WHERE status = 'deleting' AND `+olderThan("update_time", 1)+` ORDER BY id`, micros(window))
	type stuck struct {
		id, version int64
		dg          string
	}
	var found []stuck
	var s stuck
	if _, err := pgx.ForEachRow(rows, []any{&s.id, &s.dg, &s.version}, func() error {
		found = append(found, s)
		return nil
	}); err != nil {
		return 0, db.fail("listing blobs stuck in deleting", err)
	}
	for _, s := range found {
		d, err := parseDigest("blob", s.id, s.dg)
		if err != nil {
			return reset, db.fail("recovering stuck blobs", err)
		}
		if !inStorage(d) {
			continue
		}
		tag, err := db.pool.Exec(ctx, `
UPDATE blob SET status = 'none', version = version + 1, update_time = LOCALTIMESTAMP
WHERE id = $1 AND version = $2 AND status = 'deleting'`, s.id, s.version)
		if err != nil {
			return reset, db.fail(fmt.Sprintf("resetting stuck blob %s to none", d), err)
		}
		reset += int(tag.RowsAffected())
	}
	return reset, nil
}

// RemoveRowsWithoutData deletes the rows of blobs whose data a complete walk
// of storage did not find, as Harbor's GC deletes a candidate whose data is
// already gone (registryctl answers a missing blob as deleted). blobs are
// rows as read before that walk; a row goes only if, when it is deleted, it
// still has that version, no artifact of a live project and no system
// artifact references its digest, and:
//
//   - it is deleting or deletefailed, whatever its age: a collector claimed
//     it (a run whose database side failed after the sweep leaves such
//     rows). Harbor's push path refuses to upload a digest in deleting and
//     moves a deletefailed row to none (a new version) before it writes the
//     data again, so a row unchanged since before the walk has no data to
//     protect;
//   - or it is none or delete, older than window by update_time and no
//     project_blob row names it: Harbor's GC's own candidates
//     (PruneProjectBlobs runs first).
//
// In one transaction with the project_blob, artifact_blob and artifact_trash
// rows Finish deletes with a row, and the quotas of the projects they were
// in recomputed. It returns the rows deleted. Without blob status it does
// nothing: no version protects a row there.
func (db *DB) RemoveRowsWithoutData(ctx context.Context, blobs []Blob, window time.Duration) ([]Blob, error) {
	if !db.schema.HasBlobStatus() || len(blobs) == 0 {
		return nil, nil
	}
	var removed []Blob
	err := db.inTx(ctx, "removing blob rows whose data is gone", func(tx pgx.Tx) error {
		removed = removed[:0]
		byID := map[int64]Blob{}
		for _, b := range blobs {
			byID[b.ID] = b
		}
		for start := 0; start < len(blobs); start += claimChunk {
			ids, versions := idsAndVersions(blobs[start:min(start+claimChunk, len(blobs))])
			rows, _ := tx.Query(ctx, `
DELETE FROM blob AS b USING unnest($1::bigint[], $2::bigint[]) AS c(id, version)
WHERE b.id = c.id AND b.version = c.version
  AND (b.status IN ('deleting', 'deletefailed')
       OR (b.status IN ('none', 'delete') AND `+olderThan("b.update_time", 3)+`
           AND NOT EXISTS (SELECT 1 FROM project_blob pb WHERE pb.blob_id = b.id)))
  AND NOT `+liveNow(db.schema)+`
RETURNING b.id`, ids, versions, micros(window))
			var id int64
			if _, err := pgx.ForEachRow(rows, []any{&id}, func() error {
				removed = append(removed, byID[id])
				return nil
			}); err != nil {
				return db.fail("deleting blob rows whose data is gone", err)
			}
		}
		ids := make([]int64, len(removed))
		digests := make([]string, len(removed))
		for i, b := range removed {
			ids[i], digests[i] = b.ID, b.Digest.String()
		}
		projects, err := deleteProjectBlobs(ctx, tx, ids)
		if err != nil {
			return db.fail("deleting project_blob rows of blobs whose data is gone", err)
		}
		if _, _, err := cleanupDigests(ctx, tx, db.schema, digests, nil); err != nil {
			return db.fail("deleting artifact_blob and artifact_trash rows of blobs whose data is gone", err)
		}
		slices.Sort(projects)
		for _, p := range slices.Compact(projects) {
			if _, err := recomputeQuota(ctx, tx, db.schema, p); err != nil {
				return db.fail(fmt.Sprintf("recomputing the quota of project %d", p), err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return removed, nil
}
