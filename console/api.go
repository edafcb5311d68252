package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pgflow-go/pgflow"
)

// JSON shapes of the API. Times are RFC 3339, durations seconds (float).

type queueJSON struct {
	Queue          string   `json:"queue"`
	Paused         bool     `json:"paused"`
	Ready          int64    `json:"ready"`
	Delayed        int64    `json:"delayed"`
	Retrying       int64    `json:"retrying"`
	InFlight       int64    `json:"in_flight"`
	DeadLettered   int64    `json:"dead_lettered"`
	OldestReadyAge float64  `json:"oldest_ready_age_s"`
	Consumers      []string `json:"consumers"`
	Handled1h      int64    `json:"handled_1h"`
	Failed1h       int64    `json:"failed_1h"`
	// HandledPerMin and FailedPerMin are the last 60 minutes, oldest first.
	HandledPerMin []int64 `json:"handled_per_min"`
	FailedPerMin  []int64 `json:"failed_per_min"`
	// CountedAt is when the counts were read, CountMS how long that took
	// (see Options.StatsMaxAge).
	CountedAt time.Time `json:"counted_at"`
	CountMS   float64   `json:"count_ms"`
}

type queueDetailJSON struct {
	queueJSON
	MaxRetries    int        `json:"max_retries"`
	RetryDelay    float64    `json:"retry_delay_s"`
	MaxRetryDelay float64    `json:"max_retry_delay_s"`
	LeaseTimeout  float64    `json:"lease_timeout_s"`
	Priority      int        `json:"default_priority"`
	CreatedAt     time.Time  `json:"created_at"`
	DeadLast      *time.Time `json:"last_dead_lettered_at"`
}

type messageJSON struct {
	ID         int64                 `json:"id"`
	Queue      string                `json:"queue"`
	State      string                `json:"state"`
	Payload    json.RawMessage       `json:"payload"`
	Headers    map[string]string     `json:"headers"`
	Priority   int                   `json:"priority"`
	Attempt    int                   `json:"attempt"`
	RetryCount int                   `json:"retry_count"`
	DedupKey   string                `json:"dedup_key,omitempty"`
	TraceID    string                `json:"trace_id,omitempty"`
	CreatedAt  time.Time             `json:"created_at"`
	VisibleAt  *time.Time            `json:"visible_at,omitempty"`
	LockedBy   string                `json:"locked_by,omitempty"`
	LeaseUntil *time.Time            `json:"lease_until,omitempty"`
	LeaseLeft  *float64              `json:"lease_left_s,omitempty"`
	Errors     []pgflow.AttemptError `json:"errors"`
}

type dlqJSON struct {
	ID               int64                 `json:"id"`
	MessageID        int64                 `json:"message_id"`
	Queue            string                `json:"queue"`
	Payload          json.RawMessage       `json:"payload"`
	Headers          map[string]string     `json:"headers"`
	Priority         int                   `json:"priority"`
	DedupKey         string                `json:"dedup_key,omitempty"`
	TraceID          string                `json:"trace_id,omitempty"`
	Error            string                `json:"error"`
	Errors           []pgflow.AttemptError `json:"errors"`
	RetryCount       int                   `json:"retry_count"`
	Attempts         int                   `json:"attempts"`
	MessageCreatedAt time.Time             `json:"message_created_at"`
	DeadLetteredAt   time.Time             `json:"dead_lettered_at"`
}

type pageJSON[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// traceID extracts the W3C trace id from a traceparent header, as
// otelpgflow writes it.
func traceID(h map[string]string) string {
	tp := h["traceparent"]
	parts := strings.Split(tp, "-")
	if len(parts) == 4 && len(parts[1]) == 32 {
		return parts[1]
	}
	return ""
}

func nonNilHeaders(h map[string]string) map[string]string {
	if h == nil {
		return map[string]string{}
	}
	return h
}

func fromQueueStats(s pgflow.QueueStats, series pgflow.StatsSeries, v statsView) queueJSON {
	q := queueJSON{CountedAt: v.at, CountMS: float64(v.took.Microseconds()) / 1000,
		Queue: s.Queue, Paused: s.Paused, Ready: s.Pending, Delayed: s.Delayed, Retrying: s.Retrying,
		InFlight: s.InFlight, DeadLettered: s.DeadLettered, OldestReadyAge: s.OldestReadyAge.Seconds(),
		Consumers: s.Consumers,
	}
	if len(s.Windows) == 3 {
		q.Handled1h, q.Failed1h = s.Windows[2].Handled, s.Windows[2].Failed
	}
	for _, p := range series.Dense(s.Queue) {
		q.HandledPerMin = append(q.HandledPerMin, p.Handled)
		q.FailedPerMin = append(q.FailedPerMin, p.Failed)
	}
	return q
}

func fromPending(m pgflow.PendingMessage) messageJSON {
	v := m.VisibleAt
	return messageJSON{ID: m.ID, Queue: m.Queue, State: m.State, Payload: m.Payload, Headers: nonNilHeaders(m.Headers),
		Priority: m.Priority, Attempt: m.Attempt, RetryCount: m.RetryCount, DedupKey: m.DedupKey,
		TraceID: traceID(m.Headers), CreatedAt: m.CreatedAt, VisibleAt: &v, Errors: m.Errors}
}

func fromInFlight(m pgflow.InFlightMessage) messageJSON {
	lu, left := m.LeaseUntil, m.LeaseLeft.Seconds()
	return messageJSON{ID: m.ID, Queue: m.Queue, State: "in_flight", Payload: m.Payload, Headers: nonNilHeaders(m.Headers),
		Priority: m.Priority, Attempt: m.Attempt, RetryCount: m.RetryCount, TraceID: traceID(m.Headers),
		CreatedAt: m.CreatedAt, LockedBy: m.LockedBy, LeaseUntil: &lu, LeaseLeft: &left, Errors: []pgflow.AttemptError{}}
}

func fromLive(m pgflow.LiveMessage) messageJSON {
	v := m.VisibleAt
	j := messageJSON{ID: m.ID, Queue: m.Queue, State: m.State, Payload: m.Payload, Headers: nonNilHeaders(m.Headers),
		Priority: m.Priority, Attempt: m.Attempt, RetryCount: m.RetryCount, DedupKey: m.DedupKey,
		TraceID: traceID(m.Headers), CreatedAt: m.CreatedAt, VisibleAt: &v, LockedBy: m.LockedBy, Errors: m.Errors}
	if !m.LeaseUntil.IsZero() {
		lu, left := m.LeaseUntil, m.LeaseUntil.Sub(m.At).Seconds()
		j.LeaseUntil, j.LeaseLeft = &lu, &left
	}
	return j
}

func fromDLQ(m pgflow.DLQMessage) dlqJSON {
	return dlqJSON{ID: m.ID, MessageID: m.MessageID, Queue: m.Queue, Payload: m.Payload, Headers: nonNilHeaders(m.Headers),
		Priority: m.Priority, DedupKey: m.DedupKey, TraceID: traceID(m.Headers), Error: m.Error, Errors: m.Errors,
		RetryCount: m.RetryCount, Attempts: m.Attempts, MessageCreatedAt: m.MessageCreatedAt, DeadLetteredAt: m.DeadLetteredAt}
}

// ---- responses ----

type errorJSON struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, errorJSON{Error: fmt.Sprintf(format, args...)})
}

// badRequest is an input error found by the console itself.
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }

func badf(format string, args ...any) error { return &badRequest{fmt.Sprintf(format, args...)} }

// statusOf maps an error to its HTTP status: input errors are the caller's
// (400, 404 for what does not exist), anything else is ours (500).
func statusOf(err error) int {
	var br *badRequest
	var ie *pgflow.InputError
	switch {
	case errors.As(err, &br):
		return http.StatusBadRequest
	case errors.Is(err, pgflow.ErrQueueNotFound), errors.Is(err, pgflow.ErrMessageNotFound),
		errors.Is(err, pgflow.ErrDLQMessageNotFound):
		return http.StatusNotFound
	case errors.Is(err, pgflow.ErrPayloadTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.As(err, &ie):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// fail answers a read's error.
func (k *Console) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := statusOf(err)
	if status == http.StatusInternalServerError {
		k.log.Error("pgflow console: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, status, "internal error reading the database: %v", err)
		return
	}
	writeError(w, status, "%v", err)
}

// ---- parameters ----

func pathQueue(r *http.Request) (string, error) {
	q := r.PathValue("queue")
	if err := pgflow.ValidateQueueName(q); err != nil {
		return "", err
	}
	return q, nil
}

func pathID(r *http.Request) (int64, error) {
	s := r.PathValue("id")
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, badf("id %q is not a message id (a positive integer)", s)
	}
	return id, nil
}

// listParams are the filters and paging of the list endpoints, from the
// query string.
type listParams struct {
	state         string
	limit         int
	cursor        string
	priority      *int
	since, until  time.Time
	errorContains string
	queue         string
}

var knownParams = map[string]bool{"state": true, "limit": true, "cursor": true, "priority": true,
	"since": true, "until": true, "error": true, "queue": true, "tab": true}

// parseTime accepts RFC 3339 or a duration meaning "that long ago" (1h,
// 30m, 7d).
func parseTime(name, s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(d); err == nil && n > 0 && n <= 3650 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, badf("%s %q is neither an RFC 3339 time nor a duration ago (15m, 1h, 7d)", name, s)
}

func parseList(q url.Values) (listParams, error) {
	var p listParams
	for k := range q {
		if !knownParams[k] {
			return p, badf("unknown parameter %q", k)
		}
	}
	p.state = q.Get("state")
	p.cursor = q.Get("cursor")
	p.errorContains = q.Get("error")
	p.queue = q.Get("queue")
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return p, badf("limit %q must be 1-1000", s)
		}
		p.limit = n
	}
	if s := q.Get("priority"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < -32768 || n > 32767 {
			return p, badf("priority %q must be an integer in [-32768, 32767]", s)
		}
		p.priority = &n
	}
	now := time.Now()
	var err error
	if p.since, err = parseTime("since", q.Get("since"), now); err != nil {
		return p, err
	}
	if p.until, err = parseTime("until", q.Get("until"), now); err != nil {
		return p, err
	}
	if !p.since.IsZero() && !p.until.IsZero() && !p.since.Before(p.until) {
		return p, badf("since must be before until")
	}
	return p, nil
}

// ---- read endpoints ----

func (k *Console) apiSession(w http.ResponseWriter, r *http.Request) {
	c, err := k.identify(r)
	if err != nil {
		writeError(w, http.StatusUnauthorized, "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"role": c.role.String(), "via": c.via, "csrf_token": k.csrfToken(c.sid),
		"admin_configured": k.o.AdminToken != "", "read_token_required": k.o.ReadToken != "",
	})
}

// parallel runs the reads of one page at once, each on its own pool
// connection, and returns the first error.
func parallel(fns ...func() error) error {
	errs := make(chan error, len(fns))
	for _, f := range fns {
		go func() { errs <- f() }()
	}
	var first error
	for range fns {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (k *Console) overview(r *http.Request) ([]queueJSON, error) {
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	var view statsView
	var series pgflow.StatsSeries
	err := parallel(
		func() (err error) { view, err = k.stats.get(ctx, ""); return },
		func() (err error) { series, err = k.c.QueueStatsSeries(ctx, "", time.Hour, time.Minute); return },
	)
	if err != nil {
		return nil, err
	}
	out := make([]queueJSON, 0, len(view.stats))
	for _, s := range view.stats {
		out = append(out, fromQueueStats(s, series, view))
	}
	return out, nil
}

func (k *Console) apiQueues(w http.ResponseWriter, r *http.Request, _ caller) {
	qs, err := k.overview(r)
	if err != nil {
		k.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, qs)
}

func (k *Console) queueDetail(r *http.Request, queue string) (queueDetailJSON, error) {
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	var info pgflow.QueueInfo
	var view statsView
	var series pgflow.StatsSeries
	err := parallel(
		func() (err error) { info, err = k.c.Queue(ctx, queue); return },
		func() (err error) { view, err = k.stats.get(ctx, queue); return },
		func() (err error) { series, err = k.c.QueueStatsSeries(ctx, queue, time.Hour, time.Minute); return },
	)
	if err != nil {
		return queueDetailJSON{}, err
	}
	s := view.stats[0]
	s.Paused = info.Paused // read now, even when the counts are a few seconds old
	d := queueDetailJSON{queueJSON: fromQueueStats(s, series, view), MaxRetries: info.MaxRetries,
		RetryDelay: info.RetryDelay.Seconds(), MaxRetryDelay: info.MaxRetryDelay.Seconds(),
		LeaseTimeout: info.LeaseTimeout.Seconds(), Priority: info.Priority, CreatedAt: info.CreatedAt}
	if !s.LastDeadLetteredAt.IsZero() {
		t := s.LastDeadLetteredAt
		d.DeadLast = &t
	}
	return d, nil
}

func (k *Console) apiQueue(w http.ResponseWriter, r *http.Request, _ caller) {
	queue, err := pathQueue(r)
	if err != nil {
		k.fail(w, r, err)
		return
	}
	d, err := k.queueDetail(r, queue)
	if err != nil {
		k.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

type seriesJSON struct {
	Queue        string      `json:"queue"`
	Window       float64     `json:"window_s"`
	Step         float64     `json:"step_s"`
	Bins         []time.Time `json:"bins"`
	Handled      []int64     `json:"handled"`
	Failed       []int64     `json:"failed"`
	DeadLettered []int64     `json:"dead_lettered"`
}

func denseJSON(queue string, s pgflow.StatsSeries) seriesJSON {
	j := seriesJSON{Queue: queue, Window: s.Window.Seconds(), Step: s.Step.Seconds()}
	for _, p := range s.Dense(queue) {
		j.Bins = append(j.Bins, p.Bin)
		j.Handled = append(j.Handled, p.Handled)
		j.Failed = append(j.Failed, p.Failed)
		j.DeadLettered = append(j.DeadLettered, p.DeadLettered)
	}
	return j
}

// windows the charts offer, and their bin.
var chartWindows = map[string][2]time.Duration{
	"1h":  {time.Hour, time.Minute},
	"24h": {24 * time.Hour, 15 * time.Minute},
}

func (k *Console) series(r *http.Request, queue, window string) (seriesJSON, error) {
	ws, ok := chartWindows[window]
	if !ok {
		return seriesJSON{}, badf("window %q must be 1h or 24h", window)
	}
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	s, err := k.c.QueueStatsSeries(ctx, queue, ws[0], ws[1])
	if err != nil {
		return seriesJSON{}, err
	}
	return denseJSON(queue, s), nil
}

func (k *Console) apiSeries(w http.ResponseWriter, r *http.Request, _ caller) {
	queue, err := pathQueue(r)
	if err != nil {
		k.fail(w, r, err)
		return
	}
	for p := range r.URL.Query() {
		if p != "window" {
			k.fail(w, r, badf("unknown parameter %q", p))
			return
		}
	}
	window := r.URL.Query().Get("window")
	if window == "" {
		window = "1h"
	}
	if _, err := k.queueDetailExists(r, queue); err != nil {
		k.fail(w, r, err)
		return
	}
	s, err := k.series(r, queue, window)
	if err != nil {
		k.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s)
}

func (k *Console) queueDetailExists(r *http.Request, queue string) (pgflow.QueueInfo, error) {
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	return k.c.Queue(ctx, queue)
}

// States of GET /api/queues/{queue}/messages.
var states = []string{"pending", "in_flight", "delayed", "dead"}

// listMessages serves the queue page's tabs and the messages endpoint.
// "pending" is what consumers claim next, in claim order; "delayed" holds
// delayed and retrying messages (visible later), also in claim order;
// "in_flight" the leased ones, closest to expiry first; "dead" the queue's
// dead letters, newest first.
func (k *Console) listMessages(r *http.Request, queue string, p listParams) (any, string, error) {
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	if _, err := k.c.Queue(ctx, queue); err != nil {
		return nil, "", err
	}
	switch p.state {
	case "pending", "delayed":
		f := pgflow.PendingFilter{Priority: p.priority, CreatedAfter: p.since, CreatedBefore: p.until,
			ErrorContains: p.errorContains, Limit: p.limit, Cursor: p.cursor}
		now := time.Now()
		if p.state == "pending" {
			f.VisibleBefore = now.Add(time.Millisecond)
		} else {
			f.VisibleAfter = now
		}
		page, err := k.c.ListPending(ctx, queue, f)
		if err != nil {
			return nil, "", err
		}
		items := make([]messageJSON, 0, len(page.Messages))
		for _, m := range page.Messages {
			items = append(items, fromPending(m))
		}
		return items, page.NextCursor, nil
	case "in_flight":
		if p.cursor != "" || p.priority != nil || !p.since.IsZero() || !p.until.IsZero() || p.errorContains != "" {
			return nil, "", badf("the in_flight listing takes only limit (it lists every lease, closest to expiry first)")
		}
		ms, err := k.c.ListInFlight(ctx, queue, p.limit)
		if err != nil {
			return nil, "", err
		}
		items := make([]messageJSON, 0, len(ms))
		for _, m := range ms {
			items = append(items, fromInFlight(m))
		}
		return items, "", nil
	case "dead":
		page, err := k.c.ListDLQ(ctx, pgflow.DLQListOptions{DLQFilter: p.dlqFilter(queue), Limit: p.limit, Cursor: p.cursor})
		if err != nil {
			return nil, "", err
		}
		items := make([]dlqJSON, 0, len(page.Messages))
		for _, m := range page.Messages {
			items = append(items, fromDLQ(m))
		}
		return items, page.NextCursor, nil
	}
	return nil, "", badf("state %q must be one of %s", p.state, strings.Join(states, ", "))
}

func (p listParams) dlqFilter(queue string) pgflow.DLQFilter {
	return pgflow.DLQFilter{Queue: queue, Since: p.since, Until: p.until, ErrorContains: p.errorContains, Priority: p.priority}
}

func (k *Console) apiQueueMessages(w http.ResponseWriter, r *http.Request, _ caller) {
	queue, err := pathQueue(r)
	if err != nil {
		k.fail(w, r, err)
		return
	}
	p, err := parseList(r.URL.Query())
	if err == nil && p.queue != "" {
		err = badf("the queue is in the path; drop the queue parameter")
	}
	if err != nil {
		k.fail(w, r, err)
		return
	}
	if p.state == "" {
		p.state = "pending"
	}
	items, next, err := k.listMessages(r, queue, p)
	if err != nil {
		k.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"state": p.state, "items": items, "next_cursor": next})
}

func (k *Console) apiMessage(w http.ResponseWriter, r *http.Request, _ caller) {
	id, err := pathID(r)
	if err != nil {
		k.fail(w, r, err)
		return
	}
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	m, err := k.c.Message(ctx, id)
	if err != nil {
		if errors.Is(err, pgflow.ErrMessageNotFound) {
			err = fmt.Errorf("%w (acknowledged, never published, or dead-lettered: see GET /api/dlq)", err)
		}
		k.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, fromLive(m))
}

func (k *Console) apiDLQ(w http.ResponseWriter, r *http.Request, _ caller) {
	p, err := parseList(r.URL.Query())
	if err == nil && p.state != "" {
		err = badf("unknown parameter \"state\" (the DLQ has one state)")
	}
	if err == nil && p.queue != "" {
		err = pgflow.ValidateQueueName(p.queue)
	}
	if err != nil {
		k.fail(w, r, err)
		return
	}
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	page, err := k.c.ListDLQ(ctx, pgflow.DLQListOptions{DLQFilter: p.dlqFilter(p.queue), Limit: p.limit, Cursor: p.cursor})
	if err != nil {
		k.fail(w, r, err)
		return
	}
	items := make([]dlqJSON, 0, len(page.Messages))
	for _, m := range page.Messages {
		items = append(items, fromDLQ(m))
	}
	writeJSON(w, http.StatusOK, pageJSON[dlqJSON]{Items: items, NextCursor: page.NextCursor})
}

func (k *Console) apiDLQCount(w http.ResponseWriter, r *http.Request, _ caller) {
	p, err := parseList(r.URL.Query())
	if err == nil && (p.state != "" || p.cursor != "" || p.limit != 0) {
		err = badf("count takes only the filters: queue, since, until, error, priority")
	}
	if err == nil && p.queue != "" {
		err = pgflow.ValidateQueueName(p.queue)
	}
	if err != nil {
		k.fail(w, r, err)
		return
	}
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	var n int64
	if p.queue != "" && p.since.IsZero() && p.until.IsZero() && p.errorContains == "" && p.priority == nil {
		// A whole queue's dead letters: one index-only count.
		var counts map[string]pgflow.DeadLetterCount
		counts, err = k.c.DeadLetterCounts(ctx, p.queue)
		n = counts[p.queue].Count
	} else {
		n, err = k.c.CountDLQ(ctx, p.dlqFilter(p.queue))
	}
	if err != nil {
		k.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int64{"count": n})
}

func (k *Console) apiDLQMessage(w http.ResponseWriter, r *http.Request, _ caller) {
	id, err := pathID(r)
	if err != nil {
		k.fail(w, r, err)
		return
	}
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	m, err := k.c.DLQMessage(ctx, id)
	if err != nil {
		k.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, fromDLQ(m))
}

// ---- actions ----

const maxBody = 2 << 20

// decodeBody decodes a JSON body strictly: unknown fields and trailing data
// are errors. An empty body leaves v as is.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return badf("the body is larger than %d bytes", maxBody)
		}
		return badf("bad JSON body: %v", err)
	}
	if dec.More() {
		return badf("bad JSON body: more than one JSON value")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badf("bad JSON body: trailing data")
	}
	return nil
}

func (k *Console) apiPause(w http.ResponseWriter, r *http.Request, a *Action) (int, any, error) {
	return k.setPaused(w, r, a, true)
}

func (k *Console) apiResume(w http.ResponseWriter, r *http.Request, a *Action) (int, any, error) {
	return k.setPaused(w, r, a, false)
}

func (k *Console) setPaused(w http.ResponseWriter, r *http.Request, _ *Action, pause bool) (int, any, error) {
	queue, err := pathQueue(r)
	if err != nil {
		return statusOf(err), nil, err
	}
	var empty struct{}
	if err := decodeBody(w, r, &empty); err != nil {
		return statusOf(err), nil, err
	}
	if pause {
		err = k.c.PauseQueue(r.Context(), queue)
	} else {
		err = k.c.ResumeQueue(r.Context(), queue)
	}
	if err != nil {
		return statusOf(err), nil, err
	}
	return http.StatusOK, map[string]any{"queue": queue, "paused": pause}, nil
}

// dlqSelection is the body of redrive and purge.
type dlqSelection struct {
	IDs      []int64 `json:"ids"`
	Queue    string  `json:"queue"`
	Since    string  `json:"since"`
	Until    string  `json:"until"`
	Error    string  `json:"error"`
	Priority *int    `json:"priority"`
	// All confirms an empty filter means the whole DLQ.
	All bool `json:"all"`
	// Rate (redrive only) is messages per second; 0: no limit.
	Rate float64 `json:"rate"`
}

func (s dlqSelection) filter() (pgflow.DLQFilter, error) {
	now := time.Now()
	since, err := parseTime("since", s.Since, now)
	if err != nil {
		return pgflow.DLQFilter{}, err
	}
	until, err := parseTime("until", s.Until, now)
	if err != nil {
		return pgflow.DLQFilter{}, err
	}
	for _, id := range s.IDs {
		if id <= 0 {
			return pgflow.DLQFilter{}, badf("ids: %d is not a dead-letter id", id)
		}
	}
	if len(s.IDs) > 10000 {
		return pgflow.DLQFilter{}, badf("ids: at most 10000 per request")
	}
	f := pgflow.DLQFilter{IDs: s.IDs, Queue: s.Queue, Since: since, Until: until, ErrorContains: s.Error, Priority: s.Priority, All: s.All}
	if len(s.IDs) == 0 && s.Queue == "" && s.Since == "" && s.Until == "" && s.Error == "" && s.Priority == nil && !s.All {
		return f, badf("empty selection: give ids, a filter (queue, since, until, error, priority), or \"all\": true")
	}
	return f, nil
}

func describe(s dlqSelection) string {
	var parts []string
	if len(s.IDs) > 0 {
		parts = append(parts, fmt.Sprintf("ids=%v", s.IDs))
	}
	if s.Queue != "" {
		parts = append(parts, "queue="+s.Queue)
	}
	if s.Since != "" {
		parts = append(parts, "since="+s.Since)
	}
	if s.Until != "" {
		parts = append(parts, "until="+s.Until)
	}
	if s.Error != "" {
		parts = append(parts, fmt.Sprintf("error=%q", s.Error))
	}
	if s.Priority != nil {
		parts = append(parts, fmt.Sprintf("priority=%d", *s.Priority))
	}
	if s.All {
		parts = append(parts, "all")
	}
	if s.Rate > 0 {
		parts = append(parts, fmt.Sprintf("rate=%g/s", s.Rate))
	}
	return strings.Join(parts, " ")
}

func (k *Console) apiRedrive(w http.ResponseWriter, r *http.Request, a *Action) (int, any, error) {
	var s dlqSelection
	if err := decodeBody(w, r, &s); err != nil {
		return statusOf(err), nil, err
	}
	a.Queue, a.Detail = s.Queue, describe(s)
	f, err := s.filter()
	if err != nil {
		return statusOf(err), nil, err
	}
	if s.Rate < 0 || s.Rate > 1e6 {
		return http.StatusBadRequest, nil, badf("rate %g must be 0 (no limit) to 1000000 messages per second", s.Rate)
	}
	res, err := k.c.RedriveDLQ(r.Context(), f, pgflow.RedriveOptions{RatePerSecond: s.Rate})
	a.Count = res.Redriven
	if err != nil {
		// Chunks already committed stay redriven; say how many.
		return statusOf(err), nil, fmt.Errorf("%w (%d redriven before the error)", err, res.Redriven)
	}
	if len(res.Skipped) > 0 || len(res.NotFound) > 0 {
		a.Detail += fmt.Sprintf(" skipped=%d not_found=%v", len(res.Skipped), res.NotFound)
	}
	if len(f.IDs) > 0 && res.Redriven == 0 && len(res.Skipped) == 0 {
		return http.StatusNotFound, nil, fmt.Errorf("%w: ids %v", pgflow.ErrDLQMessageNotFound, res.NotFound)
	}
	return http.StatusOK, map[string]any{"redriven": res.Redriven, "by_queue": res.ByQueue,
		"skipped": res.Skipped, "not_found": res.NotFound}, nil
}

func (k *Console) apiPurge(w http.ResponseWriter, r *http.Request, a *Action) (int, any, error) {
	var s dlqSelection
	if err := decodeBody(w, r, &s); err != nil {
		return statusOf(err), nil, err
	}
	a.Queue, a.Detail = s.Queue, describe(s)
	if s.Rate != 0 {
		return http.StatusBadRequest, nil, badf("rate applies to redrive only")
	}
	f, err := s.filter()
	if err != nil {
		return statusOf(err), nil, err
	}
	res, err := k.c.PurgeDLQ(r.Context(), f)
	a.Count = res.Purged
	if err != nil {
		return statusOf(err), nil, fmt.Errorf("%w (%d purged before the error)", err, res.Purged)
	}
	if len(res.NotFound) > 0 {
		a.Detail += fmt.Sprintf(" not_found=%v", res.NotFound)
	}
	if len(f.IDs) > 0 && res.Purged == 0 {
		return http.StatusNotFound, nil, fmt.Errorf("%w: ids %v", pgflow.ErrDLQMessageNotFound, res.NotFound)
	}
	return http.StatusOK, map[string]any{"purged": res.Purged, "by_queue": res.ByQueue, "not_found": res.NotFound}, nil
}

// publishBody is the body of publish.
type publishBody struct {
	Payload  json.RawMessage   `json:"payload"`
	Headers  map[string]string `json:"headers"`
	Priority *int              `json:"priority"`
	// Delay is a Go duration ("30s", "5m"); empty: visible now.
	Delay    string `json:"delay"`
	DedupKey string `json:"dedup_key"`
}

func (k *Console) apiPublish(w http.ResponseWriter, r *http.Request, a *Action) (int, any, error) {
	queue, err := pathQueue(r)
	if err != nil {
		return statusOf(err), nil, err
	}
	var b publishBody
	if err := decodeBody(w, r, &b); err != nil {
		return statusOf(err), nil, err
	}
	if len(b.Payload) == 0 {
		return http.StatusBadRequest, nil, badf("payload is missing: send {\"payload\": <any JSON value>}")
	}
	var opts []pgflow.PublishOption
	if b.Priority != nil {
		opts = append(opts, pgflow.WithPriority(*b.Priority))
	}
	if b.Delay != "" {
		d, err := time.ParseDuration(b.Delay)
		if err != nil {
			return http.StatusBadRequest, nil, badf("delay %q is not a duration (e.g. 30s, 5m)", b.Delay)
		}
		opts = append(opts, pgflow.WithDelay(d))
	}
	if b.DedupKey != "" {
		opts = append(opts, pgflow.WithDedupKey(b.DedupKey))
	}
	if len(b.Headers) > 0 {
		opts = append(opts, pgflow.WithHeaders(b.Headers))
	}
	// Only to queues that exist: a typo must not create a queue.
	if _, err := k.c.Queue(r.Context(), queue); err != nil {
		return statusOf(err), nil, err
	}
	id, err := k.c.Publish(r.Context(), queue, b.Payload, opts...)
	if err != nil {
		return statusOf(err), nil, err
	}
	a.Count, a.Detail = 1, fmt.Sprintf("id=%d", id)
	return http.StatusCreated, map[string]any{"id": id, "queue": queue}, nil
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }
