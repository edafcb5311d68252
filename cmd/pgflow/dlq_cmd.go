package main

import (
	"encoding/json"

	"github.com/spf13/cobra"

	"github.com/pgflow-go/pgflow"
)

var dlqCmd = &cobra.Command{
	Use:   "dlq",
	Short: "Inspect, redrive and purge the dead-letter queue",
	Long: `Messages that ran out of retries, or failed permanently, wait in the
dead-letter queue with their payload, headers, source queue and every
attempt's error. List them, show one, send them back to their queue once
the bug is fixed (retry), or delete them (purge).`,
	Example: `  pgflow dlq list --queue consensus_results_queue
  pgflow dlq show 42
  pgflow dlq retry --queue consensus_results_queue --rate 50
  pgflow dlq purge --all --yes`,
}

type dlqView struct {
	ID               int64                 `json:"id"`
	MessageID        int64                 `json:"message_id"`
	Queue            string                `json:"queue"`
	Priority         int                   `json:"priority"`
	DedupKey         string                `json:"dedup_key,omitempty"`
	Error            string                `json:"error"`
	Reason           string                `json:"reason"` // failed or expired
	Errors           []pgflow.AttemptError `json:"errors"`
	RetryCount       int                   `json:"retry_count"`
	Attempts         int                   `json:"attempts"`
	MessageCreatedAt string                `json:"message_created_at"`
	DeadLetteredAt   string                `json:"dead_lettered_at"`
	Payload          json.RawMessage       `json:"payload"`
	Headers          map[string]string     `json:"headers"`
}

func newDLQView(m pgflow.DLQMessage) dlqView {
	return dlqView{
		ID: m.ID, MessageID: m.MessageID, Queue: m.Queue, Priority: m.Priority, DedupKey: m.DedupKey,
		Error: m.Error, Reason: m.Reason, Errors: m.Errors, RetryCount: m.RetryCount, Attempts: m.Attempts,
		MessageCreatedAt: m.MessageCreatedAt.UTC().Format(jsonTime), DeadLetteredAt: m.DeadLetteredAt.UTC().Format(jsonTime),
		Payload: m.Payload, Headers: m.Headers,
	}
}

func init() { rootCmd.AddCommand(dlqCmd) }
