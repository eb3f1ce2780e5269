package harbordb

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/opencontainers/go-digest"
)

// ManifestRef is a manifest revision link in one repository.
type ManifestRef struct {
	Repo   string
	Digest digest.Digest
}

// Finish describes what a storage sweep did, for the database side.
type Finish struct {
	// DeletedBlobs are claimed blobs now gone from storage; their rows go.
	DeletedBlobs []Blob
	// FreedBlobs is the subset whose data this run really removed (a row
	// whose data was already gone frees nothing); it only feeds FreedSpace.
	FreedBlobs []Blob
	// SweptManifests are revision links removed; their artifact_trash rows
	// go unless the repository has that artifact again.
	SweptManifests []ManifestRef
	// AffectedProjects get their quota_usage recomputed (the projects whose
	// project_blob rows Finish deletes are added).
	AffectedProjects []int64
}

// FinishStats says what Finish changed.
type FinishStats struct {
	BlobRows               int64  // blob rows deleted
	KeptBlobs              []Blob // DeletedBlobs whose row stayed: no longer deleting, or (without status) referenced again
	ProjectBlobRows        int64  // project_blob rows of the deleted blobs
	DeletedProjectBlobRows int64  // project_blob rows of soft-deleted projects
	ArtifactBlobRows       int64  // artifact_blob rows of deleted manifests with no artifact left
	TrashRows              int64  // artifact_trash rows removed
	Quotas                 []QuotaChange
	FreedSpace             int64 // bytes of FreedBlobs, foreign layers excluded
}

// QuotaChange is a recomputed quota_usage.
type QuotaChange struct {
	ProjectID int64
	Old, New  int64
}

// quotaRetries bounds the compare-and-set retries when pushes keep changing a
// project's usage.
const quotaRetries = 10

// Finish applies the database side of a sweep in one transaction, as Harbor's
// GC does after deleting from storage: the rows of deleted blobs (with their
// project_blob rows, and for manifests their artifact_blob rows when no
// artifact has the digest and their artifact_trash rows), the artifact_trash
// rows of swept manifests, the project_blob rows of soft-deleted projects,
// and quota_usage of the affected projects recomputed with Harbor's formula
// (compare-and-set on version, retried on conflict).
//
// artifact_blob rows are deleted only for digests in DeletedBlobs: those rows
// were held in deleting, which makes Harbor's push path refuse the digest, so
// no push can be re-creating an artifact that needs them.
func (db *DB) Finish(ctx context.Context, f Finish) (FinishStats, error) {
	var st FinishStats
	for _, b := range f.FreedBlobs {
		if !b.IsForeignLayer() {
			st.FreedSpace += b.Size
		}
	}
	err := db.inTx(ctx, "finishing the sweep", func(tx pgx.Tx) error {
		st = FinishStats{FreedSpace: st.FreedSpace}
		deleted, err := db.deleteBlobRows(ctx, tx, f.DeletedBlobs)
		if err != nil {
			return err
		}
		var ids []int64
		var digests []string
		for _, b := range f.DeletedBlobs {
			if deleted[b.ID] {
				ids = append(ids, b.ID)
				digests = append(digests, b.Digest.String())
			} else if b.ID > 0 {
				st.KeptBlobs = append(st.KeptBlobs, b)
			}
		}
		st.BlobRows = int64(len(ids))

		projects := slices.Clone(f.AffectedProjects)
		touched, err := deleteProjectBlobs(ctx, tx, ids)
		if err != nil {
			return db.fail("deleting project_blob rows of deleted blobs", err)
		}
		st.ProjectBlobRows = int64(len(touched))
		projects = append(projects, touched...)

		st.ArtifactBlobRows, st.TrashRows, err = cleanupDigests(ctx, tx, db.schema, digests, f.SweptManifests)
		if err != nil {
			return db.fail("deleting artifact_blob and artifact_trash rows of swept manifests", err)
		}

		tag, err := tx.Exec(ctx, `DELETE FROM project_blob pb USING project p WHERE p.project_id = pb.project_id AND p.deleted`)
		if err != nil {
			return db.fail("deleting project_blob rows of soft-deleted projects", err)
		}
		st.DeletedProjectBlobRows = tag.RowsAffected()

		slices.Sort(projects)
		for _, p := range slices.Compact(projects) {
			ch, err := recomputeQuota(ctx, tx, db.schema, p)
			if err != nil {
				return db.fail(fmt.Sprintf("recomputing the quota of project %d", p), err)
			}
			if ch != nil {
				st.Quotas = append(st.Quotas, *ch)
			}
		}
		return nil
	})
	if err != nil {
		return FinishStats{}, err
	}
	return st, nil
}

// deleteBlobRows deletes the rows of swept blobs that are still as claimed:
// in deleting at the claimed version, or without status, still unreferenced.
func (db *DB) deleteBlobRows(ctx context.Context, tx pgx.Tx, blobs []Blob) (map[int64]bool, error) {
	deleted := map[int64]bool{}
	var sql string
	if db.schema.HasBlobStatus() {
		sql = `DELETE FROM blob AS b USING unnest($1::bigint[], $2::bigint[]) AS c(id, version)
		       WHERE b.id = c.id AND b.version = c.version AND b.status = 'deleting' RETURNING b.id`
	} else {
		sql = `DELETE FROM blob AS b USING unnest($1::bigint[], $2::bigint[]) AS c(id, version)
		       WHERE b.id = c.id AND NOT ` + liveNow(db.schema) + ` RETURNING b.id`
	}
	for start := 0; start < len(blobs); start += claimChunk {
		ids, versions := idsAndVersions(blobs[start:min(start+claimChunk, len(blobs))])
		rows, _ := tx.Query(ctx, sql, ids, versions)
		var id int64
		if _, err := pgx.ForEachRow(rows, []any{&id}, func() error {
			deleted[id] = true
			return nil
		}); err != nil {
			return nil, db.fail("deleting blob rows of swept blobs", err)
		}
	}
	return deleted, nil
}

// deleteProjectBlobs deletes the project_blob rows of blob ids and returns
// the project of each row deleted.
func deleteProjectBlobs(ctx context.Context, tx pgx.Tx, blobIDs []int64) ([]int64, error) {
	if len(blobIDs) == 0 {
		return nil, nil
	}
	// A join, not "= ANY($1)": a parameter array is searched linearly per
	// row, and project_blob has no index on blob_id alone.
	rows, _ := tx.Query(ctx, `DELETE FROM project_blob pb USING unnest($1::bigint[]) AS c(id) WHERE pb.blob_id = c.id RETURNING pb.project_id`, blobIDs)
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

// cleanupDigests deletes the artifact_blob rows of deleted manifest digests
// that no artifact has any more, the artifact_trash rows of those digests and
// of swept revision links, except where the repository has the artifact again
// (a re-push).
func cleanupDigests(ctx context.Context, tx pgx.Tx, schema Schema, deletedDigests []string, swept []ManifestRef) (artifactBlobs, trash int64, err error) {
	if len(deletedDigests) > 0 {
		tag, err := tx.Exec(ctx, `
DELETE FROM artifact_blob ab USING unnest($1::text[]) AS d(digest) WHERE ab.digest_af = d.digest
AND NOT EXISTS (SELECT 1 FROM artifact a WHERE a.digest = ab.digest_af)`, deletedDigests)
		if err != nil {
			return 0, 0, err
		}
		artifactBlobs = tag.RowsAffected()
	}
	if !schema.HasTrash() {
		return artifactBlobs, 0, nil
	}
	if len(deletedDigests) > 0 {
		tag, err := tx.Exec(ctx, `
DELETE FROM artifact_trash t USING unnest($1::text[]) AS d(digest) WHERE t.digest = d.digest
AND NOT EXISTS (SELECT 1 FROM artifact a WHERE a.repository_name = t.repository_name AND a.digest = t.digest)`, deletedDigests)
		if err != nil {
			return 0, 0, err
		}
		trash += tag.RowsAffected()
	}
	if len(swept) > 0 {
		repos := make([]string, len(swept))
		digests := make([]string, len(swept))
		for i, m := range swept {
			repos[i], digests[i] = m.Repo, m.Digest.String()
		}
		tag, err := tx.Exec(ctx, `
DELETE FROM artifact_trash t USING unnest($1::text[], $2::text[]) AS m(repo, digest)
WHERE t.repository_name = m.repo AND t.digest = m.digest
AND NOT EXISTS (SELECT 1 FROM artifact a WHERE a.repository_name = t.repository_name AND a.digest = t.digest)`, repos, digests)
		if err != nil {
			return 0, 0, err
		}
		trash += tag.RowsAffected()
	}
	return artifactBlobs, trash, nil
}

// recomputeQuota sets a project's quota_usage storage to Harbor's formula,
// leaving any other key (1.x's "count") alone. It returns nil when the
// project has no quota_usage row or the value is already right.
func recomputeQuota(ctx context.Context, tx pgx.Tx, schema Schema, projectID int64) (*QuotaChange, error) {
	version := `0::bigint`
	if schema.hasQuotaVersion() {
		version = `COALESCE(version, 0)`
	}
	for range quotaRetries {
		var (
			id, used, ver int64
			raw           string
		)
		err := tx.QueryRow(ctx, `
SELECT id, COALESCE((used->>'storage')::numeric, 0)::bigint, `+version+`, used::text
FROM quota_usage WHERE reference = 'project' AND reference_id = $1`, fmt.Sprint(projectID)).Scan(&id, &used, &ver, &raw)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		sum, err := computeUsage(ctx, tx, schema, projectID)
		if err != nil {
			return nil, err
		}
		if sum == used {
			return nil, nil
		}
		sql := `UPDATE quota_usage SET used = jsonb_set(used, '{storage}', to_jsonb($2::bigint)), update_time = LOCALTIMESTAMP,
		        version = COALESCE(version, 0) + 1 WHERE id = $1 AND COALESCE(version, 0) = $3`
		args := []any{id, sum, ver}
		if !schema.hasQuotaVersion() {
			sql = `UPDATE quota_usage SET used = jsonb_set(used, '{storage}', to_jsonb($2::bigint)), update_time = LOCALTIMESTAMP
			       WHERE id = $1 AND used = $3::jsonb`
			args = []any{id, sum, raw}
		}
		tag, err := tx.Exec(ctx, sql, args...)
		if err != nil {
			return nil, err
		}
		if tag.RowsAffected() == 1 {
			return &QuotaChange{ProjectID: projectID, Old: used, New: sum}, nil
		}
	}
	return nil, fmt.Errorf("quota_usage of project %d changed %d times while being recomputed", projectID, quotaRetries)
}

// PruneProjectBlobs does what Harbor's GC does first in every project that
// is not deleted (markOrSweepUntaggedBlobs): a project_blob row goes when
// its blob is older than the window by update_time (creation_time on
// Harbor 1.x) and no artifact of the project references the blob. Quotas
// then stop counting what no artifact of the project uses. The quota of
// each project that lost rows is recomputed in the same transaction.
func (db *DB) PruneProjectBlobs(ctx context.Context, window time.Duration) (rows int64, projects []int64, err error) {
	column := "b.update_time"
	if !db.schema.HasBlobStatus() {
		column = "b.creation_time"
	}
	err = db.inTx(ctx, "pruning project_blob rows no artifact of the project uses", func(tx pgx.Tx) error {
		q, _ := tx.Query(ctx, `
DELETE FROM project_blob pb USING blob b, project p
WHERE pb.blob_id = b.id AND p.project_id = pb.project_id AND NOT p.deleted
  AND `+olderThan(column, 1)+`
  AND NOT EXISTS (SELECT 1 FROM artifact a JOIN artifact_blob ab ON a.digest = ab.digest_af
                  WHERE a.project_id = pb.project_id AND ab.digest_blob = b.digest)
RETURNING pb.project_id`, micros(window))
		touched, err := pgx.CollectRows(q, pgx.RowTo[int64])
		if err != nil {
			return db.fail("pruning project_blob rows no artifact of the project uses", err)
		}
		rows = int64(len(touched))
		slices.Sort(touched)
		projects = slices.Compact(touched)
		for _, p := range projects {
			if _, err := recomputeQuota(ctx, tx, db.schema, p); err != nil {
				return db.fail(fmt.Sprintf("recomputing the quota of project %d", p), err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	return rows, projects, nil
}
