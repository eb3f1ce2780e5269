package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/regsweep/regsweep/backend"
	"github.com/regsweep/regsweep/gc"
	"github.com/regsweep/regsweep/lock"
)

// checkRequireReadonly enforces --require-readonly before anything is
// opened: without the registry's config.yml there is nothing to check (a
// usage error); otherwise gc.RequireReadOnly judges the registry's
// verdict, read as distribution would.
func checkRequireReadonly(require, deleting bool, registryConfig string, env []string, log *slog.Logger) error {
	if !require {
		return nil
	}
	if registryConfig == "" {
		return usageError{errors.New("--require-readonly needs --registry-config FILE: the registry's own config.yml, " +
			"whose storage.maintenance.readonly.enabled must be true")}
	}
	raw, err := os.ReadFile(registryConfig)
	if err != nil {
		return usageError{fmt.Errorf("--require-readonly: reading the registry config: %w", err)}
	}
	ok, reason := backend.RegistryReadOnly(raw, env)
	return gc.RequireReadOnly(registryConfig, ok, reason, deleting, log)
}

// checkClock refuses a deleting run whose clock is ahead of the storage's
// (gc.CheckClock).
func checkClock(held *lock.Held, force bool, log *slog.Logger, windows ...time.Duration) error {
	return gc.CheckClock(held, force, log, windows...)
}
