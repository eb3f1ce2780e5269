package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/regsweep/regsweep/backend"
	"github.com/regsweep/regsweep/sweep"
)

// --require-readonly: a deleting gc runs only while the registry cannot take
// pushes. The registry has no lock regsweep could take, so in plain-registry
// mode its read-only maintenance mode is the one way to close the window
// between the last recheck and the deletions (docs/safety.md).

// guardRegistryNotReadOnly names the refusal in reports and messages.
const guardRegistryNotReadOnly = "registry_not_readonly"

// notReadOnlyError refuses a deleting run. It unwraps to a guard so that it
// exits 6 like the other safety refusals; unlike them --force does not
// override it: the operator asked for this check explicitly.
type notReadOnlyError struct {
	config, reason string
	guard          *sweep.GuardError
}

func newNotReadOnlyError(config, reason string) notReadOnlyError {
	return notReadOnlyError{config: config, reason: reason,
		guard: &sweep.GuardError{Guards: []sweep.Guard{{Name: guardRegistryNotReadOnly, Message: reason}}}}
}

func (e notReadOnlyError) Error() string {
	return fmt.Sprintf("refusing to delete (%s): --require-readonly is set and the registry configured by %s is not in read-only mode: %s; "+
		"set storage.maintenance.readonly.enabled: true and restart the registry for the run, or drop --require-readonly",
		guardRegistryNotReadOnly, e.config, e.reason)
}

func (e notReadOnlyError) Unwrap() error { return e.guard }

// checkRequireReadonly enforces --require-readonly before anything is opened:
// without the registry's config.yml there is nothing to check (a usage
// error); a deleting run against a registry that is not read-only is
// refused; a dry run only warns, since it deletes nothing.
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
	ok, reason := registryReadOnly(raw, env)
	switch {
	case ok:
		log.Info("the registry is configured read-only", "registry_config", registryConfig)
		return nil
	case deleting:
		return newNotReadOnlyError(registryConfig, reason)
	}
	log.Warn("a deleting run would refuse: the registry is not configured read-only", "registry_config", registryConfig, "reason", reason)
	return nil
}

// registryReadOnly reports whether distribution would serve read-only with
// config.yml raw and environment env, and if not, why. It reads the storage
// section exactly as --registry-config does (backend.ReadRegistryStorage);
// a configuration the registry would not start with counts as not
// read-only.
func registryReadOnly(raw []byte, env []string) (bool, string) {
	storage, err := backend.ReadRegistryStorage(raw, env)
	if err != nil {
		return false, err.Error()
	}
	return storage.ReadOnly()
}
