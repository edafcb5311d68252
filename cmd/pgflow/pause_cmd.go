package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pgflow-go/pgflow"
)

var pauseCmd = &cobra.Command{
	Use:   "pause QUEUE",
	Short: "Stop consumers from claiming a queue's messages, on every instance",
	Long: `Pause a queue. The consumers' claim statement checks the flag, so from
the moment this returns no consumer, in any process, claims the queue's
messages. Messages already claimed finish normally; publishing still works,
so messages pile up until 'pgflow resume'. Pausing a paused queue is a
no-op.`,
	Example: `  pgflow pause metrics_to_guardian_queue
  pgflow pause metrics_to_guardian_queue --json`,
	Args: usageArgs(cobra.ExactArgs(1)),
	RunE: func(cmd *cobra.Command, args []string) error {
		return setPausedCmd(cmd, args[0], true)
	},
}

func setPausedCmd(cmd *cobra.Command, queue string, paused bool) error {
	return withClient(cmd, func(c *pgflow.Client) error {
		var err error
		if paused {
			err = c.PauseQueue(cmd.Context(), queue)
		} else {
			err = c.ResumeQueue(cmd.Context(), queue)
		}
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if globals.json {
			return printJSON(out, map[string]any{"queue": queue, "paused": paused})
		}
		verb := "paused"
		if !paused {
			verb = "resumed"
		}
		fmt.Fprintf(out, "%s queue %s\n", verb, queue)
		return nil
	})
}

func init() { rootCmd.AddCommand(pauseCmd) }
