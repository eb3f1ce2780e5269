package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/regsweep/regsweep/gc"
	"github.com/regsweep/regsweep/harbordb"
	"github.com/regsweep/regsweep/harborgc"
)

// harborOptions are the Harbor-mode flags of gc and audit.
type harborOptions struct {
	db             string
	redis          string
	history        bool
	behindLookback time.Duration
}

func (h *harborOptions) addFlags(f *pflag.FlagSet, deleting bool) {
	f.StringVar(&h.db, "harbor-db", "", "Harbor mode: Harbor's PostgreSQL, postgres://user:pass@host:5432/registry (or harbor-core's POSTGRESQL_* env); prefer REGSWEEP_HARBOR_DB")
	f.DurationVar(&h.behindLookback, "harbor-behind-lookback", harborgc.MinBehindLookback,
		"Harbor mode: refuse (exit 10) when revision links written this long (or --grace, if longer) before the snapshot name manifests the database has no row for (a restored backup); at least 1h")
	if deleting {
		f.StringVar(&h.redis, "harbor-redis", "", "Harbor mode: the registry's Redis, redis://host:6379/1, whose blobs::* and repository::* keys a deleting run purges before its walk, after the links and after the sweep")
		f.BoolVar(&h.history, "harbor-history", true, "Harbor mode: record a deleting run in Harbor's GC history (execution, task and job log)")
	}
}

// openHarbor opens Harbor mode's participant, or returns nil outside
// Harbor mode (no --harbor-db, no harbor-core POSTGRESQL_* environment).
// Every failure here comes before the storage walk.
func openHarbor(ctx context.Context, h *harborOptions, window time.Duration, deleteUntagged, deleting bool, log *slog.Logger) (*harborgc.Participant, error) {
	cfg, ok, err := h.config()
	if err != nil || !ok {
		return nil, err
	}
	if h.behindLookback < harborgc.MinBehindLookback {
		return nil, usageError{fmt.Errorf("--harbor-behind-lookback %s: at least %s (it can only widen the check for a database behind storage)", h.behindLookback, harborgc.MinBehindLookback)}
	}
	return harborgc.Open(ctx, harborgc.Options{DB: cfg, Window: window, BehindLookback: h.behindLookback, DeleteUntagged: deleteUntagged, Redis: h.redis,
		History: h.history, Deleting: deleting, Log: log})
}

// config is Harbor mode's database, from --harbor-db or harbor-core's
// POSTGRESQL_* environment; ok is false outside Harbor mode.
func (h *harborOptions) config() (cfg harbordb.Config, ok bool, err error) {
	if h.db != "" {
		return harbordb.Config{URL: h.db}, true, nil
	}
	if cfg, ok, err = harbordb.ConfigFromEnv(os.Getenv); err != nil {
		return cfg, ok, usageError{err}
	}
	return cfg, ok, nil
}

// participants is the run's participants besides gc's own: Harbor mode's
// when on.
func participants(hb *harborgc.Participant) []gc.Participant {
	if hb == nil {
		return nil
	}
	return []gc.Participant{hb}
}
