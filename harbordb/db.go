package harbordb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrStandby is returned by Open when the database is a hot standby.
var ErrStandby = errors.New("the database is a standby (pg_is_in_recovery() is true): point regsweep at the primary")

// ErrSubscriber is returned by Snapshot when the database subscribes to
// another's publication (logical replication): it may lag its publisher.
var ErrSubscriber = errors.New("the database is a logical replica (pg_stat_subscription lists a subscription of it): point regsweep at the primary")

// ErrTimeAhead is returned by Snapshot when a timestamp Harbor wrote lies
// in the future: a harbor-core running east of UTC, or with a fast clock,
// would make every window check wrong.
var ErrTimeAhead = errors.New("a Harbor timestamp lies in the future")

// isRefusal reports whether err is one of the refusals above (built here,
// with no driver text to scrub).
func isRefusal(err error) bool {
	return errors.Is(err, ErrStandby) || errors.Is(err, ErrSubscriber) || errors.Is(err, ErrTimeAhead)
}

// ErrNotReadOnly is returned by ClaimBlobs on schemas without blob status
// (Harbor 1.x, 2.0) while Harbor is not in read-only mode.
var ErrNotReadOnly = errors.New("this Harbor schema has no blob status to guard deletions; set Harbor read-only (System Settings > Repository Read Only) or stop it before deleting")

// ErrNoHistory is returned by StartExecution on schemas that keep GC history
// in admin_job (before Harbor 2.2).
var ErrNoHistory = errors.New("this Harbor schema keeps GC history in admin_job, which regsweep does not write")

// connectTimeout bounds connecting when the URL sets no connect_timeout, so
// an unreachable host fails in seconds rather than at the TCP timeout.
const connectTimeout = 15 * time.Second

// DB is an open Harbor database on a primary server.
type DB struct {
	pool    *pgxpool.Pool
	schema  Schema
	target  string   // redacted URL, for messages
	secrets []string // scrubbed from every error
}

// Open connects to Harbor's database, checks that it is a primary and detects
// its schema.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	secrets := cfg.Secrets()
	target := cfg.Redacted()
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("harbordb: parsing the database URL %s: %w", target, scrubErr(err, secrets))
	}
	// Harbor's timestamps are "timestamp without time zone" in UTC, and its
	// own DSN forces timezone=UTC; without it now() comparisons shift.
	pc.ConnConfig.RuntimeParams["timezone"] = "UTC"
	if pc.ConnConfig.RuntimeParams["application_name"] == "" {
		pc.ConnConfig.RuntimeParams["application_name"] = "regsweep"
	}
	if pc.ConnConfig.ConnectTimeout == 0 {
		pc.ConnConfig.ConnectTimeout = connectTimeout
	}
	host := pc.ConnConfig.Host
	if pc.ConnConfig.Port != 0 {
		host = fmt.Sprintf("%s:%d", host, pc.ConnConfig.Port)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("harbordb: connecting to %s (host %s): %w", target, host, scrubErr(err, secrets))
	}
	db := &DB{pool: pool, target: target, secrets: secrets}
	if err := db.check(ctx, host); err != nil {
		pool.Close()
		return nil, err
	}
	return db, nil
}

func (db *DB) check(ctx context.Context, host string) error {
	var inRecovery bool
	if err := db.pool.QueryRow(ctx, `SELECT pg_is_in_recovery()`).Scan(&inRecovery); err != nil {
		return fmt.Errorf("harbordb: connecting to %s (host %s): %w", db.target, host, scrubErr(err, db.secrets))
	}
	if inRecovery {
		return fmt.Errorf("harbordb: %s (host %s): %w", db.target, host, ErrStandby)
	}
	s, err := detectSchema(ctx, db.pool)
	if err != nil {
		var unknown *UnknownSchemaError
		if errors.As(err, &unknown) {
			return fmt.Errorf("%w (database %s)", err, db.target)
		}
		return fmt.Errorf("harbordb: %s: %w", db.target, scrubErr(err, db.secrets))
	}
	db.schema = s
	return nil
}

// Close closes the connections.
func (db *DB) Close() { db.pool.Close() }

// Schema returns the schema detected by Open.
func (db *DB) Schema() Schema { return db.schema }

// String names the database without its password.
func (db *DB) String() string { return db.target }

// fail wraps a query error with its purpose, scrubbing secrets.
func (db *DB) fail(purpose string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		// Keep errors.Is(err, context.Canceled) working without wrapping the
		// driver's error value.
		cause := context.Canceled
		if errors.Is(err, context.DeadlineExceeded) {
			cause = context.DeadlineExceeded
		}
		return fmt.Errorf("harbordb: %s: %w (%s)", purpose, cause, scrub(err.Error(), db.secrets))
	}
	return fmt.Errorf("harbordb: %s: %w", purpose, scrubErr(err, db.secrets))
}

// inTx runs fn in a read-write READ COMMITTED transaction and commits it.
func (db *DB) inTx(ctx context.Context, purpose string, fn func(pgx.Tx) error) error {
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{})
	if err != nil {
		return db.fail(purpose+": beginning a transaction", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	if err := fn(tx); err != nil {
		return err
	}
	return db.fail(purpose+": committing", tx.Commit(ctx))
}

// micros turns a window into the bigint microseconds the SQL below takes
// (LOCALTIMESTAMP - $n * interval '1 microsecond').
func micros(window time.Duration) int64 {
	if window < 0 {
		return 0
	}
	return window.Microseconds()
}
