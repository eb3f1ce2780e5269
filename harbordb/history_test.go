package harbordb_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/regsweep/regsweep/harbordb"
	"github.com/regsweep/regsweep/harbordb/harbortest"
)

// TestExecutionHistory checks the rows Harbor's GC page reads: GET
// /system/gc lists execution rows of vendor GARBAGE_COLLECTION (job_parameters
// is extra_attrs, JSON.parse'd by the UI), and the log link reads the first
// task's job_id from job_log.
func TestExecutionHistory(t *testing.T) {
	for _, v := range []harbortest.Variant{harbortest.Latest, harbortest.Harbor28} {
		t.Run(v.String(), func(t *testing.T) {
			ctx := context.Background()
			h, db := newHarbor(t, v)
			// jobservice's DB logger is on: it has logged one of Harbor's
			// jobs.
			h.JobLog("aaaaaaaaaaaaaaaaaaaaaaaa", "a scan job's log")
			deleteTag := false
			e, err := db.StartExecution(ctx, harbordb.ExecutionStart{
				DeleteUntagged: true, DeleteTag: &deleteTag, Workers: 4, TimeWindow: 2 * time.Hour,
			})
			if err != nil {
				t.Fatalf("StartExecution: %v", err)
			}
			var status, trigger, vendor string
			var vendorID int64
			var ended bool
			if err := h.Pool.QueryRow(ctx, `SELECT status, trigger, vendor_type, vendor_id, end_time IS NOT NULL FROM execution WHERE id = $1`, e.ID).
				Scan(&status, &trigger, &vendor, &vendorID, &ended); err != nil {
				t.Fatal(err)
			}
			if status != "Running" || trigger != "MANUAL" || vendor != "GARBAGE_COLLECTION" || vendorID != -1 || ended {
				t.Errorf("running execution: %s %s %s %d ended=%v", status, trigger, vendor, vendorID, ended)
			}
			if n := h.Count(`SELECT count(*) FROM task WHERE execution_id = $1 AND status = 'Running' AND status_code = 2`, e.ID); n != 1 {
				t.Errorf("%d running tasks", n)
			}

			log := "Garbage Collection parameters: [delete_untagged: true, delete_tag: false, dry_run: false, time_window: 2, workers: 4]\n" +
				"connected to postgres://harbor:" + testPassword + "@db\n3 blobs and 1 manifests are actually deleted\n"
			res := harbordb.ExecutionResult{FreedSpace: 123456789012, PurgedBlobs: 3, PurgedManifests: 1}
			if err := e.Finish(ctx, harbordb.StatusSuccess, res, log); err != nil {
				t.Fatalf("Finish: %v", err)
			}

			var attrs string
			var startBeforeEnd bool
			if err := h.Pool.QueryRow(ctx, `SELECT status, extra_attrs::text, start_time <= end_time AND update_time = end_time FROM execution
			                      WHERE vendor_type = 'GARBAGE_COLLECTION' ORDER BY update_time DESC LIMIT 1`).
				Scan(&status, &attrs, &startBeforeEnd); err != nil {
				t.Fatal(err)
			}
			if status != "Success" || !startBeforeEnd {
				t.Errorf("finished execution: status %s, times ordered %v", status, startBeforeEnd)
			}
			// JSON types as Harbor writes them: booleans, integers.
			var params map[string]json.RawMessage
			if err := json.Unmarshal([]byte(attrs), &params); err != nil {
				t.Fatalf("extra_attrs %q: %v", attrs, err)
			}
			want := map[string]string{
				"delete_untagged": "true", "delete_tag": "false", "dry_run": "false", "workers": "4", "time_window": "2",
				"freed_space": "123456789012", "purged_blobs": "3", "purged_manifests": "1",
			}
			for k, w := range want {
				if got := string(params[k]); got != w {
					t.Errorf("extra_attrs[%s] = %s, want %s", k, got, w)
				}
			}
			if len(params) != len(want) {
				t.Errorf("extra_attrs has keys %v, want exactly %v", params, want)
			}
			for _, k := range []string{"freed_space", "purged_blobs", "purged_manifests", "workers", "time_window"} {
				if typ := h.Strings(`SELECT json_typeof(extra_attrs->$2) FROM execution WHERE id = $1`, e.ID, k)[0]; typ != "number" {
					t.Errorf("%s is a JSON %s", k, typ)
				}
			}

			var jobID string
			if err := h.Pool.QueryRow(ctx, `SELECT job_id, status FROM task WHERE execution_id = $1 ORDER BY id LIMIT 1`, e.ID).Scan(&jobID, &status); err != nil {
				t.Fatal(err)
			}
			if jobID != e.JobID || len(jobID) != 24 || status != "Success" ||
				h.Count(`SELECT status_code FROM task WHERE id = $1`, e.TaskID) != 3 {
				t.Errorf("task: job %q (want %q) status %s", jobID, e.JobID, status)
			}
			content := h.Strings(`SELECT content FROM job_log WHERE job_uuid = $1`, jobID)
			if len(content) != 1 || !strings.Contains(content[0], "3 blobs and 1 manifests are actually deleted") {
				t.Fatalf("job_log %q", content)
			}
			if strings.Contains(content[0], testPassword) {
				t.Error("the job log holds the database password")
			}
		})
	}
}

func TestExecutionDryRunAndError(t *testing.T) {
	ctx := context.Background()
	h, db := newHarbor(t, harbortest.Latest)
	e, err := db.StartExecution(ctx, harbordb.ExecutionStart{DryRun: true, Workers: 1, Trigger: harbordb.TriggerSchedule})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Finish(ctx, "Running", harbordb.ExecutionResult{}, ""); err == nil {
		t.Error("Finish accepted a non-final status")
	}
	if err := e.Finish(ctx, harbordb.StatusError, harbordb.ExecutionResult{Message: "listing storage failed"}, "boom"); err != nil {
		t.Fatal(err)
	}
	attrs := h.Strings(`SELECT extra_attrs::text FROM execution WHERE id = $1`, e.ID)[0]
	var params map[string]any
	if err := json.Unmarshal([]byte(attrs), &params); err != nil {
		t.Fatal(err)
	}
	if params["dry_run"] != true || params["delete_untagged"] != false {
		t.Errorf("params %v", params)
	}
	if _, ok := params["delete_tag"]; ok {
		t.Errorf("delete_tag written though not given: %v", params)
	}
	if got := h.Strings(`SELECT status || ' ' || trigger || ' ' || status_message FROM execution WHERE id = $1`, e.ID)[0]; got != "Error SCHEDULE listing storage failed" {
		t.Errorf("execution %q", got)
	}
}

func TestExecutionHarbor110(t *testing.T) {
	_, db := newHarbor(t, harbortest.Harbor110)
	if _, err := db.StartExecution(context.Background(), harbordb.ExecutionStart{}); !errors.Is(err, harbordb.ErrNoHistory) {
		t.Fatalf("StartExecution on 1.10: %v, want ErrNoHistory", err)
	}
}

// With jobservice's default loggers (stdout and files) Harbor never reads
// job_log: the run writes no row there, however many regsweep wrote
// before. Once Harbor's own jobs log to job_log, it does.
func TestExecutionJobLogOnlyWithDBLogger(t *testing.T) {
	ctx := context.Background()
	h, db := newHarbor(t, harbortest.Latest)
	run := func() *harbordb.Execution {
		t.Helper()
		e, err := db.StartExecution(ctx, harbordb.ExecutionStart{Workers: 1})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Finish(ctx, harbordb.StatusSuccess, harbordb.ExecutionResult{}, "the log\n"); err != nil {
			t.Fatal(err)
		}
		return e
	}
	for i := range 2 {
		if e := run(); e.JobLog {
			t.Errorf("run %d: JobLog set with no log of Harbor's own in job_log", i)
		}
	}
	if n := h.Count(`SELECT count(*) FROM job_log`); n != 0 {
		t.Fatalf("%d job_log rows written for Harbor's file logger", n)
	}
	h.JobLog("bbbbbbbbbbbbbbbbbbbbbbbb", "a replication job's log")
	e := run()
	if !e.JobLog || h.Count(`SELECT count(*) FROM job_log WHERE job_uuid = $1`, e.JobID) != 1 {
		t.Errorf("with the DB logger on: JobLog %v, job_log rows for the run %d", e.JobLog, h.Count(`SELECT count(*) FROM job_log WHERE job_uuid = $1`, e.JobID))
	}
}

// A run killed before it finished leaves its execution Running; the next
// run (holding the storage lock) marks it Error, and leaves a run of
// Harbor's own GC alone.
func TestEndStaleExecutions(t *testing.T) {
	ctx := context.Background()
	h, db := newHarbor(t, harbortest.Latest)
	killed, err := db.StartExecution(ctx, harbordb.ExecutionStart{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	finished, err := db.StartExecution(ctx, harbordb.ExecutionStart{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := finished.Finish(ctx, harbordb.StatusSuccess, harbordb.ExecutionResult{}, ""); err != nil {
		t.Fatal(err)
	}
	harbors := h.RunningGC("cccccccccccccccccccccccc")

	n, err := db.EndStaleExecutions(ctx)
	if err != nil || n != 1 {
		t.Fatalf("EndStaleExecutions = %d, %v; want the killed run", n, err)
	}
	status := func(id int64) string {
		return h.Strings(`SELECT e.status || '/' || t.status || '/' || t.status_code || ' ' || e.status_message || ' ' || (e.end_time IS NOT NULL)
		                  FROM execution e JOIN task t ON t.execution_id = e.id WHERE e.id = $1`, id)[0]
	}
	if got, want := status(killed.ID), "Error/Error/3 "+harbordb.StaleMessage+" true"; got != want {
		t.Errorf("the killed run: %q, want %q", got, want)
	}
	if got := status(finished.ID); !strings.HasPrefix(got, "Success/Success/3") {
		t.Errorf("the finished run: %q", got)
	}
	if got := status(harbors); !strings.HasPrefix(got, "Running/Running/2") {
		t.Errorf("Harbor's own running GC: %q, want it left Running", got)
	}
}
