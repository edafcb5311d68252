package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/pgflow-go/pgflow"
)

var queuesCmd = &cobra.Command{
	Use:   "queues",
	Short: "List queues with their depth, dead letters and settings",
	Long: `List every queue: whether it is paused, how many messages are ready,
delayed, retrying (backing off after a failure) and in flight, how many are
in the dead-letter queue, how long the oldest ready message has waited, and
the queue's retry settings, its message expiry and its dead-letter retention
("-": off).`,
	Example: `  pgflow queues
  pgflow queues --json | jq '.[] | select(.dead_lettered > 100)'`,
	Args: usageArgs(cobra.NoArgs),
	RunE: func(cmd *cobra.Command, _ []string) error {
		return withClient(cmd, func(c *pgflow.Client) error {
			ctx := cmd.Context()
			stats, err := c.AllQueueStats(ctx)
			if err != nil {
				return err
			}
			byName, err := queueDefinitions(ctx, c)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if globals.json {
				return printJSON(out, queueViews(stats, byName))
			}
			t := newTable(out, "QUEUE", "PAUSED", "READY", "DELAYED", "RETRYING", "IN FLIGHT", "DLQ", "OLDEST READY", "MAX RETRIES", "RETRY DELAY", "LEASE",
				"EXPIRY", "DLQ RETENTION")
			for _, s := range stats {
				d := byName[s.Queue]
				t.row(s.Queue, yesNo(s.Paused), itoa(s.Pending), itoa(s.Delayed), itoa(s.Retrying), itoa(s.InFlight),
					itoa(s.DeadLettered), fmtAge(s.OldestReadyAge), itoa(int64(d.MaxRetries)), d.RetryDelay.String(), d.LeaseTimeout.String(),
					fmtLifetime(d.Expiry), fmtLifetime(d.DLQRetention))
			}
			return t.flush()
		})
	},
}

// queueView is a queue's JSON form (queues and stats).
type queueView struct {
	Queue              string       `json:"queue"`
	Paused             bool         `json:"paused"`
	Ready              int64        `json:"ready"`
	Delayed            int64        `json:"delayed"`
	Retrying           int64        `json:"retrying"`
	InFlight           int64        `json:"in_flight"`
	DeadLettered       int64        `json:"dead_lettered"`
	LastDeadLetteredAt *string      `json:"last_dead_lettered_at"`
	OldestReadyAgeS    float64      `json:"oldest_ready_age_seconds"`
	Consumers          []string     `json:"consumers"`
	MaxRetries         int          `json:"max_retries"`
	RetryDelayMS       int64        `json:"retry_delay_ms,omitempty"`
	MaxRetryDelayMS    int64        `json:"max_retry_delay_ms,omitempty"`
	LeaseMS            int64        `json:"lease_ms,omitempty"`
	Priority           int          `json:"priority"`
	ExpiryMS           int64        `json:"expiry_ms"`        // 0: off
	DLQRetentionMS     int64        `json:"dlq_retention_ms"` // 0: off
	Windows            []windowView `json:"windows"`
}

type windowView struct {
	Window       string `json:"window"`
	Seconds      int64  `json:"seconds"`
	Handled      int64  `json:"handled"`
	Failed       int64  `json:"failed"`
	DeadLettered int64  `json:"dead_lettered"`
	Expired      int64  `json:"expired"`
	DLQDeleted   int64  `json:"dlq_deleted"`
}

// queueDefinitions returns every queue's stored settings by name.
func queueDefinitions(ctx context.Context, c *pgflow.Client) (map[string]pgflow.QueueInfo, error) {
	defs, err := c.ListQueues(ctx)
	if err != nil {
		return nil, err
	}
	byName := make(map[string]pgflow.QueueInfo, len(defs))
	for _, d := range defs {
		byName[d.Name] = d
	}
	return byName, nil
}

// queueViews joins stats with the queues' settings for JSON output.
func queueViews(stats []pgflow.QueueStats, byName map[string]pgflow.QueueInfo) []queueView {
	views := make([]queueView, 0, len(stats))
	for _, s := range stats {
		views = append(views, newQueueView(s, byName[s.Queue]))
	}
	return views
}

func newQueueView(s pgflow.QueueStats, d pgflow.QueueInfo) queueView {
	v := queueView{
		Queue: s.Queue, Paused: s.Paused, Ready: s.Pending, Delayed: s.Delayed, Retrying: s.Retrying,
		InFlight: s.InFlight, DeadLettered: s.DeadLettered, OldestReadyAgeS: s.OldestReadyAge.Seconds(),
		Consumers: s.Consumers, MaxRetries: s.MaxRetries,
		RetryDelayMS: d.RetryDelay.Milliseconds(), MaxRetryDelayMS: d.MaxRetryDelay.Milliseconds(),
		LeaseMS: d.LeaseTimeout.Milliseconds(), Priority: d.Priority,
		ExpiryMS: s.Expiry.Milliseconds(), DLQRetentionMS: s.DLQRetention.Milliseconds(),
		Windows: []windowView{},
	}
	if !s.LastDeadLetteredAt.IsZero() {
		ts := s.LastDeadLetteredAt.UTC().Format("2006-01-02T15:04:05.999999Z07:00")
		v.LastDeadLetteredAt = &ts
	}
	for _, w := range s.Windows {
		v.Windows = append(v.Windows, windowView{Window: fmtWindow(w.Window), Seconds: int64(w.Window.Seconds()),
			Handled: w.Handled, Failed: w.Failed, DeadLettered: w.DeadLettered, Expired: w.Expired, DLQDeleted: w.DLQDeleted})
	}
	return v
}

func init() { rootCmd.AddCommand(queuesCmd) }
