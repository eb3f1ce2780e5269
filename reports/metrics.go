package reports

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/push"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/regsweep/regsweep/finding"
)

// Metric names: a contract (docs/report-schema.md, "Metrics"). Added,
// never renamed.
const (
	MetricLastSuccess        = "regsweep_last_success_timestamp_seconds"
	MetricLastRun            = "regsweep_last_run_timestamp_seconds"
	MetricLastRunSuccess     = "regsweep_last_run_success"
	MetricRunDuration        = "regsweep_run_duration_seconds"
	MetricPhaseDuration      = "regsweep_phase_duration_seconds"
	MetricStorageObjects     = "regsweep_storage_objects"
	MetricStorageBytes       = "regsweep_storage_bytes"
	MetricReclaimableObjects = "regsweep_reclaimable_objects"
	MetricReclaimableBytes   = "regsweep_reclaimable_bytes"
	MetricFindings           = "regsweep_findings"
	MetricProjectBytes       = "regsweep_project_bytes"
	MetricRequests           = "regsweep_storage_requests"
	MetricDryRun             = "regsweep_dry_run"
	MetricDeletedObjects     = "regsweep_deleted_objects"
	MetricDeleteFailures     = "regsweep_delete_failures"
	MetricFreedBytes         = "regsweep_freed_bytes"
)

// Run is what the metrics of one gc or audit run are made of.
type Run struct {
	// Command is "gc" or "audit": the command label.
	Command             string
	Started, Finished   time.Time
	Success             bool
	Summary             *Summary // nil when the run ended before one was made
	Requests            map[string]int64
	DryRun              bool          // gc only
	Result              *GCResultView // gc with --delete only
	PreviousLastSuccess float64       // carried over when this run failed (0: none)
}

// GCResultView is what a deleting gc did.
type GCResultView struct {
	Deleted, Failed map[string]int
	FreedBytes      int64
}

// Registry builds the run's metrics. With commandLabel every series
// carries command="<command>" (for a textfile shared with other runs);
// without, the Pushgateway's grouping key carries it.
func (r Run) Registry(commandLabel bool) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	var constLabels prometheus.Labels
	if commandLabel {
		constLabels = prometheus.Labels{"command": r.Command}
	}
	var errs []error
	gauge := func(name, help string, v float64) {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: constLabels})
		g.Set(v)
		errs = append(errs, reg.Register(g))
	}
	vec := func(name, help string, labels []string, set func(*prometheus.GaugeVec)) {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: constLabels}, labels)
		set(g)
		errs = append(errs, reg.Register(g))
	}
	finished := float64(r.Finished.UnixNano()) / 1e9
	gauge(MetricLastRun, "When the last run finished (unix seconds), whether or not it succeeded.", finished)
	gauge(MetricLastRunSuccess, "1 when the last run succeeded, 0 when it failed.", boolFloat(r.Success))
	switch {
	case r.Success:
		gauge(MetricLastSuccess, "When the last successful run finished (unix seconds).", finished)
	case r.PreviousLastSuccess > 0:
		gauge(MetricLastSuccess, "When the last successful run finished (unix seconds).", r.PreviousLastSuccess)
	}
	gauge(MetricRunDuration, "How long the last run took, in seconds.", r.Finished.Sub(r.Started).Seconds())
	if len(r.Requests) > 0 {
		vec(MetricRequests, "Storage requests the last run made, by operation.", []string{"op"}, func(g *prometheus.GaugeVec) {
			for op, n := range r.Requests {
				g.WithLabelValues(op).Set(float64(n))
			}
		})
	}
	if r.Command == "gc" {
		gauge(MetricDryRun, "1 when the last gc was a dry run.", boolFloat(r.DryRun))
	}
	if s := r.Summary; s != nil {
		vec(MetricPhaseDuration, "How long each phase of the last run took, in seconds.", []string{"phase"}, func(g *prometheus.GaugeVec) {
			for phase, sec := range s.Durations {
				g.WithLabelValues(phase).Set(sec)
			}
		})
		t := s.Totals
		vec(MetricStorageObjects, "Objects in storage, by kind.", []string{"kind"}, func(g *prometheus.GaugeVec) {
			for kind, n := range map[string]int{"repositories": t.Repositories, "tags": t.Tags, "manifests": t.Manifests, "layer_links": t.LayerLinks,
				"blobs": t.Blobs, "uploads": t.Uploads, "unknown_keys": t.UnknownKeys} {
				g.WithLabelValues(kind).Set(float64(n))
			}
		})
		gauge(MetricStorageBytes, "Bytes of all blobs in storage.", float64(t.BlobBytes))
		rc := s.Reclaimable
		vec(MetricReclaimableObjects, "Objects a gc with the run's options would delete, by kind.", []string{"kind"}, func(g *prometheus.GaugeVec) {
			for kind, n := range map[string]int{"blobs": rc.Blobs, "manifests": rc.Manifests, "layer_links": rc.LayerLinks, "uploads": rc.Uploads,
				"multipart_uploads": rc.MultipartUploads, "segments": rc.Segments, "repositories": rc.Repositories} {
				g.WithLabelValues(kind).Set(float64(n))
			}
		})
		gauge(MetricReclaimableBytes, "Bytes a gc with the run's options would free.", float64(rc.Bytes))
		vec(MetricFindings, "Findings of the last run, by kind (every kind, 0 included) and severity.", []string{"kind", "severity"}, func(g *prometheus.GaugeVec) {
			for _, kind := range finding.Kinds() {
				g.WithLabelValues(string(kind), string(kind.Severity())).Set(float64(s.FindingsByKind[kind]))
			}
		})
		vec(MetricProjectBytes, "Space per project (the first component of repository names), by type: total, unique, shared, reclaimable.",
			[]string{"project", "type"}, func(g *prometheus.GaugeVec) {
				for _, p := range s.Projects {
					g.WithLabelValues(p.Name, "total").Set(float64(p.TotalBytes))
					g.WithLabelValues(p.Name, "unique").Set(float64(p.UniqueBytes))
					g.WithLabelValues(p.Name, "shared").Set(float64(p.SharedBytes))
					g.WithLabelValues(p.Name, "reclaimable").Set(float64(p.ReclaimableBytes))
				}
			})
	}
	if res := r.Result; res != nil {
		vec(MetricDeletedObjects, "Objects the last gc deleted, by kind.", []string{"kind"}, func(g *prometheus.GaugeVec) {
			for kind, n := range res.Deleted {
				g.WithLabelValues(kind).Set(float64(n))
			}
		})
		vec(MetricDeleteFailures, "Deletions of the last gc that failed, by kind.", []string{"kind"}, func(g *prometheus.GaugeVec) {
			for kind, n := range res.Failed {
				g.WithLabelValues(kind).Set(float64(n))
			}
		})
		gauge(MetricFreedBytes, "Bytes the last gc freed.", float64(res.FreedBytes))
	}
	return reg, errors.Join(errs...)
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// WriteMetricsFile writes the registry in the Prometheus text format for
// node_exporter's textfile collector: to a temporary file in the same
// directory, renamed over path, so the collector never reads a
// half-written file. The file is mode 0644, unlike plan and report files
// (0600): node_exporter usually runs as another user, and the metrics
// hold counts and durations, never a name, key or secret.
func WriteMetricsFile(path string, g prometheus.Gatherer) error {
	families, err := g.Gather()
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("metrics file: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	enc := expfmt.NewEncoder(tmp, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range families {
		if err := enc.Encode(mf); err != nil {
			tmp.Close()
			return fmt.Errorf("metrics file: %w", err)
		}
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("metrics file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("metrics file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("metrics file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("metrics file: %w", err)
	}
	return nil
}

// PreviousLastSuccess reads regsweep_last_success_timestamp_seconds for
// command from an existing metrics file (0 when there is none), so a
// failed run does not erase when the last good one was.
func PreviousLastSuccess(path, command string) float64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(f)
	if err != nil {
		return 0
	}
	mf := families[MetricLastSuccess]
	if mf == nil {
		return 0
	}
	for _, m := range mf.GetMetric() {
		if labelValue(m, "command") == command && m.GetGauge() != nil {
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// Push sends the registry to a Pushgateway under job and command: a
// successful run replaces the group (PUT); a failed one only replaces the
// metrics it has (POST), keeping the group's last success timestamp.
// Credentials in rawURL go as basic auth and never into an error.
func Push(ctx context.Context, rawURL, job, command string, g prometheus.Gatherer, success bool, client *http.Client) error {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return fmt.Errorf("--pushgateway: not a URL")
	}
	var user *url.Userinfo
	user, u.User = u.User, nil
	// The text format, so what arrives is what --metrics-file holds.
	p := push.New(u.String(), job).Grouping("command", command).Gatherer(g).Format(expfmt.NewFormat(expfmt.TypeTextPlain))
	if user != nil {
		pass, _ := user.Password()
		p = p.BasicAuth(user.Username(), pass)
	}
	if client != nil {
		p = p.Client(client)
	}
	if success {
		err = p.PushContext(ctx)
	} else {
		err = p.AddContext(ctx)
	}
	if err != nil {
		return fmt.Errorf("pushing metrics to %s: %w", u.Redacted(), err)
	}
	return nil
}
