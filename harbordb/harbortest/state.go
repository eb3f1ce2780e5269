package harbortest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/opencontainers/go-digest"
)

// DeleteArtifact deletes an artifact the way Harbor's artifact deletion does
// (controller/artifact deleteDeeply): its hard accessories and its children
// that no tag names and no other index references go with it; references,
// tags, label references and the artifact row are deleted; project_blob rows
// no remaining artifact of the project needs are removed; an artifact_trash
// row is written for each deleted artifact. Storage is not touched.
//
// On Harbor 1.10 (deleting a tag also deleted the manifest in storage
// through the registry API) it deletes the artifact rows of the digest.
func (h *Harbor) DeleteArtifact(a Artifact) {
	h.tb.Helper()
	if !h.Variant.Harbor2() {
		h.exec(`DELETE FROM artifact WHERE repo = $1 AND digest = $2`, a.Repo, a.Digest.String())
		h.SyncQuota(a.ProjectID)
		return
	}
	ctx, cancel := h.ctx()
	defer cancel()
	err := pgx.BeginFunc(ctx, h.Pool, func(tx pgx.Tx) error {
		return deleteDeeply(ctx, tx, a.ID, true, isAccessory(ctx, tx, a.ID))
	})
	if err != nil {
		h.tb.Fatalf("harbortest: deleting artifact %s@%s: %v", a.Repo, a.Digest, err)
	}
}

func isAccessory(ctx context.Context, tx pgx.Tx, id int64) bool {
	var yes bool
	_ = tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM artifact_accessory WHERE artifact_id = $1)`, id).Scan(&yes)
	return yes
}

func deleteDeeply(ctx context.Context, tx pgx.Tx, id int64, isRoot, accessory bool) error {
	var (
		projectID int64
		repo, dg  string
		mt, mmt   string
		tags      int
		parents   int
	)
	err := tx.QueryRow(ctx, `
SELECT project_id, repository_name, digest, media_type, manifest_media_type,
       (SELECT count(*) FROM tag WHERE artifact_id = artifact.id),
       (SELECT count(*) FROM artifact_reference WHERE child_id = artifact.id)
FROM artifact WHERE id = $1`, id).Scan(&projectID, &repo, &dg, &mt, &mmt, &tags, &parents)
	if errors.Is(err, pgx.ErrNoRows) && !isRoot {
		return nil
	}
	if err != nil {
		return err
	}
	if !isRoot && tags > 0 {
		return nil
	}
	if parents > 0 {
		if isRoot {
			return fmt.Errorf("artifact %d is referenced by an index", id)
		}
		return nil
	}
	if accessory {
		if _, err := tx.Exec(ctx, `DELETE FROM artifact_accessory WHERE artifact_id = $1 AND digest = $2`, id, dg); err != nil {
			return err
		}
	}
	rows, _ := tx.Query(ctx, `SELECT artifact_id FROM artifact_accessory WHERE subject_artifact_id = $1 AND type <> 'base'`, id)
	accs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return err
	}
	for _, acc := range accs {
		var accParents int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM artifact_reference WHERE child_id = $1`, acc).Scan(&accParents); err != nil {
			return err
		}
		if err := deleteDeeply(ctx, tx, acc, accParents == 0, true); err != nil {
			return err
		}
	}
	rows, _ = tx.Query(ctx, `DELETE FROM artifact_reference WHERE parent_id = $1 RETURNING child_id`, id)
	children, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return err
	}
	for _, c := range children {
		if err := deleteDeeply(ctx, tx, c, false, isAccessory(ctx, tx, c)); err != nil {
			return err
		}
	}
	for _, sql := range []string{
		`DELETE FROM tag WHERE artifact_id = $1`,
		`DELETE FROM label_reference WHERE artifact_id = $1`,
		`DELETE FROM artifact WHERE id = $1`,
	} {
		if _, err := tx.Exec(ctx, sql, id); err != nil {
			return err
		}
	}
	if _, err := tx.Exec(ctx, `
DELETE FROM project_blob pb USING blob b
WHERE pb.blob_id = b.id AND pb.project_id = $1
  AND b.digest IN (SELECT digest_blob FROM artifact_blob WHERE digest_af = $2)
  AND NOT EXISTS (SELECT 1 FROM artifact a JOIN artifact_blob ab ON a.digest = ab.digest_af
                  WHERE a.project_id = $1 AND ab.digest_blob = b.digest)`, projectID, dg); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `
INSERT INTO artifact_trash (media_type, manifest_media_type, repository_name, digest, creation_time)
VALUES ($1, $2, $3, $4, LOCALTIMESTAMP) ON CONFLICT DO NOTHING`, mt, mmt, repo, dg); err != nil {
		return err
	}
	// Harbor's quota follows the project_blob change.
	_, err = tx.Exec(ctx, `
UPDATE quota_usage SET used = jsonb_set(used, '{storage}', to_jsonb((
  SELECT COALESCE(SUM(b.size), 0)::bigint FROM blob b JOIN project_blob pb ON b.id = pb.blob_id AND pb.project_id = $1
  WHERE b.content_type <> $2))), version = version + 1
WHERE reference = 'project' AND reference_id = $3`, projectID, MediaTypeForeignLayer, fmt.Sprint(projectID))
	return err
}

// SoftDeleteProject deletes a project as Harbor does: its artifacts are
// deleted (to the trash) and its repository rows removed first (Harbor
// refuses to delete a non-empty project), then the quota rows go and the
// project row is kept with deleted=true and name "<name>#<id>". project_blob
// rows of blobs no artifact referenced (uploads without a manifest) stay:
// Harbor never removes them.
func (h *Harbor) SoftDeleteProject(projectID int64) {
	h.tb.Helper()
	if h.Variant.Harbor2() {
		for {
			// Roots first: artifacts that are neither children nor accessories.
			ids := h.Strings(`
SELECT id::text FROM artifact a WHERE project_id = $1
  AND NOT EXISTS (SELECT 1 FROM artifact_reference r WHERE r.child_id = a.id)
  AND NOT EXISTS (SELECT 1 FROM artifact_accessory x WHERE x.artifact_id = a.id)
ORDER BY id`, projectID)
			if len(ids) == 0 {
				break
			}
			for _, id := range ids {
				var a Artifact
				fmt.Sscan(id, &a.ID)
				a.ProjectID = projectID
				h.DeleteArtifact(a)
			}
		}
		if n := h.Count(`SELECT count(*) FROM artifact WHERE project_id = $1`, projectID); n != 0 {
			h.tb.Fatalf("harbortest: project %d still has %d artifacts", projectID, n)
		}
	} else {
		h.exec(`DELETE FROM artifact WHERE project_id = $1`, projectID)
	}
	h.exec(`DELETE FROM repository WHERE project_id = $1`, projectID)
	h.exec(`DELETE FROM quota WHERE reference = 'project' AND reference_id = $1`, fmt.Sprint(projectID))
	h.exec(`DELETE FROM quota_usage WHERE reference = 'project' AND reference_id = $1`, fmt.Sprint(projectID))
	h.FlagProjectDeleted(projectID)
}

// FlagProjectDeleted only marks the project row deleted (deleted=true, name
// "<name>#<id>"), leaving its rows: legacy data Harbor can hold after bugs or
// manual repairs.
func (h *Harbor) FlagProjectDeleted(projectID int64) {
	h.tb.Helper()
	h.exec(`UPDATE project SET deleted = true, name = name || '#' || project_id WHERE project_id = $1`, projectID)
}

// ------------------------------------------------------------ blob states

// BlobRow is the protocol state of a blob row.
type BlobRow struct {
	Exists     bool
	ID         int64
	Status     string
	Version    int64
	UpdateTime time.Time
}

// Blob reads a blob row.
func (h *Harbor) Blob(d digest.Digest) BlobRow {
	h.tb.Helper()
	ctx, cancel := h.ctx()
	defer cancel()
	var r BlobRow
	sql := `SELECT id, status, version, update_time FROM blob WHERE digest = $1`
	if !h.Variant.Harbor2() {
		sql = `SELECT id, '', 0::bigint, creation_time FROM blob WHERE digest = $1`
	}
	err := h.Pool.QueryRow(ctx, sql, d.String()).Scan(&r.ID, &r.Status, &r.Version, &r.UpdateTime)
	if errors.Is(err, pgx.ErrNoRows) {
		return BlobRow{}
	}
	if err != nil {
		h.tb.Fatalf("harbortest: reading blob %s: %v", d, err)
	}
	r.Exists = true
	return r
}

// StuckDeleting records a blob left in status deleting by a GC killed
// mid-sweep, age ago (no project_blob row: GC only claims unassociated
// blobs).
func (h *Harbor) StuckDeleting(b Blob, age time.Duration) {
	h.tb.Helper()
	h.need2("a blob status")
	h.exec(`
INSERT INTO blob (digest, content_type, size, creation_time, update_time, status, version)
VALUES ($1, $2, $3, LOCALTIMESTAMP - make_interval(secs => $4), LOCALTIMESTAMP - make_interval(secs => $4), 'deleting', 2)`,
		b.Digest.String(), b.MediaType, b.Size, age.Seconds())
}

// Touch is what Harbor's push path does to an existing blob (HEAD or PUT of
// a blob in status none or delete): status none, version+1, update_time now.
// A GC holding the old version then loses the compare-and-set.
func (h *Harbor) Touch(d digest.Digest) {
	h.tb.Helper()
	h.need2("a blob status")
	if h.exec(`
UPDATE blob SET version = version + 1, update_time = LOCALTIMESTAMP, status = 'none'
WHERE digest = $1 AND status IN ('none', 'delete', 'deletefailed')`, d.String()) != 1 {
		h.tb.Fatalf("harbortest: touching blob %s: no row in none/delete/deletefailed", d)
	}
}

// Age moves every recorded time back by d (blob creation and update times,
// push times, trash and project_blob creation), so that what was just
// written is older than a GC window of less than d.
func (h *Harbor) Age(d time.Duration) {
	h.tb.Helper()
	iv := `make_interval(secs => $1)`
	secs := d.Seconds()
	if h.Variant.Harbor2() {
		h.exec(`UPDATE blob SET creation_time = creation_time - `+iv+`, update_time = update_time - `+iv, secs)
		h.exec(`UPDATE artifact_trash SET creation_time = creation_time - `+iv, secs)
		h.exec(`UPDATE tag SET push_time = push_time - `+iv, secs)
	} else {
		h.exec(`UPDATE blob SET creation_time = creation_time - `+iv, secs)
		h.exec(`UPDATE artifact SET creation_time = creation_time - `+iv, secs)
	}
	h.exec(`UPDATE artifact SET push_time = push_time - `+iv, secs)
	h.exec(`UPDATE project_blob SET creation_time = creation_time - `+iv, secs)
}

// SetReadOnly sets Harbor's read_only setting (properties table), as
// System Settings > Repository Read Only does.
func (h *Harbor) SetReadOnly(on bool) {
	h.tb.Helper()
	h.exec(`INSERT INTO properties (k, v) VALUES ('read_only', $1) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v`, fmt.Sprint(on))
}

// SetMigration rewrites schema_migrations (for unknown or dirty versions).
func (h *Harbor) SetMigration(version int, dirty bool) {
	h.tb.Helper()
	h.exec(`UPDATE schema_migrations SET version = $1, dirty = $2`, version, dirty)
}

// JobLog writes a job's log to job_log as jobservice's DB logger does
// (only when that logger is configured; the default loggers write files).
func (h *Harbor) JobLog(jobID, content string) {
	h.tb.Helper()
	h.exec(`INSERT INTO job_log (job_uuid, creation_time, content) VALUES ($1, LOCALTIMESTAMP, $2)`, jobID, content)
}

// RunningGC records a run of Harbor's own GC in progress, as its
// controller writes it (an execution and a task whose extra_attrs is
// empty), and returns the execution id.
func (h *Harbor) RunningGC(jobID string) int64 {
	h.tb.Helper()
	h.need2("the execution history")
	var id int64
	h.queryRow(`
INSERT INTO execution (vendor_type, vendor_id, status, status_message, trigger, extra_attrs, start_time, update_time, revision)
VALUES ('GARBAGE_COLLECTION', -1, 'Running', '', 'SCHEDULE', '{"delete_untagged":false,"dry_run":false,"workers":1,"time_window":2,"redis_url_reg":"redis://redis:6379/1"}',
        LOCALTIMESTAMP, LOCALTIMESTAMP, 0) RETURNING id`, nil, &id)
	h.exec(`
INSERT INTO task (execution_id, job_id, status, status_code, status_revision, status_message, run_count, extra_attrs,
                  creation_time, start_time, update_time, vendor_type)
VALUES ($1, $2, 'Running', 2, 0, '', 1, '{}', LOCALTIMESTAMP, LOCALTIMESTAMP, LOCALTIMESTAMP, 'GARBAGE_COLLECTION')`, id, jobID)
	return id
}

// GarbageBlobs records n blob rows no artifact or project uses, older than
// a window of less than 3 hours: candidates of any GC.
func (h *Harbor) GarbageBlobs(n int) {
	h.tb.Helper()
	h.need2("a blob status")
	h.exec(`
INSERT INTO blob (digest, content_type, size, creation_time, update_time, status, version)
SELECT 'sha256:' || encode(sha256(('garbage ' || i)::bytea), 'hex'), $2, i,
       LOCALTIMESTAMP - interval '3 hours', LOCALTIMESTAMP - interval '3 hours', 'none', 0
FROM generate_series(1, $1) AS i`, n, MediaTypeOCILayer)
}

// FailClaimsFrom makes every change of a blob row with id >= from to status
// delete fail, as a statement timeout or a failover would mid-claim.
func (h *Harbor) FailClaimsFrom(from int64) {
	h.tb.Helper()
	h.exec(fmt.Sprintf(`
CREATE FUNCTION fail_blob_claim() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.id >= %d AND NEW.status = 'delete' THEN RAISE EXCEPTION 'injected failure on blob %%', NEW.id; END IF;
  RETURN NEW;
END $$`, from))
	h.exec(`CREATE TRIGGER fail_blob_claim BEFORE UPDATE ON blob FOR EACH ROW EXECUTE FUNCTION fail_blob_claim()`)
}
