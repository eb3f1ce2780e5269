package main

import (
	"bufio"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/regsweep/regsweep/lock"
	"github.com/regsweep/regsweep/storage"
)

type unlockOptions struct{ yes bool }

func newUnlockCommand(g *globalOptions) *cobra.Command {
	o := &unlockOptions{}
	cmd := &cobra.Command{
		Use:   "unlock",
		Short: "Remove the storage lock left by a regsweep run that is gone",
		Long: `Show who holds the storage lock and remove it after confirmation (or with --yes).
Only do this when that run is really gone: two runs deleting at once is what the lock prevents.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			d, _, err := g.openStorage(ctx, cmd.Flags(), false, nil)
			if err != nil {
				return err
			}
			info, err := lock.Read(ctx, d)
			if storage.IsNotFound(err) {
				fmt.Fprintln(g.stdout, "no lock is held")
				return nil
			}
			if err != nil {
				fmt.Fprintf(g.stdout, "the lock %s is unreadable (%v)\n", lock.Key, err)
			} else {
				fmt.Fprintf(g.stdout, "lock %s held by %q, pid %d on %s, since %s, last refreshed %s ago\n",
					lock.Key, info.Command, info.PID, info.Hostname, info.StartedAt.Format(time.RFC3339), time.Since(info.RefreshedAt).Round(time.Second))
			}
			if !o.yes {
				fmt.Fprint(g.stdout, "remove it? type yes: ")
				answer, _ := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if strings.TrimSpace(answer) != "yes" {
					return usageError{fmt.Errorf("not confirmed; the lock stays")}
				}
			}
			if err := lock.Remove(ctx, d); err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, "lock removed")
			return nil
		},
	}
	cmd.Flags().BoolVar(&o.yes, "yes", false, "do not ask for confirmation")
	return cmd
}
