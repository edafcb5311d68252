package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/pgflow-go/pgflow"
)

var dlqShowCmd = &cobra.Command{
	Use:   "show ID",
	Short: "Show one dead-lettered message with its full attempt history",
	Long: `Show one dead-lettered message: its source queue and original id,
priority, headers, payload, and every failed attempt's error, oldest first
(a message that was redriven before keeps the errors of its earlier runs).
Exits with 3 when the id is not in the dead-letter queue.`,
	Example: `  pgflow dlq show 42
  pgflow dlq show 42 --json | jq .payload`,
	Args: usageArgs(cobra.ExactArgs(1)),
	RunE: func(cmd *cobra.Command, args []string) error {
		id, err := strconv.ParseInt(args[0], 10, 64)
		if err != nil || id <= 0 {
			return usagef("%q is not a message id", args[0])
		}
		return withClient(cmd, func(c *pgflow.Client) error {
			m, err := c.DLQMessage(cmd.Context(), id)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if globals.json {
				return printJSON(out, newDLQView(m))
			}
			dedup := m.DedupKey
			if dedup == "" {
				dedup = "-"
			}
			kv := newTable(out)
			for _, l := range [][2]string{
				{"id", itoa(m.ID)},
				{"message id", itoa(m.MessageID)},
				{"queue", m.Queue},
				{"priority", fmt.Sprint(m.Priority)},
				{"dedup key", dedup},
				{"published at", fmtTime(m.MessageCreatedAt)},
				{"dead-lettered at", fmtTime(m.DeadLetteredAt)},
				{"reason", m.Reason},
				{"attempts", fmt.Sprintf("%d (%d failed)", m.Attempts, m.RetryCount)},
				{"last error", m.Error},
			} {
				kv.row(l[0]+":", l[1])
			}
			keys := make([]string, 0, len(m.Headers))
			for k := range m.Headers {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				kv.row("header:", k+"="+m.Headers[k])
			}
			if err := kv.flush(); err != nil {
				return err
			}
			var pretty bytes.Buffer
			if json.Indent(&pretty, m.Payload, "", "  ") != nil {
				pretty.Reset()
				pretty.Write(m.Payload)
			}
			fmt.Fprintf(out, "\npayload:\n%s\n\n", pretty.String())
			t := newTable(out, "ATTEMPT", "AT", "ERROR")
			for _, e := range m.Errors {
				t.row(fmt.Sprint(e.Attempt), fmtTime(e.At), clip(e.Error, 100))
			}
			return t.flush()
		})
	},
}

func init() { dlqCmd.AddCommand(dlqShowCmd) }
