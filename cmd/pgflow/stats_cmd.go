package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgflow-go/pgflow"
)

var statsCmd = &cobra.Command{
	Use:   "stats [QUEUE]",
	Short: "Show queue statistics: depth, age, throughput, failures, consumers",
	Long: `Show statistics of one queue in detail, or of every queue as a table.

ready      messages claimable now
delayed    published with a delay that is not over
retrying   failed, waiting for their backoff to end
in flight  leased by a consumer right now
dlq        dead-lettered messages of the queue
oldest     how long the oldest ready message has waited to be claimed
handled / failed / dead-lettered in the last 1 min, 5 min and 1 h, from
the counters every client writes every 5 s (minute buckets); expired
(moved to the DLQ unclaimed at their expiry, also counted as dead-lettered)
and dlq deleted (dead letters past the queue's retention) likewise
expiry / dlq retention  the queue's settings ("-": off)
consumers  consumer ids holding leases on the queue now`,
	Example: `  pgflow stats
  pgflow stats proposals_for_consensus_queue
  pgflow stats proposals_for_consensus_queue --json | jq .oldest_ready_age_seconds`,
	Args: usageArgs(cobra.MaximumNArgs(1)),
	RunE: func(cmd *cobra.Command, args []string) error {
		return withClient(cmd, func(c *pgflow.Client) error {
			ctx := cmd.Context()
			out := cmd.OutOrStdout()
			if len(args) == 1 {
				s, err := c.QueueStats(ctx, args[0])
				if err != nil {
					return err
				}
				d, err := c.Queue(ctx, args[0])
				if err != nil {
					return err
				}
				if globals.json {
					return printJSON(out, newQueueView(s, d))
				}
				return printQueueStats(out, s, d)
			}
			all, err := c.AllQueueStats(ctx)
			if err != nil {
				return err
			}
			if globals.json {
				byName, err := queueDefinitions(ctx, c)
				if err != nil {
					return err
				}
				return printJSON(out, queueViews(all, byName))
			}
			t := newTable(out, "QUEUE", "READY", "IN FLIGHT", "DLQ", "OLDEST READY",
				"HANDLED 1m/5m/1h", "FAILED 1m/5m/1h", "DEAD 1m/5m/1h", "EXPIRED 1m/5m/1h", "EXPIRY", "DLQ RETENTION", "CONSUMERS")
			for _, s := range all {
				t.row(s.Queue, itoa(s.Pending), itoa(s.InFlight), itoa(s.DeadLettered), fmtAge(s.OldestReadyAge),
					windows(s, func(w pgflow.StatsWindow) int64 { return w.Handled }),
					windows(s, func(w pgflow.StatsWindow) int64 { return w.Failed }),
					windows(s, func(w pgflow.StatsWindow) int64 { return w.DeadLettered }),
					windows(s, func(w pgflow.StatsWindow) int64 { return w.Expired }),
					fmtLifetime(s.Expiry), fmtLifetime(s.DLQRetention),
					strconv.Itoa(len(s.Consumers)))
			}
			return t.flush()
		})
	},
}

func printQueueStats(w io.Writer, s pgflow.QueueStats, d pgflow.QueueInfo) error {
	consumers := "-"
	if len(s.Consumers) > 0 {
		consumers = strings.Join(s.Consumers, ", ")
	}
	lines := [][2]string{
		{"queue", s.Queue},
		{"paused", yesNo(s.Paused)},
		{"ready", itoa(s.Pending)},
		{"delayed", itoa(s.Delayed)},
		{"retrying", itoa(s.Retrying)},
		{"in flight", itoa(s.InFlight)},
		{"dead-lettered", itoa(s.DeadLettered)},
		{"last dead letter", fmtTime(s.LastDeadLetteredAt)},
		{"oldest ready", fmtAge(s.OldestReadyAge)},
		{"consumers", consumers},
		{"settings", fmt.Sprintf("max_retries=%d retry_delay=%v max_retry_delay=%v lease=%v priority=%d",
			d.MaxRetries, d.RetryDelay, d.MaxRetryDelay, d.LeaseTimeout, d.Priority)},
		{"expiry", fmtLifetime(d.Expiry)},
		{"dlq retention", fmtLifetime(d.DLQRetention)},
	}
	t := newTable(w) // key: value lines, no header
	for _, l := range lines {
		t.row(l[0]+":", l[1])
	}
	if err := t.flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	wt := newTable(w, "WINDOW", "HANDLED", "FAILED", "DEAD-LETTERED", "EXPIRED", "DLQ DELETED")
	for _, win := range s.Windows {
		wt.row(fmtWindow(win.Window), itoa(win.Handled), itoa(win.Failed), itoa(win.DeadLettered), itoa(win.Expired), itoa(win.DLQDeleted))
	}
	return wt.flush()
}

func windows(s pgflow.QueueStats, f func(pgflow.StatsWindow) int64) string {
	parts := make([]string, len(s.Windows))
	for i, w := range s.Windows {
		parts[i] = itoa(f(w))
	}
	return strings.Join(parts, "/")
}

func fmtWindow(d time.Duration) string {
	if d >= time.Hour {
		return fmt.Sprintf("%dh", int(d/time.Hour))
	}
	return fmt.Sprintf("%dm", int(d/time.Minute))
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func init() { rootCmd.AddCommand(statsCmd) }
