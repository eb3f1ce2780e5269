// Package harbortest builds Harbor databases for tests: the schema of a
// Harbor version (from the column lists in shared/design/harbor.md §3) in a
// throwaway PostgreSQL database, and helpers that write rows the way Harbor's
// push, delete and GC paths write them. Inputs are digests, sizes and media
// types, so they can describe images pushed with crane into a real registry.
//
// Every helper fails the test (tb.Fatalf) on a database error.
package harbortest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/opencontainers/go-digest"
)

// Variant is a Harbor schema version.
type Variant int

const (
	// Latest is the newest 2.x schema (migration 190, 2.16 dev; 2.15's
	// tagless storage writes the same rows).
	Latest Variant = iota
	// Harbor28 is 2.8.0 (migration 110): artifact_accessory with subject
	// digest and repository but no source, artifact without artifact_type,
	// task.status_revision int.
	Harbor28
	// Harbor110 is 1.10 (migration 15): tag-level artifact rows, blob without
	// status, version or update_time, no trash, reference, accessory or
	// execution tables.
	Harbor110
)

// Migration is the schema_migrations version of the variant.
func (v Variant) Migration() int {
	switch v {
	case Harbor28:
		return 110
	case Harbor110:
		return 15
	default:
		return 190
	}
}

func (v Variant) String() string {
	switch v {
	case Harbor28:
		return "Harbor 2.8"
	case Harbor110:
		return "Harbor 1.10"
	default:
		return "Harbor 2.16"
	}
}

// Harbor2 reports whether the variant is a 2.x schema.
func (v Variant) Harbor2() bool { return v != Harbor110 }

// Media types used by Harbor's rows.
const (
	MediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerConfig   = "application/vnd.docker.container.image.v1+json"
	MediaTypeDockerLayer    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaTypeForeignLayer   = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	MediaTypeOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeOCIIndex       = "application/vnd.oci.image.index.v1+json"
	MediaTypeOCIConfig      = "application/vnd.oci.image.config.v1+json"
	MediaTypeOCILayer       = "application/vnd.oci.image.layer.v1.tar+gzip"
	MediaTypeUpload         = "application/octet-stream" // a blob row before its manifest is pushed
	MediaTypeCosignConfig   = "application/vnd.oci.image.config.v1+json"
	MediaTypeCosignLayer    = "application/vnd.dev.cosign.simplesigning.v1+json"
)

// Accessory types (artifact_accessory.type).
const (
	AccessoryCosign   = "signature.cosign"
	AccessoryNotation = "signature.notation"
	AccessorySubject  = "subject.accessory"
	AccessoryBase     = "base" // the only soft (not deleted with its subject) type
)

// Blob describes a blob: digest, size and media type.
type Blob struct {
	Digest    digest.Digest
	Size      int64
	MediaType string
}

// FakeBlob makes a Blob whose digest is derived from seed, for tests that do
// not push to a registry.
func FakeBlob(seed string, size int64, mediaType string) Blob {
	return Blob{Digest: digest.FromString(seed), Size: size, MediaType: mediaType}
}

// Image is a manifest with its config and layers, as pushed.
type Image struct {
	Manifest Blob // MediaType is the manifest media type
	Config   Blob // MediaType is the config media type (artifact.media_type)
	Layers   []Blob
	Tags     []string
}

// FakeImage makes an Image with a config and n layers whose digests derive
// from seed.
func FakeImage(seed string, layers int, tags ...string) Image {
	img := Image{
		Manifest: FakeBlob(seed+"/manifest", 500, MediaTypeOCIManifest),
		Config:   FakeBlob(seed+"/config", 300, MediaTypeOCIConfig),
		Tags:     tags,
	}
	for i := range layers {
		img.Layers = append(img.Layers, FakeBlob(fmt.Sprintf("%s/layer%d", seed, i), int64(1000*(i+1)), MediaTypeOCILayer))
	}
	return img
}

// Blobs lists the image's blobs: manifest, config, layers.
func (img Image) Blobs() []Blob {
	return append([]Blob{img.Manifest, img.Config}, img.Layers...)
}

// Artifact is an artifact row (for Harbor 1.10: the rows of one digest).
type Artifact struct {
	ID                int64
	ProjectID         int64
	RepositoryID      int64
	Repo              string
	Digest            digest.Digest
	MediaType         string
	ManifestMediaType string
}

// Harbor is a Harbor database built for a test.
type Harbor struct {
	Pool    *pgxpool.Pool
	DSN     string
	Variant Variant
	tb      testing.TB
}

// Create builds the variant's schema in the (empty) database dsn names and
// returns it; the pool is closed when the test ends.
func Create(tb testing.TB, dsn string, v Variant) *Harbor {
	tb.Helper()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		tb.Fatalf("harbortest: parsing %s: %v", dsn, err)
	}
	cfg.ConnConfig.RuntimeParams["timezone"] = "UTC"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		tb.Fatalf("harbortest: connecting: %v", err)
	}
	tb.Cleanup(pool.Close)
	h := &Harbor{Pool: pool, DSN: dsn, Variant: v, tb: tb}
	h.exec(ddl(v))
	h.exec(`INSERT INTO schema_migrations (version, dirty) VALUES ($1, false)`, v.Migration())
	return h
}

func (h *Harbor) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), time.Minute)
}

func (h *Harbor) exec(sql string, args ...any) int64 {
	h.tb.Helper()
	ctx, cancel := h.ctx()
	defer cancel()
	tag, err := h.Pool.Exec(ctx, sql, args...)
	if err != nil {
		h.tb.Fatalf("harbortest: %v\n%s", err, sql)
	}
	return tag.RowsAffected()
}

func (h *Harbor) queryRow(sql string, args []any, dest ...any) {
	h.tb.Helper()
	ctx, cancel := h.ctx()
	defer cancel()
	if err := h.Pool.QueryRow(ctx, sql, args...).Scan(dest...); err != nil {
		h.tb.Fatalf("harbortest: %v\n%s", err, sql)
	}
}

// Exec runs a statement and returns the rows affected.
func (h *Harbor) Exec(sql string, args ...any) int64 {
	h.tb.Helper()
	return h.exec(sql, args...)
}

// Count runs a query returning one integer.
func (h *Harbor) Count(sql string, args ...any) int64 {
	h.tb.Helper()
	var n int64
	h.queryRow(sql, args, &n)
	return n
}

// Strings runs a query returning one text column.
func (h *Harbor) Strings(sql string, args ...any) []string {
	h.tb.Helper()
	ctx, cancel := h.ctx()
	defer cancel()
	rows, _ := h.Pool.Query(ctx, sql, args...)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		h.tb.Fatalf("harbortest: %v\n%s", err, sql)
	}
	return out
}

// ---------------------------------------------------------------- projects

// Project creates a project with an unlimited quota and empty usage, as
// Harbor's project creation does, and returns its id.
func (h *Harbor) Project(name string) int64 {
	h.tb.Helper()
	var id int64
	h.queryRow(`INSERT INTO project (owner_id, name) VALUES (1, $1) RETURNING project_id`, []any{name}, &id)
	hard, used := `{"storage": -1}`, `{"storage": 0}`
	if !h.Variant.Harbor2() {
		hard, used = `{"count": -1, "storage": -1}`, `{"count": 0, "storage": 0}`
	}
	h.exec(`INSERT INTO quota (reference, reference_id, hard) VALUES ('project', $1, $2::jsonb)`, fmt.Sprint(id), hard)
	h.exec(`INSERT INTO quota_usage (reference, reference_id, used) VALUES ('project', $1, $2::jsonb)`, fmt.Sprint(id), used)
	return id
}

// ProjectID returns the id of a project by name.
func (h *Harbor) ProjectID(name string) int64 {
	h.tb.Helper()
	return h.Count(`SELECT project_id FROM project WHERE name = $1`, name)
}

// repository returns the ids of the repository row for "project/repo",
// creating it as Harbor does on the first push.
func (h *Harbor) repository(repo string) (projectID, repositoryID int64) {
	h.tb.Helper()
	project, _, ok := strings.Cut(repo, "/")
	if !ok {
		h.tb.Fatalf("harbortest: repository %q has no project part", repo)
	}
	projectID = h.ProjectID(project)
	h.queryRow(`
INSERT INTO repository (name, project_id) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING repository_id`, []any{repo, projectID}, &repositoryID)
	return projectID, repositoryID
}

// ------------------------------------------------------------------- pushes

// ensureBlob writes a blob row as the push path does (Ensure, then Sync
// correcting the content type at the manifest push; an upload of a blob that
// exists changes nothing) and associates it with the project.
func (h *Harbor) ensureBlob(projectID int64, b Blob) {
	h.tb.Helper()
	if h.Variant.Harbor2() {
		h.exec(`
INSERT INTO blob (digest, content_type, size, creation_time, update_time, status, version)
VALUES ($1, $2, $3, LOCALTIMESTAMP, LOCALTIMESTAMP, 'none', 0)
ON CONFLICT (digest) DO UPDATE SET content_type = EXCLUDED.content_type, size = EXCLUDED.size, update_time = LOCALTIMESTAMP
WHERE blob.content_type <> EXCLUDED.content_type AND EXCLUDED.content_type <> 'application/octet-stream'`, b.Digest.String(), b.MediaType, b.Size)
	} else {
		h.exec(`
INSERT INTO blob (digest, content_type, size, creation_time) VALUES ($1, $2, $3, LOCALTIMESTAMP)
ON CONFLICT (digest) DO UPDATE SET content_type = EXCLUDED.content_type, size = EXCLUDED.size
WHERE blob.content_type <> EXCLUDED.content_type AND EXCLUDED.content_type <> 'application/octet-stream'`, b.Digest.String(), b.MediaType, b.Size)
	}
	h.exec(`
INSERT INTO project_blob (project_id, blob_id) SELECT $1, id FROM blob WHERE digest = $2
ON CONFLICT DO NOTHING`, projectID, b.Digest.String())
}

func (h *Harbor) associate(artifactDigest digest.Digest, blobs ...digest.Digest) {
	h.tb.Helper()
	for _, b := range blobs {
		h.exec(`INSERT INTO artifact_blob (digest_af, digest_blob) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
			artifactDigest.String(), b.String())
	}
}

// UploadBlob records a blob pushed to a project without a manifest (an
// abandoned or still running push): a blob row with Harbor's upload content
// type and a project_blob row.
func (h *Harbor) UploadBlob(project string, b Blob) {
	h.tb.Helper()
	b.MediaType = MediaTypeUpload
	h.ensureBlob(h.ProjectID(project), b)
	h.SyncQuota(h.ProjectID(project))
}

// PushImage records an image pushed to repo ("project/name") as Harbor's
// push path does: blob rows for config, layers and manifest with their
// project_blob rows, the artifact, artifact_blob rows for every blob and the
// manifest itself, and its tags. Harbor 1.10 writes one artifact row per tag
// (an untagged 1.10 push writes none).
func (h *Harbor) PushImage(repo string, img Image) Artifact {
	h.tb.Helper()
	projectID, repositoryID := h.repository(repo)
	size := int64(0)
	for _, b := range img.Blobs() {
		h.ensureBlob(projectID, b)
		size += b.Size
	}
	refs := []digest.Digest{img.Manifest.Digest, img.Config.Digest}
	for _, l := range img.Layers {
		refs = append(refs, l.Digest)
	}
	a := h.artifact(projectID, repositoryID, repo, img.Manifest, img.Config.MediaType, size, img.Tags)
	h.associate(img.Manifest.Digest, refs...)
	h.SyncQuota(projectID)
	return a
}

// artifact writes the artifact row(s) and tags.
func (h *Harbor) artifact(projectID, repositoryID int64, repo string, manifest Blob, mediaType string, size int64, tags []string) Artifact {
	h.tb.Helper()
	a := Artifact{ProjectID: projectID, RepositoryID: repositoryID, Repo: repo, Digest: manifest.Digest,
		MediaType: mediaType, ManifestMediaType: manifest.MediaType}
	if !h.Variant.Harbor2() {
		if len(tags) == 0 {
			h.tb.Fatalf("harbortest: Harbor 1.10 records only tagged pushes (%s@%s)", repo, manifest.Digest)
		}
		for _, t := range tags {
			h.queryRow(`
INSERT INTO artifact (project_id, repo, tag, digest, kind, push_time) VALUES ($1, $2, $3, $4, 'Image', LOCALTIMESTAMP)
ON CONFLICT (project_id, repo, tag) DO UPDATE SET digest = EXCLUDED.digest, push_time = EXCLUDED.push_time
RETURNING id`, []any{projectID, repo, t, manifest.Digest.String()}, &a.ID)
		}
		return a
	}
	cols, vals := "", ""
	args := []any{projectID, repo, manifest.Digest.String(), repositoryID, mediaType, manifest.MediaType, size}
	if h.Variant == Latest {
		// OCI 1.1 artifactType, backfilled with the config media type.
		cols, vals = ", artifact_type", ", $8"
		args = append(args, mediaType)
	}
	h.queryRow(`
INSERT INTO artifact (project_id, repository_name, digest, type, push_time, repository_id, media_type, manifest_media_type, size, extra_attrs`+cols+`)
VALUES ($1, $2, $3, 'IMAGE', LOCALTIMESTAMP, $4, $5, $6, $7, '{}'`+vals+`)
ON CONFLICT (repository_id, digest) DO UPDATE SET push_time = EXCLUDED.push_time
RETURNING id`, args, &a.ID)
	for _, t := range tags {
		h.exec(`
INSERT INTO tag (repository_id, artifact_id, name, push_time) VALUES ($1, $2, $3, LOCALTIMESTAMP)
ON CONFLICT (repository_id, name) DO UPDATE SET artifact_id = EXCLUDED.artifact_id, push_time = EXCLUDED.push_time`,
			repositoryID, a.ID, t)
	}
	return a
}

// PushIndex records an index (manifest list) pushed to repo whose children
// were pushed to the same repository first (by digest): the index blob row,
// the artifact, artifact_blob rows for the index and each child manifest,
// and artifact_reference rows. Harbor 2.x only.
func (h *Harbor) PushIndex(repo string, index Blob, tags []string, children ...Artifact) Artifact {
	h.tb.Helper()
	h.need2("an index")
	projectID, repositoryID := h.repository(repo)
	h.ensureBlob(projectID, index)
	a := h.artifact(projectID, repositoryID, repo, index, index.MediaType, index.Size, tags)
	refs := []digest.Digest{index.Digest}
	for _, c := range children {
		refs = append(refs, c.Digest)
		h.exec(`
INSERT INTO artifact_reference (parent_id, child_id, child_digest, platform) VALUES ($1, $2, $3, '{"architecture":"amd64","os":"linux"}')
ON CONFLICT DO NOTHING`, a.ID, c.ID, c.Digest.String())
	}
	h.associate(index.Digest, refs...)
	h.SyncQuota(projectID)
	return a
}

// PushAccessory records an accessory of subject (e.g. a cosign signature,
// pushed to the subject's repository with the tag sha256-<hex>.sig): the
// image as an artifact plus its artifact_accessory row. Harbor 2.x only.
func (h *Harbor) PushAccessory(subject Artifact, acc Image, accessoryType string) Artifact {
	h.tb.Helper()
	h.need2("an accessory")
	a := h.PushImage(subject.Repo, acc)
	size := int64(0)
	for _, b := range acc.Blobs() {
		size += b.Size
	}
	h.exec(`
INSERT INTO artifact_accessory (artifact_id, subject_artifact_id, type, size, digest, subject_artifact_digest, subject_artifact_repo)
VALUES ($1, $2, $3, $4, $5, $6, $7)`, a.ID, subject.ID, accessoryType, size, a.Digest.String(), subject.Digest.String(), subject.Repo)
	return a
}

// CosignTag is the tag cosign gives the signature of a digest.
func CosignTag(d digest.Digest) string { return d.Algorithm().String() + "-" + d.Encoded() + ".sig" }

// Label attaches a label to an artifact (a label_reference row).
func (h *Harbor) Label(a Artifact, name string) {
	h.tb.Helper()
	h.need2("a label")
	var id int64
	h.queryRow(`INSERT INTO harbor_label (name, scope) VALUES ($1, 'g') RETURNING id`, []any{name}, &id)
	h.exec(`INSERT INTO label_reference (label_id, artifact_id) VALUES ($1, $2)`, id, a.ID)
}

// SystemArtifact records a system artifact (e.g. a scan data export), pushed
// straight to the registry under sys_harb0r/<vendor>/<repository>: a
// system_artifact row and no blob row.
func (h *Harbor) SystemArtifact(vendor, repository, typ string, b Blob) {
	h.tb.Helper()
	h.need2("a system artifact")
	h.exec(`INSERT INTO system_artifact (repository, digest, size, vendor, type) VALUES ($1, $2, $3, $4, $5)`,
		repository, b.Digest.String(), b.Size, vendor, typ)
}

// SystemArtifactRepo is where a system artifact's blob is stored.
func SystemArtifactRepo(vendor, repository string) string {
	return "sys_harb0r/" + vendor + "/" + repository
}

func (h *Harbor) need2(what string) {
	h.tb.Helper()
	if !h.Variant.Harbor2() {
		h.tb.Fatalf("harbortest: %s cannot exist in %s", what, h.Variant)
	}
}

// SyncQuota sets a project's quota_usage to what Harbor's push path keeps it
// at (its formula over project_blob; 1.10: over its artifacts, plus the
// artifact count).
func (h *Harbor) SyncQuota(projectID int64) {
	h.tb.Helper()
	h.SetQuotaUsed(projectID, h.ComputedUsage(projectID))
	if !h.Variant.Harbor2() {
		h.exec(`UPDATE quota_usage SET used = jsonb_set(used, '{count}', to_jsonb((SELECT count(*) FROM artifact WHERE project_id = $1)))
		        WHERE reference = 'project' AND reference_id = $2`, projectID, fmt.Sprint(projectID))
	}
}

// ComputedUsage is Harbor's storage usage formula for a project.
func (h *Harbor) ComputedUsage(projectID int64) int64 {
	h.tb.Helper()
	if !h.Variant.Harbor2() {
		return h.Count(`SELECT COALESCE(SUM(b.size), 0)::bigint FROM blob b WHERE b.content_type <> $2 AND b.digest IN (
		  SELECT ab.digest_blob FROM artifact a JOIN artifact_blob ab ON ab.digest_af = a.digest WHERE a.project_id = $1)`,
			projectID, MediaTypeForeignLayer)
	}
	return h.Count(`SELECT COALESCE(SUM(b.size), 0)::bigint FROM blob b JOIN project_blob pb ON b.id = pb.blob_id AND pb.project_id = $1
	                WHERE b.content_type <> $2`, projectID, MediaTypeForeignLayer)
}

// SetQuotaUsed writes quota_usage.used storage (e.g. to create drift), with
// Harbor's version bump.
func (h *Harbor) SetQuotaUsed(projectID, n int64) {
	h.tb.Helper()
	bump := ", version = version + 1"
	if !h.Variant.Harbor2() {
		bump = ""
	}
	h.exec(`UPDATE quota_usage SET used = jsonb_set(used, '{storage}', to_jsonb($1::bigint)), update_time = LOCALTIMESTAMP`+bump+`
	        WHERE reference = 'project' AND reference_id = $2`, n, fmt.Sprint(projectID))
}

// QuotaUsed reads quota_usage.used storage of a project.
func (h *Harbor) QuotaUsed(projectID int64) int64 {
	h.tb.Helper()
	return h.Count(`SELECT (used->>'storage')::bigint FROM quota_usage WHERE reference = 'project' AND reference_id = $1`, fmt.Sprint(projectID))
}
