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
// Harbor's gcCheckIn does.
type ExecutionResult struct {
	FreedSpace      int64 // bytes really removed from storage
	PurgedBlobs     int64
	PurgedManifests int64
	Message         string // execution.status_message (e.g. the error)
}

// Execution is a GC run recorded in Harbor's history.
type Execution struct {
	ID     int64 // execution.id, the number Harbor's UI shows
	TaskID int64
	JobID  string // task.job_id, the job_log key
	db     *DB
	attrs  map[string]any
}

// StartExecution records a running GC: an execution row (vendor
// GARBAGE_COLLECTION, vendor id -1, status Running) and its task (status
// Running, a job id whose log Finish writes to job_log). Harbor 2.2+ only
// (ErrNoHistory otherwise).
func (db *DB) StartExecution(ctx context.Context, s ExecutionStart) (*Execution, error) {
	if !db.schema.HasExecutionHistory() {
		return nil, fmt.Errorf("harbordb: %s: %w", db.schema, ErrNoHistory)
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
	e := &Execution{db: db, attrs: attrs, JobID: newJobID()}
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
VALUES ($1, $2, $3, 2, 0, '', 1, '{}', LOCALTIMESTAMP, LOCALTIMESTAMP, LOCALTIMESTAMP, $4) RETURNING id`,
			e.ID, e.JobID, StatusRunning, VendorGC).Scan(&e.TaskID); err != nil {
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
// into extra_attrs as JSON integers, and the log stored in job_log under the
// task's job id (Harbor serves it when jobservice uses the DB job logger).
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
