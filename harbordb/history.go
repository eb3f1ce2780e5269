package harbordb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// GC history as Harbor writes it (controller/gc, pkg/task).
const (
	VendorGC = "GARBAGE_COLLECTION"

	TriggerManual   = "MANUAL"
	TriggerSchedule = "SCHEDULE"

	StatusRunning = "Running"
	StatusSuccess = "Success"
	StatusError   = "Error"
	StatusStopped = "Stopped"
)

// ExecutionStart holds the run's parameters, written to execution.extra_attrs
// under Harbor's keys so that Harbor's GC page shows the run.
type ExecutionStart struct {
	Trigger        string // TriggerManual when empty
	DeleteUntagged bool
	// DeleteTag is Harbor 2.15's delete_tag; nil leaves the key out.
	DeleteTag *bool
	DryRun    bool
	Workers   int
	// TimeWindow is written as whole hours (time_window), Harbor's unit.
	TimeWindow time.Duration
}

// ExecutionResult holds the counts merged into extra_attrs at the end, as
// Harbor's GC saves them (saveGCRes): the UI reads "{purged_blobs} blob(s)
// and {purged_manifests} manifest(s) deleted, {freed_space} space freed up".
type ExecutionResult struct {
	FreedSpace      int64  // bytes of the blobs deleted from storage
	PurgedBlobs     int64  // blobs deleted that are not manifests
	PurgedManifests int64  // manifest blobs deleted
	Message         string // execution.status_message (e.g. the error)
}

// Execution is a GC run recorded in Harbor's history.
type Execution struct {
	ID     int64 // execution.id, the number Harbor's UI shows
	TaskID int64
	JobID  string // task.job_id, the job_log key
	// JobLog says whether Finish writes the log to job_log: only when
	// jobservice reads logs from there (JobLogInUse).
	JobLog bool
	db     *DB
	attrs  map[string]any
}

// collectorAttrs is task.extra_attrs of regsweep's runs: it tells them from
// the runs of Harbor's own GC (whose task extra_attrs is empty).
const collectorAttrs = `{"collector":"regsweep"}`

// ours is true for a task t that regsweep wrote.
const ours = `COALESCE(t.extra_attrs::jsonb->>'collector', '') = 'regsweep'`

// StartExecution records a running GC: an execution row (vendor
// GARBAGE_COLLECTION, vendor id -1, status Running) and its task (status
// Running, a job id under which Finish writes the log to job_log when
// jobservice reads logs from there). Harbor 2.2+ only (ErrNoHistory
// otherwise).
func (db *DB) StartExecution(ctx context.Context, s ExecutionStart) (*Execution, error) {
	if !db.schema.HasExecutionHistory() {
		return nil, fmt.Errorf("harbordb: %s: %w", db.schema, ErrNoHistory)
	}
	jobLog, err := db.JobLogInUse(ctx)
	if err != nil {
		return nil, err
	}
	if s.Trigger == "" {
		s.Trigger = TriggerManual
	}
	attrs := map[string]any{
		"delete_untagged": s.DeleteUntagged,
		"dry_run":         s.DryRun,
		"workers":         s.Workers,
		"time_window":     int64(s.TimeWindow / time.Hour),
	}
	if s.DeleteTag != nil {
		attrs["delete_tag"] = *s.DeleteTag
	}
	raw, err := json.Marshal(attrs)
	if err != nil {
		return nil, err
	}
	e := &Execution{db: db, attrs: attrs, JobID: newJobID(), JobLog: jobLog}
	err = db.inTx(ctx, "recording the GC execution", func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `
INSERT INTO execution (vendor_type, vendor_id, status, status_message, trigger, extra_attrs, start_time, update_time, revision)
VALUES ($1, -1, $2, '', $3, $4, LOCALTIMESTAMP, LOCALTIMESTAMP, 0) RETURNING id`,
			VendorGC, StatusRunning, s.Trigger, string(raw)).Scan(&e.ID); err != nil {
			return db.fail("inserting the execution row", err)
		}
		// Running, status_code 2 (jobservice's codes: Pending 0, Running 2,
		// final 3).
		if err := tx.QueryRow(ctx, `
INSERT INTO task (execution_id, job_id, status, status_code, status_revision, status_message, run_count, extra_attrs,
                  creation_time, start_time, update_time, vendor_type)
VALUES ($1, $2, $3, 2, 0, '', 1, $5, LOCALTIMESTAMP, LOCALTIMESTAMP, LOCALTIMESTAMP, $4) RETURNING id`,
			e.ID, e.JobID, StatusRunning, VendorGC, collectorAttrs).Scan(&e.TaskID); err != nil {
			return db.fail("inserting the task row", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return e, nil
}

// Finish ends the run: status (StatusSuccess, StatusError or StatusStopped)
// on the execution and its task, end and update times, the counts merged
// into extra_attrs as JSON integers, and, when JobLog is set, the log stored
// in job_log under the task's job id.
func (e *Execution) Finish(ctx context.Context, status string, r ExecutionResult, log string) error {
	switch status {
	case StatusSuccess, StatusError, StatusStopped:
	default:
		return fmt.Errorf("harbordb: %q is not a final GC status", status)
	}
	attrs := map[string]any{}
	for k, v := range e.attrs {
		attrs[k] = v
	}
	attrs["freed_space"] = r.FreedSpace
	attrs["purged_blobs"] = r.PurgedBlobs
	attrs["purged_manifests"] = r.PurgedManifests
	raw, err := json.Marshal(attrs)
	if err != nil {
		return err
	}
	log = scrub(log, e.db.secrets)
	msg := scrub(r.Message, e.db.secrets)
	return e.db.inTx(ctx, "finishing the GC execution", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `
UPDATE execution SET status = $2, status_message = $3, extra_attrs = $4, end_time = LOCALTIMESTAMP, update_time = LOCALTIMESTAMP
WHERE id = $1`, e.ID, status, msg, string(raw)); err != nil {
			return e.db.fail("updating the execution row", err)
		}
		if _, err := tx.Exec(ctx, `
UPDATE task SET status = $2, status_code = 3, status_message = $3, end_time = LOCALTIMESTAMP, update_time = LOCALTIMESTAMP
WHERE id = $1`, e.TaskID, status, msg); err != nil {
			return e.db.fail("updating the task row", err)
		}
		if !e.JobLog {
			e.attrs = attrs
			return nil
		}
		if _, err := tx.Exec(ctx, `
INSERT INTO job_log (job_uuid, creation_time, content) VALUES ($1, LOCALTIMESTAMP, $2)
ON CONFLICT (job_uuid) DO UPDATE SET content = EXCLUDED.content`, e.JobID, log); err != nil {
			return e.db.fail("writing the job log", err)
		}
		e.attrs = attrs
		return nil
	})
}

// newJobID makes a jobservice-style job id (24 hex characters).
func newJobID() string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return hex.EncodeToString(b)
}

// JobLogInUse reports whether jobservice keeps job logs in the database.
// Harbor serves a job's log (GET /system/gc/{id}/log) from the first of
// jobservice's configured loggers that can read back, in name order: DB
// before FILE. With the default loggers (STD_OUTPUT and FILE) it reads
// /var/log/jobs/<job id>.log, which regsweep cannot write, and a row in
// job_log is never read. jobservice's configuration is not in the
// database; its DB logger is: job_log then holds the logs of Harbor's own
// jobs (its sweeper keeps a few days of them), so a row regsweep did not
// write means the logger is on.
func (db *DB) JobLogInUse(ctx context.Context) (bool, error) {
	var on bool
	err := db.pool.QueryRow(ctx, `
SELECT EXISTS (SELECT 1 FROM job_log jl
               WHERE NOT EXISTS (SELECT 1 FROM task t WHERE t.job_id = jl.job_uuid AND `+ours+`))`).Scan(&on)
	if err != nil {
		return false, db.fail("checking whether jobservice keeps job logs in job_log", err)
	}
	return on, nil
}

// StaleMessage is the status message of a run found still Running.
const StaleMessage = "the regsweep run recording this execution ended without finishing it (killed); the next run marked it"

// EndStaleExecutions marks regsweep's GC executions still Running (and
// their tasks) Error: a run killed before it recorded its end. The caller
// must hold the storage lock, which no other regsweep run then holds.
// Executions of Harbor's own GC are never touched.
func (db *DB) EndStaleExecutions(ctx context.Context) (int64, error) {
	if !db.schema.HasExecutionHistory() {
		return 0, nil
	}
	var n int64
	err := db.inTx(ctx, "ending executions left Running", func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `
UPDATE execution e SET status = $2, status_message = $3, end_time = LOCALTIMESTAMP, update_time = LOCALTIMESTAMP
WHERE e.vendor_type = $1 AND e.status = $4 AND EXISTS (SELECT 1 FROM task t WHERE t.execution_id = e.id AND `+ours+`)
RETURNING e.id`, VendorGC, StatusError, StaleMessage, StatusRunning)
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return db.fail("marking executions left Running", err)
		}
		n = int64(len(ids))
		if _, err := tx.Exec(ctx, `
UPDATE task t SET status = $2, status_code = 3, status_message = $3, end_time = LOCALTIMESTAMP, update_time = LOCALTIMESTAMP
WHERE t.execution_id = ANY($1) AND t.status = $4 AND `+ours, ids, StatusError, StaleMessage, StatusRunning); err != nil {
			return db.fail("marking tasks left Running", err)
		}
		return nil
	})
	return n, err
}
