package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pgflow-go/pgflow"
)

var pendingFlags struct {
	filterFlags
	limit    int
	cursor   string
	inFlight bool
}

var pendingCmd = &cobra.Command{
	Use:   "pending QUEUE",
	Short: "List a queue's waiting messages in the order they will be claimed",
	Long: `List a queue's pending messages (not those in flight), highest priority
first, then by visible time and id: the order consumers claim them.
STATE is ready (claimable now), delayed, or retrying (backing off after a
failure; LAST ERROR says why). Pages with --limit; when more follow, the
cursor for the next page is printed on stderr (and as next_cursor in --json).

--since/--until filter on the publish time here.

With --in-flight it lists the messages consumers hold leases on instead,
the lease closest to expiry first: who processes what, on which attempt,
and which leases ran out (the consumer crashed or hung; the lease rescuer
takes those back within a second).`,
	Example: `  pgflow pending consensus_results_queue
  pgflow pending consensus_results_queue --limit 50 --error timeout
  pgflow pending rollback_triggers_queue --priority 10 --since 1h
  pgflow pending consensus_results_queue --cursor MTA6MTc2NzIyNTYwMDAwMDAwMDo0Mg
  pgflow pending consensus_results_queue --in-flight`,
	Args: usageArgs(cobra.ExactArgs(1)),
	RunE: func(cmd *cobra.Command, args []string) error {
		f := pgflow.PendingFilter{Limit: pendingFlags.limit, Cursor: pendingFlags.cursor, ErrorContains: pendingFlags.errText}
		var err error
		if f.CreatedAfter, err = parseWhen("since", pendingFlags.since); err != nil {
			return err
		}
		if f.CreatedBefore, err = parseWhen("until", pendingFlags.until); err != nil {
			return err
		}
		if f.Priority, err = parsePriority(pendingFlags.priority); err != nil {
			return err
		}
		return withClient(cmd, func(c *pgflow.Client) error {
			ctx := cmd.Context()
			if _, err := c.Queue(ctx, args[0]); err != nil {
				return err
			}
			if pendingFlags.inFlight {
				return printInFlight(cmd, c, args[0])
			}
			page, err := c.ListPending(ctx, args[0], f)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if globals.json {
				views := make([]pendingView, 0, len(page.Messages))
				for _, m := range page.Messages {
					views = append(views, pendingView{
						ID: m.ID, Queue: m.Queue, Priority: m.Priority, State: m.State, RetryCount: m.RetryCount,
						Attempt: m.Attempt, DedupKey: m.DedupKey, VisibleAt: m.VisibleAt.UTC().Format(jsonTime),
						CreatedAt: m.CreatedAt.UTC().Format(jsonTime), Payload: m.Payload, Headers: m.Headers, Errors: m.Errors,
					})
				}
				return printJSON(out, map[string]any{"messages": views, "next_cursor": page.NextCursor})
			}
			t := newTable(out, "ID", "PRIORITY", "STATE", "RETRIES", "VISIBLE AT", "CREATED AT", "LAST ERROR", "PAYLOAD")
			for _, m := range page.Messages {
				lastErr := "-"
				if len(m.Errors) > 0 {
					lastErr = clip(m.Errors[len(m.Errors)-1].Error, 40)
				}
				t.row(itoa(m.ID), fmt.Sprint(m.Priority), m.State, fmt.Sprint(m.RetryCount), fmtTime(m.VisibleAt),
					fmtTime(m.CreatedAt), lastErr, clip(string(m.Payload), 60))
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

const jsonTime = "2006-01-02T15:04:05.999999Z07:00"

type pendingView struct {
	ID         int64                 `json:"id"`
	Queue      string                `json:"queue"`
	Priority   int                   `json:"priority"`
	State      string                `json:"state"`
	RetryCount int                   `json:"retry_count"`
	Attempt    int                   `json:"attempt"`
	DedupKey   string                `json:"dedup_key,omitempty"`
	VisibleAt  string                `json:"visible_at"`
	CreatedAt  string                `json:"created_at"`
	Payload    json.RawMessage       `json:"payload"`
	Headers    map[string]string     `json:"headers"`
	Errors     []pgflow.AttemptError `json:"errors"`
}

func init() {
	pendingFlags.register(pendingCmd, false, false)
	pendingCmd.Flags().Lookup("since").Usage = "published at or after (RFC 3339, date, or duration ago: 2h)"
	pendingCmd.Flags().Lookup("until").Usage = "published before (same forms as --since)"
	pendingCmd.Flags().Lookup("error").Usage = "error history contains this text (case-insensitive)"
	pendingCmd.Flags().IntVarP(&pendingFlags.limit, "limit", "n", 100, "page size, at most 1000")
	pendingCmd.Flags().StringVar(&pendingFlags.cursor, "cursor", "", "continue after the previous page (printed on stderr)")
	pendingCmd.Flags().BoolVar(&pendingFlags.inFlight, "in-flight", false, "list leased messages instead (--limit applies)")
	rootCmd.AddCommand(pendingCmd)
}

func printInFlight(cmd *cobra.Command, c *pgflow.Client, queue string) error {
	msgs, err := c.ListInFlight(cmd.Context(), queue, pendingFlags.limit)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if globals.json {
		type view struct {
			ID            int64             `json:"id"`
			Queue         string            `json:"queue"`
			Priority      int               `json:"priority"`
			Attempt       int               `json:"attempt"`
			RetryCount    int               `json:"retry_count"`
			LockedBy      string            `json:"locked_by"`
			LeaseUntil    string            `json:"lease_until"`
			LeaseLeftSecs float64           `json:"lease_left_seconds"`
			CreatedAt     string            `json:"created_at"`
			Payload       json.RawMessage   `json:"payload"`
			Headers       map[string]string `json:"headers"`
		}
		views := make([]view, 0, len(msgs))
		for _, m := range msgs {
			views = append(views, view{m.ID, m.Queue, m.Priority, m.Attempt, m.RetryCount, m.LockedBy,
				m.LeaseUntil.UTC().Format(jsonTime), m.LeaseLeft.Seconds(), m.CreatedAt.UTC().Format(jsonTime), m.Payload, m.Headers})
		}
		return printJSON(out, map[string]any{"messages": views})
	}
	t := newTable(out, "ID", "PRIORITY", "ATTEMPT", "CONSUMER", "LEASE LEFT", "CREATED AT", "PAYLOAD")
	for _, m := range msgs {
		left := fmtAge(m.LeaseLeft)
		if m.LeaseLeft <= 0 {
			left = "expired " + fmtAge(-m.LeaseLeft) + " ago"
		}
		t.row(itoa(m.ID), fmt.Sprint(m.Priority), fmt.Sprint(m.Attempt), m.LockedBy, left, fmtTime(m.CreatedAt), clip(string(m.Payload), 60))
	}
	return t.flush()
}
