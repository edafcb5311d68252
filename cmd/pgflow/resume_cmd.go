package main

import "github.com/spf13/cobra"

var resumeCmd = &cobra.Command{
	Use:   "resume QUEUE",
	Short: "Let consumers claim a paused queue's messages again",
	Long: `Resume a paused queue and wake its consumers (LISTEN/NOTIFY), so they
start claiming at once rather than at their next poll. Resuming a queue that
is not paused is a no-op.`,
	Example: `  pgflow resume metrics_to_guardian_queue`,
	Args:    usageArgs(cobra.ExactArgs(1)),
	RunE: func(cmd *cobra.Command, args []string) error {
		return setPausedCmd(cmd, args[0], false)
	},
}

func init() { rootCmd.AddCommand(resumeCmd) }
