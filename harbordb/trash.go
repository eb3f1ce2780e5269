package harbordb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// errSkip aborts one artifact's transaction without an error: it changed
// since the snapshot and is no longer a candidate.
var errSkip = errors.New("skip")

// TrashArtifacts deletes untagged artifacts (--delete-untagged) through the
// database path of Harbor's artifact deletion (controller/artifact
// deleteDeeply), one transaction per artifact as Harbor does: hard accessories
// (every type but "base") and children no other index references and no tag
// names are deleted with it, then references, tags, label references and the
// artifact row; project_blob rows no remaining artifact of the project needs
// are removed, an artifact_trash row is written for each deleted artifact and
// the project's quota_usage is recomputed.
//
// An artifact is skipped (neither trashed nor an error) when, locked in its
// transaction, it is gone, has a tag, is referenced by an index, is an
// accessory, or no longer has the snapshot's digest. trashed lists every
// artifact deleted, cascaded ones included. A failing artifact is rolled back
// and named in the returned error; the others still proceed.
//
// Harbor's deletion also fires events (webhooks, audit log, replication,
// scan-report cleanup) and invalidates core's cache; a database tool cannot.
// Not available on Harbor 1.x, whose artifact rows are tags.
func (db *DB) TrashArtifacts(ctx context.Context, arts []Artifact) (trashed []Artifact, err error) {
	if !db.schema.HasTrash() {
		return nil, fmt.Errorf("harbordb: deleting untagged artifacts needs Harbor 2.x; %s has tag-level artifacts", db.schema)
	}
	var errs []error
	for _, a := range arts {
		var deleted []Artifact
		err := db.inTx(ctx, fmt.Sprintf("deleting untagged artifact %s@%s", a.Repo, a.Digest), func(tx pgx.Tx) error {
			d := &deleter{db: db, tx: tx}
			if err := d.precheck(ctx, a); err != nil {
				return err
			}
			if err := d.deleteDeeply(ctx, a.ID, true, false); err != nil {
				return err
			}
			// The project's usage follows its project_blob rows at once.
			if _, err := recomputeQuota(ctx, tx, db.schema, a.ProjectID); err != nil {
				return db.fail(fmt.Sprintf("recomputing the quota of project %d", a.ProjectID), err)
			}
			deleted = d.deleted
			return nil
		})
		switch {
		case errors.Is(err, errSkip):
		case err != nil:
			errs = append(errs, err)
		default:
			trashed = append(trashed, deleted...)
		}
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
	}
	return trashed, errors.Join(errs...)
}

type deleter struct {
	db      *DB
	tx      pgx.Tx
	deleted []Artifact
}

// precheck locks the root artifact and checks Harbor's untagged rule again.
func (d *deleter) precheck(ctx context.Context, a Artifact) error {
	var dg string
	var tagged, child, accessory bool
	accessorySQL := `false`
	if d.db.schema.HasAccessories() {
		accessorySQL = `EXISTS (SELECT 1 FROM artifact_accessory x WHERE x.artifact_id = a.id)`
	}
	err := d.tx.QueryRow(ctx, `
SELECT a.digest,
       EXISTS (SELECT 1 FROM tag t WHERE t.artifact_id = a.id),
       EXISTS (SELECT 1 FROM artifact_reference r WHERE r.child_id = a.id),
       `+accessorySQL+`
FROM artifact a WHERE a.id = $1 FOR UPDATE`, a.ID).Scan(&dg, &tagged, &child, &accessory)
	if errors.Is(err, pgx.ErrNoRows) {
		return errSkip
	}
	if err != nil {
		return d.db.fail(fmt.Sprintf("locking artifact %d (%s@%s)", a.ID, a.Repo, a.Digest), err)
	}
	if dg != a.Digest.String() || tagged || child || accessory {
		return errSkip
	}
	return nil
}

// deleteDeeply follows Harbor's controller/artifact deleteDeeply.
func (d *deleter) deleteDeeply(ctx context.Context, id int64, isRoot, isAccessory bool) error {
	fail := func(what string, err error) error {
		return d.db.fail(fmt.Sprintf("%s of artifact %d", what, id), err)
	}
	var (
		a        Artifact
		dg       string
		pushTime *time.Time
		tagCount int
	)
	err := d.tx.QueryRow(ctx, `
SELECT a.id, a.project_id, a.repository_id, a.repository_name, a.digest, a.media_type, a.manifest_media_type, a.push_time,
       (SELECT count(*) FROM tag t WHERE t.artifact_id = a.id)
FROM artifact a WHERE a.id = $1 FOR UPDATE`, id).Scan(&a.ID, &a.ProjectID, &a.RepositoryID, &a.Repo, &dg, &a.MediaType,
		&a.ManifestMediaType, &pushTime, &tagCount)
	if errors.Is(err, pgx.ErrNoRows) && !isRoot {
		return nil
	}
	if err != nil {
		return fail("reading", err)
	}
	if a.Digest, err = parseDigest("artifact", a.ID, dg); err != nil {
		return fail("reading", err)
	}
	a.PushTime = timeOrZero(pushTime)
	a.IsAccessory = isAccessory

	// A child some tag names, or that another index references, stays.
	if !isRoot && tagCount > 0 {
		return nil
	}
	var parents int
	if err := d.tx.QueryRow(ctx, `SELECT count(*) FROM artifact_reference WHERE child_id = $1`, id).Scan(&parents); err != nil {
		return fail("counting parents", err)
	}
	if parents > 0 {
		if isRoot {
			return fmt.Errorf("harbordb: artifact %d (%s@%s) is referenced by an index", id, a.Repo, a.Digest)
		}
		return nil
	}

	if d.db.schema.HasAccessories() {
		if isAccessory {
			if _, err := d.tx.Exec(ctx, `DELETE FROM artifact_accessory WHERE artifact_id = $1 AND digest = $2`, id, dg); err != nil {
				return fail("deleting the accessory row", err)
			}
		}
		rows, _ := d.tx.Query(ctx, `SELECT artifact_id FROM artifact_accessory WHERE subject_artifact_id = $1 AND type <> 'base' ORDER BY id`, id)
		hard, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return fail("listing accessories", err)
		}
		for _, acc := range hard {
			var accParents int
			if err := d.tx.QueryRow(ctx, `SELECT count(*) FROM artifact_reference WHERE child_id = $1`, acc).Scan(&accParents); err != nil {
				return fail("counting parents of an accessory", err)
			}
			if err := d.deleteDeeply(ctx, acc, accParents == 0, true); err != nil {
				return err
			}
		}
	}

	rows, _ := d.tx.Query(ctx, `SELECT id, child_id FROM artifact_reference WHERE parent_id = $1 ORDER BY id`, id)
	type ref struct{ ID, ChildID int64 }
	refs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[ref])
	if err != nil {
		return fail("listing references", err)
	}
	for _, r := range refs {
		if _, err := d.tx.Exec(ctx, `DELETE FROM artifact_reference WHERE id = $1`, r.ID); err != nil {
			return fail("deleting a reference", err)
		}
		childIsAccessory := false
		if d.db.schema.HasAccessories() {
			if err := d.tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM artifact_accessory WHERE artifact_id = $1)`, r.ChildID).Scan(&childIsAccessory); err != nil {
				return fail("checking a child", err)
			}
		}
		if err := d.deleteDeeply(ctx, r.ChildID, false, childIsAccessory); err != nil {
			return err
		}
	}

	if isRoot {
		rows, _ := d.tx.Query(ctx, `DELETE FROM tag WHERE artifact_id = $1 RETURNING name`, id)
		if a.Tags, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return fail("deleting tags", err)
		}
	}
	if _, err := d.tx.Exec(ctx, `DELETE FROM label_reference WHERE artifact_id = $1`, id); err != nil {
		return fail("deleting label references", err)
	}
	if _, err := d.tx.Exec(ctx, `DELETE FROM artifact_reference WHERE parent_id = $1`, id); err != nil {
		return fail("deleting references", err)
	}
	if _, err := d.tx.Exec(ctx, `DELETE FROM artifact WHERE id = $1`, id); err != nil {
		return fail("deleting the row", err)
	}
	if isRoot {
		if _, err := d.tx.Exec(ctx, `UPDATE repository SET update_time = LOCALTIMESTAMP WHERE repository_id = $1`, a.RepositoryID); err != nil {
			return fail("touching the repository", err)
		}
	}
	// CleanupAssociationsForProject: the artifact's blobs that no remaining
	// artifact of the project references leave the project.
	if _, err := d.tx.Exec(ctx, `
DELETE FROM project_blob pb USING blob b
WHERE pb.blob_id = b.id AND pb.project_id = $1
  AND b.digest IN (SELECT digest_blob FROM artifact_blob WHERE digest_af = $2)
  AND NOT EXISTS (SELECT 1 FROM artifact a JOIN artifact_blob ab ON a.digest = ab.digest_af
                  WHERE a.project_id = $1 AND ab.digest_blob = b.digest)`, a.ProjectID, dg); err != nil {
		return fail("removing project_blob associations", err)
	}
	if _, err := d.tx.Exec(ctx, `
INSERT INTO artifact_trash (media_type, manifest_media_type, repository_name, digest, creation_time)
VALUES ($1, $2, $3, $4, LOCALTIMESTAMP) ON CONFLICT DO NOTHING`, a.MediaType, a.ManifestMediaType, a.Repo, dg); err != nil {
		return fail("writing the artifact_trash row", err)
	}
	d.deleted = append(d.deleted, a)
	return nil
}
