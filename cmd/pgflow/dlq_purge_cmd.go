package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pgflow-go/pgflow"
)

var dlqPurgeFlags struct {
	filterFlags
	yes       bool
	olderThan string
}

var dlqPurgeCmd = &cobra.Command{
	Use:   "purge (ID… | --queue QUEUE | --all | --older-than AGE)",
	Short: "Delete dead-lettered messages for good",
	Long: `Delete dead-lettered messages: the given ids, a queue's messages, or all,
optionally narrowed with --error, --since, --until and --priority; or every
message dead-lettered longer ago than --older-than (7d, 36h; by this
machine's clock), of every queue or of --queue. Prints how many were
deleted, per queue. To do this continuously, set the queue's dlq_retention.

Asks for confirmation on a terminal and needs --yes otherwise. Exit codes:
0 done, 3 some ids were not in the DLQ, 4 not confirmed.`,
	Example: `  pgflow dlq purge 42
  pgflow dlq purge --queue patterns_for_aggregator_queue --until 2026-01-01
  pgflow dlq purge --all --yes
  pgflow dlq purge --older-than 7d --yes`,
	RunE: func(cmd *cobra.Command, args []string) error {
		ff := &dlqPurgeFlags.filterFlags
		if dlqPurgeFlags.olderThan != "" {
			if ff.until != "" {
				return usagef("give --older-than or --until, not both")
			}
			d, err := parseDuration(dlqPurgeFlags.olderThan)
			if err != nil || d <= 0 {
				return usagef("--older-than %q: want a positive duration such as 7d or 36h", dlqPurgeFlags.olderThan)
			}
			if len(args) > 0 {
				return usagef("give message ids or --older-than, not both")
			}
			ff.until = d.String()
			if ff.queue == "" {
				ff.all = true // every queue's old dead letters; --until narrows it
			}
		}
		f, err := dlqSelection(args, ff)
		if err != nil {
			return err
		}
		return withClient(cmd, func(c *pgflow.Client) error {
			ctx := cmd.Context()
			n, err := c.CountDLQ(ctx, f)
			if err != nil {
				return err
			}
			if err := confirm(cmd, dlqPurgeFlags.yes, fmt.Sprintf("Delete %s (%s) for good?", count(int(n), "dead-lettered message"), describe(f))); err != nil {
				return err
			}
			res, err := c.PurgeDLQ(ctx, f)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if globals.json {
				if err := printJSON(out, map[string]any{"purged": res.Purged, "by_queue": res.ByQueue, "not_found": res.NotFound}); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(out, "purged %s", count(res.Purged, "message"))
				if res.Purged > 0 {
					fmt.Fprintf(out, " (%s)", byQueue(res.ByQueue))
				}
				fmt.Fprintln(out)
				for _, id := range res.NotFound {
					fmt.Fprintf(out, "not found: %d\n", id)
				}
			}
			return notFoundErr(res.NotFound)
		})
	},
}

func init() {
	dlqPurgeFlags.register(dlqPurgeCmd, true, true)
	dlqPurgeCmd.Flags().BoolVarP(&dlqPurgeFlags.yes, "yes", "y", false, "do not ask for confirmation")
	dlqPurgeCmd.Flags().StringVar(&dlqPurgeFlags.olderThan, "older-than", "", "select messages dead-lettered longer ago than this (7d, 36h)")
	dlqCmd.AddCommand(dlqPurgeCmd)
}
