package harbortest

import "strings"

// The DDL below is written from the column lists in
// shared/design/harbor.md §3 (Harbor's make/migrations/postgresql): only the
// tables GC reads or writes and what Harbor's GC page needs, with the unique
// keys and foreign keys Harbor has, so a wrong delete fails as it would in
// Harbor.

const ddlCommon = `
CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL);

CREATE FUNCTION update_update_time_at_column() RETURNS trigger AS $$
BEGIN
  NEW.update_time = NOW();
  RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TABLE harbor_user (
  user_id SERIAL PRIMARY KEY NOT NULL,
  username varchar(255) UNIQUE,
  creation_time timestamp DEFAULT CURRENT_TIMESTAMP,
  update_time timestamp DEFAULT CURRENT_TIMESTAMP
);
INSERT INTO harbor_user (username) VALUES ('admin');

CREATE TABLE properties (
  id SERIAL NOT NULL PRIMARY KEY,
  k varchar(64) NOT NULL UNIQUE,
  v varchar(128) NOT NULL
);

CREATE TABLE repository (
  repository_id SERIAL PRIMARY KEY NOT NULL,
  name varchar(255) NOT NULL UNIQUE,
  project_id int NOT NULL,
  description text,
  pull_count int DEFAULT 0 NOT NULL,
  star_count int DEFAULT 0 NOT NULL,
  creation_time timestamp DEFAULT CURRENT_TIMESTAMP,
  update_time timestamp DEFAULT CURRENT_TIMESTAMP
);
CREATE TRIGGER repository_update_time_at_modtime BEFORE UPDATE ON repository FOR EACH ROW EXECUTE PROCEDURE update_update_time_at_column();

CREATE TABLE artifact_blob (
  id SERIAL PRIMARY KEY NOT NULL,
  digest_af varchar(255) NOT NULL,
  digest_blob varchar(255) NOT NULL,
  creation_time timestamp DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT unique_artifact_blob UNIQUE (digest_af, digest_blob)
);
CREATE INDEX idx_artifact_blob_digest_blob ON artifact_blob (digest_blob);

CREATE TABLE project_blob (
  id SERIAL PRIMARY KEY NOT NULL,
  project_id int NOT NULL,
  blob_id int NOT NULL,
  creation_time timestamp DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT unique_project_blob UNIQUE (project_id, blob_id)
);

CREATE TABLE quota (
  id SERIAL PRIMARY KEY NOT NULL,
  reference VARCHAR(255) NOT NULL,
  reference_id VARCHAR(255) NOT NULL,
  hard JSONB NOT NULL,
  creation_time timestamp DEFAULT CURRENT_TIMESTAMP,
  update_time timestamp DEFAULT CURRENT_TIMESTAMP,
  {{QUOTA_VERSION}}
  UNIQUE (reference, reference_id)
);
CREATE TABLE quota_usage (
  id SERIAL PRIMARY KEY NOT NULL,
  reference VARCHAR(255) NOT NULL,
  reference_id VARCHAR(255) NOT NULL,
  used JSONB NOT NULL,
  creation_time timestamp DEFAULT CURRENT_TIMESTAMP,
  update_time timestamp DEFAULT CURRENT_TIMESTAMP,
  {{QUOTA_VERSION}}
  UNIQUE (reference, reference_id)
);

CREATE TABLE job_log (
  log_id SERIAL NOT NULL PRIMARY KEY,
  job_uuid varchar(64) NOT NULL UNIQUE,
  creation_time timestamp DEFAULT CURRENT_TIMESTAMP,
  content text
);
`

// ddlHarbor2 is the 2.x schema; the placeholders differ between variants.
const ddlHarbor2 = `
CREATE TABLE project (
  project_id SERIAL PRIMARY KEY NOT NULL,
  owner_id int NOT NULL REFERENCES harbor_user(user_id),
  name varchar(255) NOT NULL UNIQUE,
  creation_time timestamp DEFAULT CURRENT_TIMESTAMP,
  update_time timestamp DEFAULT CURRENT_TIMESTAMP,
  deleted boolean DEFAULT false NOT NULL,
  registry_id int
);
CREATE TRIGGER project_update_time_at_modtime BEFORE UPDATE ON project FOR EACH ROW EXECUTE PROCEDURE update_update_time_at_column();

CREATE TABLE project_metadata (
  id SERIAL NOT NULL PRIMARY KEY,
  project_id int NOT NULL REFERENCES project(project_id),
  name varchar(255) NOT NULL,
  value varchar(255),
  creation_time timestamp DEFAULT CURRENT_TIMESTAMP,
  update_time timestamp DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT unique_project_id_and_name UNIQUE (project_id, name)
);

CREATE TABLE artifact (
  id SERIAL PRIMARY KEY NOT NULL,
  project_id int NOT NULL,
  repository_name varchar(255) NOT NULL,
  digest varchar(255) NOT NULL,
  type varchar(255) NOT NULL,
  pull_time timestamp,
  push_time timestamp,
  repository_id int NOT NULL,
  media_type varchar(255) NOT NULL,
  manifest_media_type varchar(255) NOT NULL,
  size bigint,
  extra_attrs text,
  annotations jsonb,
  icon varchar(255),
  {{ARTIFACT_TYPE}}
  CONSTRAINT unique_artifact UNIQUE (repository_id, digest)
);
CREATE INDEX idx_artifact_push_time ON artifact (push_time);
CREATE INDEX idx_artifact_repository_name ON artifact (repository_name);
CREATE INDEX idx_artifact_digest_project_id ON artifact (digest, project_id);

CREATE TABLE tag (
  id SERIAL PRIMARY KEY NOT NULL,
  repository_id int NOT NULL,
  artifact_id int NOT NULL REFERENCES artifact(id),
  name varchar(255) NOT NULL,
  push_time timestamp DEFAULT CURRENT_TIMESTAMP,
  pull_time timestamp,
  CONSTRAINT unique_tag UNIQUE (repository_id, name)
);
CREATE INDEX idx_tag_artifact_id ON tag (artifact_id);

CREATE TABLE artifact_reference (
  id SERIAL PRIMARY KEY NOT NULL,
  parent_id int NOT NULL REFERENCES artifact(id),
  child_id int NOT NULL REFERENCES artifact(id),
  child_digest varchar(255) NOT NULL,
  platform varchar(255),
  urls varchar(1024),
  annotations jsonb,
  CONSTRAINT unique_reference UNIQUE (parent_id, child_id)
);
CREATE INDEX idx_artifact_reference_child_id ON artifact_reference (child_id);

CREATE TABLE artifact_accessory (
  id SERIAL PRIMARY KEY NOT NULL,
  artifact_id bigint REFERENCES artifact(id),
  subject_artifact_id bigint,
  type varchar(256),
  size bigint,
  digest varchar(1024),
  creation_time timestamp DEFAULT CURRENT_TIMESTAMP,
  subject_artifact_digest varchar(1024),
  subject_artifact_repo varchar(1024),
  {{ACCESSORY_SOURCE}}
  CONSTRAINT unique_artifact_accessory UNIQUE (artifact_id, subject_artifact_digest)
);
CREATE INDEX idx_artifact_accessory_subject_artifact_id ON artifact_accessory (subject_artifact_id);

CREATE TABLE harbor_label (
  id SERIAL NOT NULL PRIMARY KEY,
  name varchar(128) NOT NULL,
  scope char(1) NOT NULL,
  project_id int
);
CREATE TABLE label_reference (
  id SERIAL PRIMARY KEY NOT NULL,
  label_id int NOT NULL REFERENCES harbor_label(id),
  artifact_id int NOT NULL REFERENCES artifact(id),
  creation_time timestamp DEFAULT CURRENT_TIMESTAMP,
  update_time timestamp DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT unique_label_reference UNIQUE (label_id, artifact_id)
);

CREATE TABLE artifact_trash (
  id SERIAL PRIMARY KEY NOT NULL,
  media_type varchar(255) NOT NULL,
  manifest_media_type varchar(255) NOT NULL,
  repository_name varchar(255) NOT NULL,
  digest varchar(255) NOT NULL,
  creation_time timestamp DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT unique_artifact_trash UNIQUE (repository_name, digest)
);

CREATE TABLE blob (
  id SERIAL PRIMARY KEY NOT NULL,
  digest varchar(255) NOT NULL,
  content_type varchar(1024) NOT NULL,
  size bigint NOT NULL,
  creation_time timestamp DEFAULT CURRENT_TIMESTAMP,
  update_time timestamp DEFAULT CURRENT_TIMESTAMP,
  status varchar(255) DEFAULT 'none',
  version bigint DEFAULT 0,
  UNIQUE (digest)
);
CREATE INDEX idx_status ON blob (status);
CREATE INDEX idx_version ON blob (version);

CREATE TABLE system_artifact (
  id SERIAL NOT NULL PRIMARY KEY,
  repository varchar(256) NOT NULL,
  digest varchar(255) NOT NULL DEFAULT '',
  size bigint NOT NULL DEFAULT 0,
  vendor varchar(255) NOT NULL DEFAULT '',
  type varchar(255) NOT NULL DEFAULT '',
  create_time timestamp DEFAULT CURRENT_TIMESTAMP,
  extra_attrs text NOT NULL DEFAULT '',
  UNIQUE (repository, digest, vendor)
);

CREATE TABLE execution (
  id SERIAL NOT NULL PRIMARY KEY,
  vendor_type varchar(64) NOT NULL,
  vendor_id int,
  status varchar(16),
  status_message text,
  trigger varchar(16) NOT NULL,
  extra_attrs JSON,
  start_time timestamp DEFAULT CURRENT_TIMESTAMP,
  end_time timestamp,
  revision int,
  update_time timestamp
);
CREATE INDEX idx_execution_vendor_type_vendor_id ON execution (vendor_type, vendor_id);
CREATE INDEX idx_execution_start_time ON execution (start_time);

CREATE TABLE task (
  id SERIAL PRIMARY KEY NOT NULL,
  execution_id int NOT NULL REFERENCES execution(id),
  job_id varchar(64),
  status varchar(16) NOT NULL,
  status_code int NOT NULL,
  status_revision {{STATUS_REVISION}},
  status_message text,
  run_count int,
  extra_attrs JSON,
  creation_time timestamp DEFAULT CURRENT_TIMESTAMP,
  start_time timestamp,
  update_time timestamp,
  end_time timestamp,
  vendor_type varchar(64) NOT NULL
);
CREATE INDEX task_execution_id_idx ON task (execution_id);
CREATE INDEX idx_task_job_id ON task (job_id);
`

// ddlHarbor110 is the 1.10 schema: tag-level artifact rows, blob without
// status, GC history in admin_job.
const ddlHarbor110 = `
CREATE TABLE project (
  project_id SERIAL PRIMARY KEY NOT NULL,
  owner_id int NOT NULL REFERENCES harbor_user(user_id),
  name varchar(255) NOT NULL UNIQUE,
  creation_time timestamp DEFAULT CURRENT_TIMESTAMP,
  update_time timestamp DEFAULT CURRENT_TIMESTAMP,
  deleted boolean DEFAULT false NOT NULL
);
CREATE TRIGGER project_update_time_at_modtime BEFORE UPDATE ON project FOR EACH ROW EXECUTE PROCEDURE update_update_time_at_column();

CREATE TABLE artifact (
  id SERIAL PRIMARY KEY NOT NULL,
  project_id int NOT NULL,
  repo varchar(255) NOT NULL,
  tag varchar(255) NOT NULL,
  digest varchar(255) NOT NULL,
  kind varchar(255) NOT NULL,
  creation_time timestamp DEFAULT CURRENT_TIMESTAMP,
  pull_time timestamp,
  push_time timestamp,
  CONSTRAINT unique_artifact UNIQUE (project_id, repo, tag)
);

CREATE TABLE blob (
  id SERIAL PRIMARY KEY NOT NULL,
  digest varchar(255) NOT NULL,
  content_type varchar(1024) NOT NULL,
  size bigint NOT NULL,
  creation_time timestamp DEFAULT CURRENT_TIMESTAMP,
  UNIQUE (digest)
);

CREATE TABLE admin_job (
  id SERIAL NOT NULL PRIMARY KEY,
  job_name varchar(64) NOT NULL,
  job_kind varchar(64) NOT NULL,
  cron_str varchar(256),
  status varchar(64) NOT NULL,
  job_uuid varchar(64),
  creation_time timestamp DEFAULT CURRENT_TIMESTAMP,
  update_time timestamp DEFAULT CURRENT_TIMESTAMP,
  deleted boolean DEFAULT false NOT NULL,
  revision integer,
  status_code integer
);
`

// ddl returns the statements for a variant.
func ddl(v Variant) string {
	switch v {
	case Harbor110:
		return strings.ReplaceAll(ddlCommon, "{{QUOTA_VERSION}}", "") + ddlHarbor110
	case Harbor28:
		return strings.NewReplacer(
			"{{QUOTA_VERSION}}", "version bigint DEFAULT 0 NOT NULL,",
			"{{ARTIFACT_TYPE}}", "",
			"{{ACCESSORY_SOURCE}}", "",
			"{{STATUS_REVISION}}", "int",
		).Replace(ddlCommon + ddlHarbor2)
	default:
		return strings.NewReplacer(
			"{{QUOTA_VERSION}}", "version bigint DEFAULT 0 NOT NULL,",
			"{{ARTIFACT_TYPE}}", "artifact_type varchar(255) NOT NULL,",
			"{{ACCESSORY_SOURCE}}", "source varchar(50) DEFAULT 'local',",
			"{{STATUS_REVISION}}", "bigint",
		).Replace(ddlCommon + ddlHarbor2)
	}
}
