package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pgflow-go/pgflow"
)

var dlqListFlags struct {
	filterFlags
	limit  int
	cursor string
}

var dlqListCmd = &cobra.Command{
	Use:   "list",
	Short: "List dead-lettered messages, newest first",
	Long: `List dead-lettered messages, newest first, with their last error.
Filters combine. Pages with --limit; when more follow, the cursor for the
next page is printed on stderr (and as next_cursor in --json).`,
	Example: `  pgflow dlq list
  pgflow dlq list --queue consensus_results_queue --since 2h
  pgflow dlq list --error "connection refused" --limit 20
  pgflow dlq list --json | jq -r '.messages[].error' | sort | uniq -c`,
	Args: usageArgs(cobra.NoArgs),
	RunE: func(cmd *cobra.Command, _ []string) error {
		f, err := dlqListFlags.dlqFilter(nil)
		if err != nil {
			return err
		}
		return withClient(cmd, func(c *pgflow.Client) error {
			page, err := c.ListDLQ(cmd.Context(), pgflow.DLQListOptions{DLQFilter: f, Limit: dlqListFlags.limit, Cursor: dlqListFlags.cursor})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if globals.json {
				views := make([]dlqView, 0, len(page.Messages))
				for _, m := range page.Messages {
					views = append(views, newDLQView(m))
				}
				return printJSON(out, map[string]any{"messages": views, "next_cursor": page.NextCursor})
			}
			t := newTable(out, "ID", "MESSAGE", "QUEUE", "PRIORITY", "ATTEMPTS", "DEAD-LETTERED AT", "ERROR")
			for _, m := range page.Messages {
				t.row(itoa(m.ID), itoa(m.MessageID), m.Queue, fmt.Sprint(m.Priority), fmt.Sprint(m.Attempts),
					fmtTime(m.DeadLetteredAt), clip(m.Error, 60))
			}
			if err := t.flush(); err != nil {
				return err
			}
			if page.NextCursor != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "more: --cursor %s\n", page.NextCursor)
			}
			return nil
		})
	},
}

func init() {
	dlqListFlags.register(dlqListCmd, true, false)
	dlqListCmd.Flags().IntVarP(&dlqListFlags.limit, "limit", "n", 100, "page size, at most 1000")
	dlqListCmd.Flags().StringVar(&dlqListFlags.cursor, "cursor", "", "continue after the previous page (printed on stderr)")
	dlqCmd.AddCommand(dlqListCmd)
}
