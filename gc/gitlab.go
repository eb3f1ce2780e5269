package gc

import (
	"context"
	"fmt"

	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/sweep"
)

// DatabaseInUseKey is GitLab's lockfile: a registry whose metadata lives
// in GitLab's database must not be collected offline.
const DatabaseInUseKey = "docker/registry/lockfiles/database-in-use"

// GitLab is the participant that refuses a registry GitLab's metadata
// database manages (guard database_in_use), on every plan: gc's and a
// reviewed one's, judged on the storage as it is then.
type GitLab struct{ Passive }

func (GitLab) At(ctx context.Context, stage Stage, a *Analysis) error {
	if stage != Planned {
		return nil
	}
	_, err := a.Store.Stat(ctx, DatabaseInUseKey)
	switch {
	case storage.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("checking GitLab's database-in-use lockfile: %w", err)
	}
	a.Plan.Guards = append(a.Plan.Guards, sweep.Guard{Name: sweep.GuardDatabaseInUse,
		Message: DatabaseInUseKey + " exists: this registry is managed by GitLab's metadata database, offline garbage collection would corrupt it"})
	return nil
}
