package harbordb

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/opencontainers/go-digest"
)

// Blob statuses (src/pkg/blob/models/blob.go). The schemas without a status
// (Harbor 1.x, 2.0) report "".
const (
	StatusNone         = "none"
	StatusDelete       = "delete"
	StatusDeleting     = "deleting"
	StatusDeleteFailed = "deletefailed"
)

// MediaTypeForeignLayer is a layer Harbor records but never stores; it is
// excluded from quota and never deleted from storage.
const MediaTypeForeignLayer = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

// Project is a project row.
type Project struct {
	ID      int64
	Name    string
	Deleted bool // soft-deleted: Harbor keeps the row with deleted=true
}

// Repository is a repository row.
type Repository struct {
	ID        int64
	ProjectID int64
	Name      string // full name, "project/repo"
}

// Artifact is an artifact (for Harbor 1.x: the tag rows of one repository
// and digest, merged).
type Artifact struct {
	ID                int64
	ProjectID         int64
	RepositoryID      int64 // 0 when unknown (Harbor 1.x without a repository row)
	Repo              string
	Digest            digest.Digest
	MediaType         string // config media type (1.x: the kind, e.g. "Image")
	ManifestMediaType string
	PushTime          time.Time // zero when NULL
	Tags              []string  // sorted
	IsChild           bool      // referenced by an index (artifact_reference.child_id)
	IsAccessory       bool      // an accessory of another artifact (artifact_accessory.artifact_id)
}

// Blob is a blob row.
type Blob struct {
	ID           int64
	Digest       digest.Digest
	Size         int64
	ContentType  string
	Status       string // "" on schemas without status
	Version      int64
	UpdateTime   time.Time // creation_time on schemas without update_time
	CreationTime time.Time
}

// IsManifest reports whether Harbor counts the blob as a manifest
// (Blob.IsManifest in src/pkg/blob/models/blob.go).
func (b Blob) IsManifest() bool {
	switch b.ContentType {
	case "application/vnd.docker.distribution.manifest.v2+json",
		"application/vnd.docker.distribution.manifest.list.v2+json",
		"application/vnd.docker.distribution.manifest.v1+json",
		"application/vnd.docker.distribution.manifest.v1+prettyjws",
		"application/vnd.oci.image.manifest.v1+json",
		"application/vnd.oci.image.index.v1+json":
		return true
	}
	return false
}

// IsForeignLayer reports whether the blob is a foreign layer (never stored).
func (b Blob) IsForeignLayer() bool { return b.ContentType == MediaTypeForeignLayer }

// Trash is an artifact_trash row: a manifest Harbor deleted from a repository.
type Trash struct {
	ID                int64
	Repo              string
	Digest            digest.Digest
	MediaType         string
	ManifestMediaType string
	CreationTime      time.Time
}

// Quota is a project's storage usage as recorded and as Harbor would compute
// it now.
type Quota struct {
	ProjectID int64
	Used      int64 // quota_usage.used->'storage'
	Computed  int64 // Harbor's formula over project_blob and blob (1.x: artifact_blob), foreign layers excluded
	Version   int64 // quota_usage.version (0 before 2.4)
}

// Drift is Used - Computed.
func (q Quota) Drift() int64 { return q.Used - q.Computed }

// Snapshot is a consistent view of what Harbor's GC reads.
type Snapshot struct {
	Now time.Time // the database clock (UTC) at the snapshot
	// Taken is this host's clock just before the snapshot began. Storage
	// mtimes are judged against it, not against the time of the walk: a
	// link written after it may belong to an artifact the snapshot does not
	// have yet.
	Taken        time.Time
	Schema       Schema
	Projects     map[int64]Project
	Repositories map[string]Repository // by full name
	Artifacts    []Artifact            // ordered by ID
	// Live holds every digest Harbor needs (see the package comment).
	Live map[digest.Digest]struct{}
	// ArtifactBlobs maps each live artifact's digest to its artifact_blob
	// digests, and SystemArtifacts lists system_artifact digests: Live is
	// their union, and --delete-untagged recomputes it without the
	// artifacts it collects.
	ArtifactBlobs   map[digest.Digest][]digest.Digest
	SystemArtifacts []digest.Digest
	// Blobs holds every blob row.
	Blobs map[digest.Digest]Blob
	// Trash holds every artifact_trash row (including re-pushed ones).
	Trash  []Trash
	Quotas []Quota // ordered by project ID
	// Window is the window passed to Snapshot; Cutoff = Now - Window.
	Window time.Duration
}

// Cutoff is the time before which a blob row is old enough to collect.
func (s *Snapshot) Cutoff() time.Time { return s.Now.Add(-s.Window) }

// Collectable reports whether Harbor's protocol allows b to be claimed: not
// live, older than the window, and (with a status) none, delete or
// deletefailed.
func (s *Snapshot) Collectable(b Blob) bool {
	if _, live := s.Live[b.Digest]; live {
		return false
	}
	if b.UpdateTime.After(s.Cutoff()) {
		return false
	}
	return Claimable(b.Status)
}

// Claimable reports whether a collector may claim a row in this status
// (none, delete or deletefailed; "" on schemas without a status). A row in
// deleting is held by another collector.
func Claimable(status string) bool {
	switch status {
	case "", StatusNone, StatusDelete, StatusDeleteFailed:
		return true
	}
	return false
}

// Snapshot reads everything in one REPEATABLE READ READ ONLY transaction. The
// window is recorded for Cutoff and Collectable; nothing is filtered by it.
//
// Inside that transaction, before anything is read, it checks again that the
// server is the primary (a pool may have reconnected elsewhere since Open):
// not in recovery (ErrStandby) and not a logical replica of another database
// (ErrSubscriber). After reading the clock it refuses timestamps Harbor wrote
// in the future (ErrTimeAhead).
func (db *DB) Snapshot(ctx context.Context, window time.Duration) (*Snapshot, error) {
	return db.read(ctx, "snapshot", window, []readStep{
		{"reading projects", readProjects},
		{"reading repositories", readRepositories},
		{"reading artifacts", readArtifacts},
		{"reading live digests (artifact_blob of artifacts in live projects)", readLive},
		{"reading system artifacts", readSystemArtifacts},
		{"reading the blobs of each artifact", readArtifactBlobs},
		{"reading blobs", readBlobs},
		{"reading the artifact trash", readTrash},
		{"reading quotas", readQuotas},
	})
}

// Artifacts reads the artifacts again, with what liveness needs of them
// (projects, artifact_blob, system artifacts), in a snapshot of their own:
// gc reads them after the walk, so that an artifact pushed while the walk
// ran is a root.
func (db *DB) Artifacts(ctx context.Context, window time.Duration) (*Snapshot, error) {
	return db.read(ctx, "reading the artifacts again", window, []readStep{
		{"reading projects", readProjects},
		{"reading artifacts", readArtifacts},
		{"reading live digests (artifact_blob of artifacts in live projects)", readLive},
		{"reading system artifacts", readSystemArtifacts},
		{"reading the blobs of each artifact", readArtifactBlobs},
	})
}

type readStep struct {
	purpose string
	run     func(context.Context, pgx.Tx, *Snapshot) error
}

// read runs steps in one REPEATABLE READ READ ONLY transaction, after the
// checks every read of liveness needs.
func (db *DB) read(ctx context.Context, what string, window time.Duration, steps []readStep) (*Snapshot, error) {
	taken := time.Now()
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, db.fail(what+": beginning a read-only transaction", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only

	s := &Snapshot{
		Schema:        db.schema,
		Window:        window,
		Taken:         taken,
		Projects:      map[int64]Project{},
		Repositories:  map[string]Repository{},
		Live:          map[digest.Digest]struct{}{},
		ArtifactBlobs: map[digest.Digest][]digest.Digest{},
		Blobs:         map[digest.Digest]Blob{},
	}
	checks := []readStep{
		{"checking that the database is the primary", checkPrimary},
		{"reading the database clock", readNow},
		{"checking Harbor's timestamps against the database clock", checkTimesAhead},
	}
	for _, st := range append(checks, steps...) {
		if err := st.run(ctx, tx, s); err != nil {
			if isRefusal(err) {
				return nil, fmt.Errorf("harbordb: %s: %s: %w", db.target, what, err)
			}
			return nil, db.fail(what+": "+st.purpose, err)
		}
	}
	return s, nil
}

// checkPrimary refuses a standby and a logical replica, on the snapshot's
// own connection.
func checkPrimary(ctx context.Context, tx pgx.Tx, _ *Snapshot) error {
	var inRecovery bool
	if err := tx.QueryRow(ctx, `SELECT pg_is_in_recovery()`).Scan(&inRecovery); err != nil {
		return err
	}
	if inRecovery {
		return ErrStandby
	}
	// pg_stat_subscription lists the whole cluster's subscriptions; those
	// of this database make it a subscriber.
	rows, _ := tx.Query(ctx, `
SELECT DISTINCT s.subname FROM pg_stat_subscription s JOIN pg_subscription p ON p.oid = s.subid
WHERE p.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()) ORDER BY 1`)
	subs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	if len(subs) > 0 {
		return fmt.Errorf("%w (subscription %s)", ErrSubscriber, strings.Join(subs, ", "))
	}
	return nil
}

// minTimeTolerance: Harbor's columns hold microseconds of another host's
// clock; a few seconds of disagreement is measurement, not a time zone.
const minTimeTolerance = 5 * time.Second

// timeTolerance is how far ahead of the database clock a Harbor timestamp
// may lie: a tenth of the window, and at least a few seconds (the storage
// clock check tolerates as much).
func timeTolerance(window time.Duration) time.Duration {
	return max(minTimeTolerance, window/10)
}

// checkTimesAhead refuses a database whose window columns lie in the
// future: harbor-core writes them from its own clock, in its own time zone,
// without a zone, so a core running east of UTC (or fast) shifts them
// forward. (West of UTC they shift back, which no check can tell from an
// old row: harbor-core must run in UTC.)
func checkTimesAhead(ctx context.Context, tx pgx.Tx, s *Snapshot) error {
	tolerance := timeTolerance(s.Window)
	type column struct{ table, what, sql string }
	columns := []column{{"artifact", "push_time", `SELECT repository_name || '@' || digest, push_time FROM artifact WHERE push_time > LOCALTIMESTAMP + make_interval(secs => $1) ORDER BY push_time DESC LIMIT 1`}}
	if s.Schema.Harbor1 {
		columns[0].sql = `SELECT repo || '@' || digest, push_time FROM artifact WHERE push_time > LOCALTIMESTAMP + make_interval(secs => $1) ORDER BY push_time DESC LIMIT 1`
	}
	if s.Schema.HasBlobStatus() {
		columns = append(columns, column{"blob", "update_time", `SELECT digest, update_time FROM blob WHERE update_time > LOCALTIMESTAMP + make_interval(secs => $1) ORDER BY update_time DESC LIMIT 1`})
	}
	for _, c := range columns {
		var (
			name string
			at   time.Time
		)
		// LOCALTIMESTAMP is the transaction's start: Now.
		err := tx.QueryRow(ctx, c.sql, tolerance.Seconds()).Scan(&name, &at)
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return err
		}
		return fmt.Errorf("%w: %s %s has %s %s, %s after the database clock (%s; tolerated: %s): harbor-core must run in UTC with a synchronised clock",
			ErrTimeAhead, c.table, name, c.what, at.Format("2006-01-02 15:04:05"), at.Sub(s.Now).Round(time.Second),
			s.Now.Format("2006-01-02 15:04:05 UTC"), tolerance)
	}
	return nil
}

func readNow(ctx context.Context, tx pgx.Tx, s *Snapshot) error {
	// LOCALTIMESTAMP is the transaction's start in the session zone (UTC),
	// the same representation as Harbor's timestamp columns.
	return tx.QueryRow(ctx, `SELECT LOCALTIMESTAMP`).Scan(&s.Now)
}

func readProjects(ctx context.Context, tx pgx.Tx, s *Snapshot) error {
	rows, _ := tx.Query(ctx, `SELECT project_id, name, deleted FROM project`)
	var p Project
	_, err := pgx.ForEachRow(rows, []any{&p.ID, &p.Name, &p.Deleted}, func() error {
		s.Projects[p.ID] = p
		return nil
	})
	return err
}

func readRepositories(ctx context.Context, tx pgx.Tx, s *Snapshot) error {
	rows, _ := tx.Query(ctx, `SELECT repository_id, project_id, name FROM repository`)
	var r Repository
	_, err := pgx.ForEachRow(rows, []any{&r.ID, &r.ProjectID, &r.Name}, func() error {
		s.Repositories[r.Name] = r
		return nil
	})
	return err
}

func readArtifacts(ctx context.Context, tx pgx.Tx, s *Snapshot) error {
	if s.Schema.Harbor1 {
		return readArtifactsHarbor1(ctx, tx, s)
	}
	accessory := `false`
	if s.Schema.HasAccessories() {
		accessory = `EXISTS (SELECT 1 FROM artifact_accessory x WHERE x.artifact_id = a.id)`
	}
	rows, _ := tx.Query(ctx, `
SELECT a.id, a.project_id, a.repository_id, a.repository_name, a.digest, a.media_type, a.manifest_media_type, a.push_time,
       COALESCE((SELECT array_agg(t.name ORDER BY t.name) FROM tag t WHERE t.artifact_id = a.id), '{}'),
       EXISTS (SELECT 1 FROM artifact_reference r WHERE r.child_id = a.id),
       `+accessory+`
FROM artifact a ORDER BY a.id`)
	var (
		a        Artifact
		dg       string
		pushTime *time.Time
	)
	_, err := pgx.ForEachRow(rows, []any{&a.ID, &a.ProjectID, &a.RepositoryID, &a.Repo, &dg, &a.MediaType,
		&a.ManifestMediaType, &pushTime, &a.Tags, &a.IsChild, &a.IsAccessory}, func() error {
		d, err := parseDigest("artifact", a.ID, dg)
		if err != nil {
			return err
		}
		a.Digest = d
		a.PushTime = timeOrZero(pushTime)
		s.Artifacts = append(s.Artifacts, a)
		a.Tags = nil // a fresh slice for the next row
		return nil
	})
	return err
}

// readArtifactsHarbor1 merges 1.x's per-tag rows into one Artifact per
// repository and digest.
func readArtifactsHarbor1(ctx context.Context, tx pgx.Tx, s *Snapshot) error {
	rows, _ := tx.Query(ctx, `
SELECT a.id, a.project_id, a.repo, a.tag, a.digest, a.kind, a.push_time, COALESCE(b.content_type, '')
FROM artifact a LEFT JOIN blob b ON b.digest = a.digest
ORDER BY a.id`)
	type key struct {
		repo string
		dg   digest.Digest
	}
	index := map[key]int{}
	var (
		id, projectID          int64
		repo, tag, dg, kind, m string
		pushTime               *time.Time
	)
	_, err := pgx.ForEachRow(rows, []any{&id, &projectID, &repo, &tag, &dg, &kind, &pushTime, &m}, func() error {
		d, err := parseDigest("artifact", id, dg)
		if err != nil {
			return err
		}
		k := key{repo, d}
		if i, ok := index[k]; ok {
			a := &s.Artifacts[i]
			a.Tags = append(a.Tags, tag)
			if pt := timeOrZero(pushTime); pt.After(a.PushTime) {
				a.PushTime = pt
			}
			return nil
		}
		index[k] = len(s.Artifacts)
		s.Artifacts = append(s.Artifacts, Artifact{
			ID: id, ProjectID: projectID, RepositoryID: s.Repositories[repo].ID, Repo: repo, Digest: d,
			MediaType: kind, ManifestMediaType: m, PushTime: timeOrZero(pushTime), Tags: []string{tag},
		})
		return nil
	})
	for i := range s.Artifacts {
		slices.Sort(s.Artifacts[i].Tags)
	}
	return err
}

// liveProject is true for an artifact a whose project is not soft-deleted
// (a missing project row counts as live).
const liveProject = `NOT EXISTS (SELECT 1 FROM project p WHERE p.project_id = a.project_id AND p.deleted)`

func readLive(ctx context.Context, tx pgx.Tx, s *Snapshot) error {
	rows, _ := tx.Query(ctx, `
SELECT ab.digest_blob FROM artifact_blob ab
WHERE EXISTS (SELECT 1 FROM artifact a WHERE a.digest = ab.digest_af AND `+liveProject+`)
UNION
SELECT a.digest FROM artifact a WHERE `+liveProject)
	var dg string
	_, err := pgx.ForEachRow(rows, []any{&dg}, func() error {
		d, err := parseDigest("artifact_blob.digest_blob", 0, dg)
		if err != nil {
			return err
		}
		s.Live[d] = struct{}{}
		return nil
	})
	return err
}

func readArtifactBlobs(ctx context.Context, tx pgx.Tx, s *Snapshot) error {
	rows, _ := tx.Query(ctx, `
SELECT ab.digest_af, ab.digest_blob FROM artifact_blob ab
WHERE EXISTS (SELECT 1 FROM artifact a WHERE a.digest = ab.digest_af AND `+liveProject+`)`)
	var af, blob string
	_, err := pgx.ForEachRow(rows, []any{&af, &blob}, func() error {
		a, err := parseDigest("artifact_blob.digest_af", 0, af)
		if err != nil {
			return err
		}
		b, err := parseDigest("artifact_blob.digest_blob", 0, blob)
		if err != nil {
			return err
		}
		s.ArtifactBlobs[a] = append(s.ArtifactBlobs[a], b)
		return nil
	})
	return err
}

func readSystemArtifacts(ctx context.Context, tx pgx.Tx, s *Snapshot) error {
	if !s.Schema.HasSystemArtifacts() {
		return nil
	}
	rows, _ := tx.Query(ctx, `SELECT id, digest FROM system_artifact`)
	var (
		id int64
		dg string
	)
	_, err := pgx.ForEachRow(rows, []any{&id, &dg}, func() error {
		d, err := parseDigest("system_artifact", id, dg)
		if err != nil {
			return err
		}
		s.Live[d] = struct{}{}
		s.SystemArtifacts = append(s.SystemArtifacts, d)
		return nil
	})
	return err
}

func readBlobs(ctx context.Context, tx pgx.Tx, s *Snapshot) error {
	q := `SELECT id, digest, size, content_type, '', 0::bigint,
	             COALESCE(creation_time, LOCALTIMESTAMP), COALESCE(creation_time, LOCALTIMESTAMP) FROM blob`
	if s.Schema.HasBlobStatus() {
		// A NULL update_time counts as now: Harbor's window test never
		// selects such a row, so neither may we.
		q = `SELECT id, digest, size, content_type, COALESCE(status, 'none'), COALESCE(version, 0),
		            COALESCE(update_time, LOCALTIMESTAMP), COALESCE(creation_time, LOCALTIMESTAMP) FROM blob`
	}
	rows, _ := tx.Query(ctx, q)
	var (
		b  Blob
		dg string
	)
	_, err := pgx.ForEachRow(rows, []any{&b.ID, &dg, &b.Size, &b.ContentType, &b.Status, &b.Version, &b.UpdateTime, &b.CreationTime}, func() error {
		d, err := parseDigest("blob", b.ID, dg)
		if err != nil {
			return err
		}
		b.Digest = d
		s.Blobs[d] = b
		return nil
	})
	return err
}

func readTrash(ctx context.Context, tx pgx.Tx, s *Snapshot) error {
	if !s.Schema.HasTrash() {
		return nil
	}
	rows, _ := tx.Query(ctx, `
SELECT id, repository_name, digest, media_type, manifest_media_type, COALESCE(creation_time, LOCALTIMESTAMP)
FROM artifact_trash ORDER BY id`)
	var (
		t  Trash
		dg string
	)
	_, err := pgx.ForEachRow(rows, []any{&t.ID, &t.Repo, &dg, &t.MediaType, &t.ManifestMediaType, &t.CreationTime}, func() error {
		d, err := parseDigest("artifact_trash", t.ID, dg)
		if err != nil {
			return err
		}
		t.Digest = d
		s.Trash = append(s.Trash, t)
		return nil
	})
	return err
}

func readQuotas(ctx context.Context, tx pgx.Tx, s *Snapshot) error {
	version := `0::bigint`
	if s.Schema.hasQuotaVersion() {
		version = `COALESCE(qu.version, 0)`
	}
	rows, _ := tx.Query(ctx, `
SELECT qu.reference_id, COALESCE((qu.used->>'storage')::numeric, 0)::bigint, `+version+`
FROM quota_usage qu WHERE qu.reference = 'project'`)
	var (
		ref     string
		q       Quota
		byProjs []Quota
	)
	_, err := pgx.ForEachRow(rows, []any{&ref, &q.Used, &q.Version}, func() error {
		id, err := strconv.ParseInt(ref, 10, 64)
		if err != nil {
			return fmt.Errorf("quota_usage.reference_id %q is not a project id", ref)
		}
		q.ProjectID = id
		byProjs = append(byProjs, q)
		return nil
	})
	if err != nil {
		return err
	}
	for i := range byProjs {
		if byProjs[i].Computed, err = computeUsage(ctx, tx, s.Schema, byProjs[i].ProjectID); err != nil {
			return err
		}
	}
	slices.SortFunc(byProjs, func(a, b Quota) int { return cmp.Compare(a.ProjectID, b.ProjectID) })
	s.Quotas = byProjs
	return nil
}

// computeUsage is Harbor's storage usage of a project: 2.x sums the blobs
// associated with it through project_blob (CalculateTotalSizeByProject),
// 1.9/1.10 the distinct blobs its artifacts reference (ensureQuota); foreign
// layers are excluded in both.
func computeUsage(ctx context.Context, q querier, schema Schema, projectID int64) (int64, error) {
	sql := `SELECT COALESCE(SUM(b.size), 0)::bigint FROM blob b JOIN project_blob pb ON b.id = pb.blob_id AND pb.project_id = $1
	        WHERE b.content_type <> $2`
	if schema.Harbor1 {
		sql = `SELECT COALESCE(SUM(b.size), 0)::bigint FROM blob b
		       WHERE b.content_type <> $2 AND b.digest IN (
		         SELECT ab.digest_blob FROM artifact a JOIN artifact_blob ab ON ab.digest_af = a.digest WHERE a.project_id = $1)`
	}
	var n int64
	if err := q.QueryRow(ctx, sql, projectID, MediaTypeForeignLayer).Scan(&n); err != nil {
		return 0, fmt.Errorf("computing the storage usage of project %d: %w", projectID, err)
	}
	return n, nil
}

func parseDigest(table string, id int64, s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	if err != nil {
		if id != 0 {
			return "", fmt.Errorf("%s row %d has an invalid digest %q: %w", table, id, s, err)
		}
		return "", fmt.Errorf("%s holds an invalid digest %q: %w", table, s, err)
	}
	return d, nil
}

func timeOrZero(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}
