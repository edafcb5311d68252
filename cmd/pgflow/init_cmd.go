package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pgflow-go/pgflow/migrate"
)

var initCmd = &cobra.Command{
	Use:     "init",
	Aliases: []string{"migrate"},
	Short:   "Create or upgrade pgflow's tables (pgflow_queues, pgflow_messages, pgflow_dlq)",
	Long: `Create or upgrade pgflow's tables in the schema. Safe to run again (a no-op
when up to date) and from several processes at once (an advisory lock
serialises them).`,
	Example: `  PGFLOW_DATABASE_URL=postgres://localhost/singularity pgflow init
  pgflow init --database-url postgres://localhost/central_services --schema pgflow`,
	Args: cobra.NoArgs,
	RunE: func(cmd *cobra.Command, _ []string) error {
		ctx := cmd.Context()
		pool, err := openPool(ctx)
		if err != nil {
			return err
		}
		defer pool.Close()
		res, err := migrate.Up(ctx, pool, schemaName())
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if globals.json {
			applied := make([]string, len(res.Applied))
			for i, m := range res.Applied {
				applied[i] = fmt.Sprintf("%04d_%s", m.Version, m.Name)
			}
			return json.NewEncoder(out).Encode(map[string]any{"schema": res.Schema, "version": res.Version, "applied": applied})
		}
		if len(res.Applied) == 0 {
			fmt.Fprintf(out, "pgflow schema %q is up to date (version %d)\n", res.Schema, res.Version)
			return nil
		}
		for _, m := range res.Applied {
			fmt.Fprintf(out, "applied %04d_%s\n", m.Version, m.Name)
		}
		fmt.Fprintf(out, "pgflow schema %q is at version %d\n", res.Schema, res.Version)
		return nil
	},
}

func init() { rootCmd.AddCommand(initCmd) }
