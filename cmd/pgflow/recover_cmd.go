package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pgflow-go/pgflow"
)

var recoverFlags struct {
	yes bool
}

var recoverCmd = &cobra.Command{
	Use:   "recover",
	Short: "Prepare a restored database: hand back every lease, fix id sequences",
	Long: `Run once after restoring pgflow's tables from a backup (pg_restore, or a
physical backup brought back to a point in time), before starting consumers
on the restored database.

The messages that consumers held when the backup was taken come back at
once, visible now and without counting a failed attempt, instead of waiting
for their old leases to run out. The id sequences are put past every id in
use. Prints how many messages were released, per queue.

Every lease is released, also those of consumers running now (their
deliveries would then be repeated, not lost): hence the confirmation, asked
on a terminal and needed as --yes otherwise. Exit codes: 0 done, 4 not
confirmed.`,
	Example: `  pg_restore -d pgflow_restored pgflow.dump && pgflow recover --database-url postgres:///pgflow_restored --yes`,
	Args:    usageArgs(cobra.NoArgs),
	RunE: func(cmd *cobra.Command, _ []string) error {
		return withClient(cmd, func(c *pgflow.Client) error {
			ctx := cmd.Context()
			if err := confirm(cmd, recoverFlags.yes, "Release every lease of this database (no consumer may be running on it)?"); err != nil {
				return err
			}
			released, err := c.Recover(ctx)
			if err != nil {
				return err
			}
			total := 0
			for _, n := range released {
				total += n
			}
			out := cmd.OutOrStdout()
			if globals.json {
				return printJSON(out, map[string]any{"released": total, "by_queue": released})
			}
			fmt.Fprintf(out, "released %s", count(total, "message"))
			if total > 0 {
				fmt.Fprintf(out, " (%s)", byQueue(released))
			}
			fmt.Fprintln(out)
			return nil
		})
	},
}

func init() {
	recoverCmd.Flags().BoolVarP(&recoverFlags.yes, "yes", "y", false, "do not ask for confirmation")
	rootCmd.AddCommand(recoverCmd)
}
