package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pgflow-go/pgflow"
)

var dlqRetryFlags struct {
	filterFlags
	rate float64
	yes  bool
}

var dlqRetryCmd = &cobra.Command{
	Use:     "retry (ID… | --queue QUEUE | --all)",
	Aliases: []string{"redrive"},
	Short:   "Send dead-lettered messages back to their source queue",
	Long: `Redrive dead-lettered messages to the queue they came from: the given
ids, a queue's messages, or all, optionally narrowed with --error, --since,
--until and --priority. Each message moves in one statement, so it is never
in both the DLQ and its queue, nor in neither. It starts fresh (0 retries,
visible now) with its id, payload, headers, priority and error history.

A message whose dedup key is held by a live message stays in the DLQ and is
reported as skipped. --rate limits the messages per second (SQS-style), so
a just-fixed consumer is not flooded.

Bulk redrives (--queue, --all) ask for confirmation on a terminal and need
--yes otherwise. Exit codes: 0 all redriven, 3 some ids were not in the DLQ,
4 not confirmed, 5 some messages were skipped.`,
	Example: `  pgflow dlq retry 42 43
  pgflow dlq retry --queue consensus_results_queue --yes
  pgflow dlq retry --queue metrics_to_guardian_queue --error timeout --since 1h --rate 20
  pgflow dlq retry --all --yes --json`,
	RunE: func(cmd *cobra.Command, args []string) error {
		f, err := dlqSelection(args, &dlqRetryFlags.filterFlags)
		if err != nil {
			return err
		}
		if dlqRetryFlags.rate < 0 {
			return usagef("--rate must not be negative")
		}
		return withClient(cmd, func(c *pgflow.Client) error {
			ctx := cmd.Context()
			if len(f.IDs) == 0 {
				n, err := c.CountDLQ(ctx, f)
				if err != nil {
					return err
				}
				if err := confirm(cmd, dlqRetryFlags.yes, fmt.Sprintf("Redrive %s (%s)?", count(int(n), "dead-lettered message"), describe(f))); err != nil {
					return err
				}
			}
			res, err := c.RedriveDLQ(ctx, f, pgflow.RedriveOptions{RatePerSecond: dlqRetryFlags.rate})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if globals.json {
				if err := printJSON(out, map[string]any{"redriven": res.Redriven, "by_queue": res.ByQueue,
					"skipped": res.Skipped, "not_found": res.NotFound}); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(out, "redriven %s", count(res.Redriven, "message"))
				if res.Redriven > 0 {
					fmt.Fprintf(out, " (%s)", byQueue(res.ByQueue))
				}
				fmt.Fprintln(out)
				for _, s := range res.Skipped {
					fmt.Fprintf(out, "skipped %d (message %d, queue %s): %s\n", s.ID, s.MessageID, s.Queue, s.Reason)
				}
				for _, id := range res.NotFound {
					fmt.Fprintf(out, "not found: %d\n", id)
				}
			}
			if err := notFoundErr(res.NotFound); err != nil {
				return err
			}
			if len(res.Skipped) > 0 {
				return exitError{exitPartial, fmt.Errorf("%d messages skipped", len(res.Skipped))}
			}
			return nil
		})
	},
}

func init() {
	dlqRetryFlags.register(dlqRetryCmd, true, true)
	dlqRetryCmd.Flags().Float64Var(&dlqRetryFlags.rate, "rate", 0, "at most this many messages per second (0: no limit)")
	dlqRetryCmd.Flags().BoolVarP(&dlqRetryFlags.yes, "yes", "y", false, "do not ask for confirmation")
	dlqCmd.AddCommand(dlqRetryCmd)
}
