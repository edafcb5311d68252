package demo

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/jackc/pgx/v5"

	"github.com/pgflow-go/pgflow/examples/nexus/centralcloud"
	"github.com/pgflow-go/pgflow/examples/nexus/singularity"
	"github.com/pgflow-go/pgflow/examples/nexus/telemetry"
	"github.com/pgflow-go/pgflow/examples/nexus/wire"
)

// QueueReport accounts for one of the six queues (all its instance
// partitions together). Every published message is in exactly one of
// Handled, DeadLettered, InFlight or Lost, so
// Published = Handled + DeadLettered + InFlight + Lost, and Lost must be 0.
type QueueReport struct {
	Queue     string `json:"queue"`
	Direction string `json:"direction"`
	Priority  string `json:"priority"`
	// Published counts distinct committed messages.
	Published int `json:"published"`
	// Handled: a handler succeeded and the message is gone.
	Handled int `json:"handled"`
	// Retried counts failed deliveries that were retried (not messages).
	Retried int `json:"retried"`
	// DeadLettered: the message is in pgflow_dlq.
	DeadLettered int `json:"dead_lettered"`
	// InFlight: the message is still in pgflow_messages.
	InFlight int `json:"in_flight"`
	// Lost: published, yet neither handled, dead-lettered nor in flight.
	Lost int `json:"lost"`
	// PublishFailures counts failed publish attempts (retried by producers).
	PublishFailures int `json:"publish_failures"`
}

// DLQEntry is one dead-lettered message.
type DLQEntry struct {
	Queue     string `json:"queue"`
	MessageID int64  `json:"message_id"`
	Error     string `json:"error"`
}

// RollbackSummary says how rollbacks went.
type RollbackSummary struct {
	Handled  int `json:"handled"`
	Critical int `json:"critical"`
	Warning  int `json:"warning"`
	// Overtaken counts (critical, warning) pairs on one instance where the
	// critical rollback was published later yet handled first.
	Overtaken int `json:"normal_overtaken_by_high_priority"`
}

// Report is a run's outcome.
type Report struct {
	Database     string                       `json:"database"`
	Schema       string                       `json:"schema"`
	Instances    int                          `json:"instances"`
	Traffic      string                       `json:"traffic"`
	Elapsed      string                       `json:"elapsed"`
	Queues       []QueueReport                `json:"queues"`
	Total        QueueReport                  `json:"total"`
	Rollbacks    RollbackSummary              `json:"rollbacks"`
	CentralCloud centralcloud.Stats           `json:"centralcloud"`
	Singularity  map[string]singularity.Stats `json:"singularity"`
	Telemetry    map[string]int64             `json:"telemetry"`
	DLQ          []DLQEntry                   `json:"dlq"`
	Problems     []string                     `json:"problems"`
	OK           bool                         `json:"ok"`
}

func buildReport(ctx context.Context, o Options, cnt *Counter, tel *telemetry.Telemetry,
	cc *centralcloud.CentralCloud, instances []*singularity.Instance) (*Report, error) {
	rep := &Report{Database: o.Database, Schema: o.Schema, Instances: len(instances),
		CentralCloud: cc.Stats(), Singularity: map[string]singularity.Stats{}, Telemetry: tel.Counts(), Problems: []string{}}
	for _, in := range instances {
		rep.Singularity[in.ID()] = in.Stats()
		rep.Rollbacks.add(in.Rollbacks())
	}

	// What the database still holds.
	inflight := map[string]map[int64]bool{}
	rows, err := o.Pool.Query(ctx, "SELECT id, queue_name FROM "+pgx.Identifier{o.Schema, "pgflow_messages"}.Sanitize())
	if err != nil {
		return nil, fmt.Errorf("demo: count in-flight messages: %w", err)
	}
	for rows.Next() {
		var id int64
		var q string
		if err := rows.Scan(&id, &q); err != nil {
			return nil, err
		}
		b := wire.BaseQueue(q)
		if inflight[b] == nil {
			inflight[b] = map[int64]bool{}
		}
		inflight[b][id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	dlq := map[string]map[int64]bool{}
	rows, err = o.Pool.Query(ctx, "SELECT message_id, queue_name, error FROM "+pgx.Identifier{o.Schema, "pgflow_dlq"}.Sanitize()+" ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("demo: read the dead-letter queue: %w", err)
	}
	for rows.Next() {
		var e DLQEntry
		if err := rows.Scan(&e.MessageID, &e.Queue, &e.Error); err != nil {
			return nil, err
		}
		b := wire.BaseQueue(e.Queue)
		if dlq[b] == nil {
			dlq[b] = map[int64]bool{}
		}
		dlq[b][e.MessageID] = true
		rep.DLQ = append(rep.DLQ, e)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}

	tallies := cnt.snapshot()
	for _, qi := range wire.Queues {
		t := tallies[qi.Name]
		qr := QueueReport{Queue: qi.Name, Direction: qi.Direction, Priority: qi.Priority,
			Published: len(t.published), Retried: t.retried, PublishFailures: t.publishFailed}
		for id := range t.published {
			switch {
			case inflight[qi.Name][id]:
				qr.InFlight++
			case dlq[qi.Name][id]:
				qr.DeadLettered++
			case t.handled[id]:
				qr.Handled++
			default:
				qr.Lost++
			}
		}
		if qr.Lost > 0 {
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s: %d published messages were neither handled, dead-lettered nor in flight", qi.Name, qr.Lost))
		}
		if n := len(dlq[qi.Name]); n != len(t.dead) {
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s: the dead-letter queue holds %d messages but %d dead_lettered events were seen", qi.Name, n, len(t.dead)))
		}
		for _, set := range []map[int64]bool{t.handled, t.dead, inflight[qi.Name]} {
			for id := range set {
				if !t.published[id] {
					rep.Problems = append(rep.Problems, fmt.Sprintf("%s: message %d was never published by this run", qi.Name, id))
				}
			}
		}
		rep.Queues = append(rep.Queues, qr)
		rep.Total.Published += qr.Published
		rep.Total.Handled += qr.Handled
		rep.Total.Retried += qr.Retried
		rep.Total.DeadLettered += qr.DeadLettered
		rep.Total.InFlight += qr.InFlight
		rep.Total.Lost += qr.Lost
		rep.Total.PublishFailures += qr.PublishFailures
	}
	for q := range tallies {
		if !isExampleQueue(q) {
			rep.Problems = append(rep.Problems, fmt.Sprintf("traffic on %q, which is not one of the example's queues", q))
		}
	}
	rep.Total.Queue = "total"
	return rep, nil
}

func isExampleQueue(q string) bool {
	for _, qi := range wire.Queues {
		if qi.Name == q {
			return true
		}
	}
	return false
}

func (s *RollbackSummary) add(rs []singularity.Rollback) {
	for i, r := range rs {
		s.Handled++
		if r.Severity != wire.SeverityCritical {
			s.Warning++
			continue
		}
		s.Critical++
		for _, later := range rs[i+1:] {
			if later.Severity == wire.SeverityWarning && later.MessageID < r.MessageID {
				s.Overtaken++
			}
		}
	}
}

// WriteText prints the report as a table.
func (r *Report) WriteText(w io.Writer) {
	fmt.Fprintf(w, "\nnexus: CentralCloud + %d Singularity instances, database %s, schema %s, traffic %s, total %s\n\n",
		r.Instances, r.Database, r.Schema, r.Traffic, r.Elapsed)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "queue\tdirection\tpublished\thandled\tretried\tdead-lettered\tin flight\tlost\t")
	row := func(q QueueReport) {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t\n", q.Queue, q.Direction, q.Published, q.Handled, q.Retried, q.DeadLettered, q.InFlight, q.Lost)
	}
	for _, q := range r.Queues {
		row(q)
	}
	row(r.Total)
	tw.Flush()
	fmt.Fprintf(w, "\nconsensus: %d proposals, %d approved, %d rejected; rollbacks: %d handled (%d critical at high priority, %d warnings; %d warnings queued earlier were overtaken); safety profile updates: %d sent\n",
		r.CentralCloud.Proposals, r.CentralCloud.Approved, r.CentralCloud.Rejected,
		r.Rollbacks.Handled, r.Rollbacks.Critical, r.Rollbacks.Warning, r.Rollbacks.Overtaken, r.CentralCloud.ProfileUpdates)
	var names []string
	for _, n := range sortedKeys(r.Telemetry) {
		names = append(names, fmt.Sprintf("%s=%d", strings.TrimPrefix(n, telemetry.Prefix), r.Telemetry[n]))
	}
	fmt.Fprintf(w, "telemetry (%s*): %s\n", telemetry.Prefix, strings.Join(names, " "))
	if len(r.DLQ) > 0 {
		fmt.Fprintf(w, "dead-letter queue (%d), e.g.:\n", len(r.DLQ))
		seen := map[string]bool{}
		for _, e := range r.DLQ {
			key := wire.BaseQueue(e.Queue)
			if seen[key] {
				continue
			}
			seen[key] = true
			fmt.Fprintf(w, "  %s #%d: %s\n", e.Queue, e.MessageID, e.Error)
		}
	}
	if r.OK {
		fmt.Fprintf(w, "OK: published = handled + dead-lettered + in flight for all %d queues; nothing lost\n", len(r.Queues))
		return
	}
	fmt.Fprintln(w, "FAILED:")
	for _, p := range r.Problems {
		fmt.Fprintln(w, "  "+p)
	}
}

// String formats the live progress line.
func (p Progress) String() string {
	phase := "running"
	if p.Draining {
		phase = "draining"
	}
	return fmt.Sprintf("[%6s %-8s] published %d  handled %d  retried %d  dead-lettered %d  in flight %d  rollbacks %d",
		p.Elapsed, phase, p.Published, p.Handled, p.Retried, p.Dead, p.InFlight, p.Rollbacks)
}

// QueueCounts returns what this process saw per example queue: useful when the
// services run as separate processes, where each sees one side of a queue.
func (c *Counter) QueueCounts() []QueueReport {
	tallies := c.snapshot()
	var out []QueueReport
	for _, qi := range wire.Queues {
		t := tallies[qi.Name]
		out = append(out, QueueReport{Queue: qi.Name, Direction: qi.Direction, Priority: qi.Priority,
			Published: len(t.published), Handled: len(t.handled), Retried: t.retried, DeadLettered: len(t.dead),
			PublishFailures: t.publishFailed})
	}
	return out
}
