// Package harbordb is regsweep's access to Harbor's PostgreSQL database: the
// liveness snapshot a Harbor-mode collection marks from, Harbor's own blob
// deletion protocol, the database side of a sweep, the GC history row and the
// registry's Redis cache purge.
//
// It owns every SQL statement regsweep runs against Harbor and the Redis
// keys it purges. It may not read registry storage or decide what a sweep
// deletes: harborgc asks it, and gc decides.
//
// # Reading
//
// Open sets the session time zone to UTC (every Harbor timestamp column is
// "timestamp without time zone" holding UTC), refuses a hot standby
// (ErrStandby: a standby may cancel queries or lag, which made Harbor's own GC
// delete live blobs, goharbor/harbor#15445) and detects the schema from
// golang-migrate's schema_migrations table. Snapshot reads everything in one
// REPEATABLE READ READ ONLY transaction, so a dry run cannot change a status,
// a version or a row, and any failing query aborts the snapshot with an error
// naming what the query was for. Inside that transaction it checks the server
// again (ErrStandby; ErrSubscriber for a logical replica) and refuses
// timestamps Harbor wrote in the future (ErrTimeAhead: harbor-core not in
// UTC). Artifacts reads the artifacts again the same way, after the walk.
//
// Liveness (Snapshot.Live) is the set of digests Harbor needs: every
// artifact_blob.digest_blob of an artifact in a project that is not
// soft-deleted, every such artifact's own digest (old rows may lack the
// self row of artifact_blob) and every system_artifact digest. An artifact
// whose project row is missing counts as live.
//
// # Schema families
//
//   - Harbor 2.x, migrations 30 to 190 (2.0 to 2.16 dev, including 2.15's
//     tagless storage, which changed nothing in the database). Features follow
//     the migration that introduced them: blob status and version from 40
//     (2.1), the GC execution history from 50 (2.2), quota_usage.version from
//     70, artifact_accessory from 80, system_artifact from 90.
//   - Harbor 1.9 and 1.10, migrations 10 to 15: artifact rows are per tag, blob
//     rows have no status, version or update_time, and there is no trash,
//     reference, accessory or execution table.
//
// Anything else, or a dirty migration, is an *UnknownSchemaError.
//
// # Deleting without a blob status (Harbor 1.9/1.10 and 2.0)
//
// Without blob.status and blob.version there is no compare-and-set that a
// concurrent push would lose, so nothing can stop a push from reusing a blob
// between the check and the delete. Harbor's own GC of those versions first
// set Harbor read-only. ClaimBlobs does the same check: unless the
// configuration row properties.read_only is 'true' it returns
// ErrNotReadOnly and claims nothing; when Harbor is read-only it re-checks,
// in one transaction, that each blob is still not referenced and older than
// the window by creation_time, and writes nothing (there is no status to
// write). ReleaseFailed, RecoverStuck and RemoveRowsWithoutData have nothing
// to do there. Finish
// deletes the blob rows of swept blobs (Harbor 1.x never did, so its blob
// table only grew) after the same re-check. For Harbor 1.x the storage tags
// still mean something, so the caller should keep what they reference too.
//
// # Writing
//
// The write methods follow Harbor's GC (jobservice/job/impl/gc): ClaimBlobs
// moves none|delete|deletefailed -> delete -> deleting, each step a
// compare-and-set on version; ReleaseFailed moves deleting -> deletefailed;
// Finish deletes the rows of swept blobs and manifests and recomputes
// quota_usage with Harbor's formula; PruneProjectBlobs drops project_blob
// rows no artifact of their project uses, as Harbor's GC does first;
// LinksInUse answers, just before links are deleted, whether Harbor needs
// them now or a push touched their blobs; RecoverStuck resets blobs left in
// deleting by a killed run whose data is still in storage, which Harbor never
// does; RemoveRowsWithoutData deletes garbage rows whose data a walk did not
// find, as Harbor's GC does. Every status change bumps
// version and update_time as Harbor's does, so a concurrent push (which
// touches the row) makes the claim fail and the blob is kept.
//
// # Secrets
//
// No error, String or log produced here contains the database password: errors
// from the driver are rewritten with Config.Secrets replaced, and Redacted
// gives the URL to show.
package harbordb
