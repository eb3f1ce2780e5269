package harbordb

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Supported schema_migrations versions (golang-migrate file numbers in
// make/migrations/postgresql).
const (
	MinHarbor1Migration = 10  // 1.9.0
	MaxHarbor1Migration = 15  // 1.10.0
	MinHarbor2Migration = 30  // 2.0.0
	MaxHarbor2Migration = 190 // 2.16 dev (2.15.x is 180/181)
)

// Schema is the Harbor schema found in the database.
type Schema struct {
	Migration int  // schema_migrations.version
	Harbor1   bool // 1.9/1.10: tag-level artifact rows, blob without status
}

func (s Schema) String() string {
	switch {
	case s.Harbor1 && s.Migration >= 15:
		return fmt.Sprintf("Harbor 1.10 (migration %d)", s.Migration)
	case s.Harbor1:
		return fmt.Sprintf("Harbor 1.9 (migration %d)", s.Migration)
	default:
		return fmt.Sprintf("Harbor 2.x (migration %d)", s.Migration)
	}
}

// HasBlobStatus reports whether blob rows carry status, version and
// update_time (the non-blocking GC protocol, 2.1+).
func (s Schema) HasBlobStatus() bool { return !s.Harbor1 && s.Migration >= 40 }

// HasExecutionHistory reports whether GC runs are recorded as execution/task
// rows (2.2+; earlier versions used admin_job).
func (s Schema) HasExecutionHistory() bool { return !s.Harbor1 && s.Migration >= 50 }

// HasTrash reports whether artifact_trash, tag and artifact_reference exist
// (2.0+).
func (s Schema) HasTrash() bool { return !s.Harbor1 }

// HasAccessories reports whether artifact_accessory exists (2.5+).
func (s Schema) HasAccessories() bool { return !s.Harbor1 && s.Migration >= 80 }

// HasSystemArtifacts reports whether system_artifact exists (2.6+).
func (s Schema) HasSystemArtifacts() bool { return !s.Harbor1 && s.Migration >= 90 }

// hasQuotaVersion reports whether quota_usage.version exists (2.4+).
func (s Schema) hasQuotaVersion() bool { return !s.Harbor1 && s.Migration >= 70 }

// UnknownSchemaError is returned by Open for a database whose schema this
// package does not know: no schema_migrations table, a version outside the
// supported ranges, or a dirty (half-applied) migration.
type UnknownSchemaError struct {
	Version int
	Dirty   bool
	Missing bool // no schema_migrations table or no row in it
}

func (e *UnknownSchemaError) Error() string {
	ranges := fmt.Sprintf("supported: Harbor 1.9/1.10 (migrations %d-%d) and Harbor 2.x (migrations %d-%d)",
		MinHarbor1Migration, MaxHarbor1Migration, MinHarbor2Migration, MaxHarbor2Migration)
	switch {
	case e.Missing:
		return "harbordb: no Harbor schema version (schema_migrations is missing or empty): not a Harbor database, or Harbor older than 1.9; " + ranges
	case e.Dirty:
		return fmt.Sprintf("harbordb: Harbor schema migration %d is dirty (a migration failed half-way; finish or repair Harbor's upgrade first); %s", e.Version, ranges)
	default:
		return fmt.Sprintf("harbordb: unknown Harbor schema migration %d; %s", e.Version, ranges)
	}
}

// detectSchema reads schema_migrations.
func detectSchema(ctx context.Context, q querier) (Schema, error) {
	rows, err := q.Query(ctx, `SELECT version, dirty FROM schema_migrations`)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
			return Schema{}, &UnknownSchemaError{Missing: true}
		}
		return Schema{}, fmt.Errorf("reading schema_migrations: %w", err)
	}
	type row struct {
		Version int64
		Dirty   bool
	}
	found, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err != nil {
		return Schema{}, fmt.Errorf("reading schema_migrations: %w", err)
	}
	switch len(found) {
	case 0:
		return Schema{}, &UnknownSchemaError{Missing: true}
	case 1:
	default:
		return Schema{}, fmt.Errorf("harbordb: schema_migrations has %d rows, golang-migrate keeps one", len(found))
	}
	v, dirty := int(found[0].Version), found[0].Dirty
	if dirty {
		return Schema{}, &UnknownSchemaError{Version: v, Dirty: true}
	}
	switch {
	case v >= MinHarbor1Migration && v <= MaxHarbor1Migration:
		return Schema{Migration: v, Harbor1: true}, nil
	case v >= MinHarbor2Migration && v <= MaxHarbor2Migration:
		return Schema{Migration: v}, nil
	}
	return Schema{}, &UnknownSchemaError{Version: v}
}

// querier is what pgxpool.Pool, pgx.Conn and pgx.Tx have in common.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}
