package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/console"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

const (
	adminToken = "admin-0123456789abcdef"
	readToken  = "read-0123456789abcdef"
)

// env is a console on an isolated schema, served by httptest.
type env struct {
	db     *pgflowtest.DB
	client *pgflow.Client
	srv    *httptest.Server

	mu      sync.Mutex
	actions []console.Action
	logs    bytes.Buffer
}

func newEnv(t *testing.T, o console.Options) *env {
	t.Helper()
	e := &env{db: pgflowtest.New(t, pgflowtest.Options{MaxConns: 6})}
	c, err := pgflow.New(e.db.Pool, pgflow.Config{Schema: e.db.Schema, DisableStatsCounters: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	e.client = c
	o.Logger = slog.New(slog.NewTextHandler(lockedWriter{e}, nil))
	o.OnAction = func(a console.Action) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.actions = append(e.actions, a)
	}
	h, err := console.New(c, o)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(h)
	t.Cleanup(func() {
		e.srv.Close()
		h.Close()
	})
	return e
}

type lockedWriter struct{ e *env }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.e.mu.Lock()
	defer w.e.mu.Unlock()
	return w.e.logs.Write(p)
}

func (e *env) recorded() []console.Action {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]console.Action(nil), e.actions...)
}

func (e *env) logText() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.logs.String()
}

// req is one API call.
type req struct {
	method, path, token string
	body                any    // marshalled to JSON unless a string (sent as is)
	contentType         string // default application/json when there is a body
	header              map[string]string
	cookie              *http.Cookie
}

type resp struct {
	status int
	body   []byte
	header http.Header
}

func (r resp) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (r resp) errorText(t *testing.T) string {
	t.Helper()
	var e struct{ Error string }
	r.json(t, &e)
	if e.Error == "" {
		t.Fatalf("error response without a message: %s", r.body)
	}
	return e.Error
}

func (e *env) do(t *testing.T, q req) resp {
	t.Helper()
	var body io.Reader
	if q.body != nil {
		switch b := q.body.(type) {
		case string:
			body = strings.NewReader(b)
		default:
			raw, err := json.Marshal(b)
			if err != nil {
				t.Fatal(err)
			}
			body = bytes.NewReader(raw)
		}
	}
	r, err := http.NewRequest(q.method, e.srv.URL+q.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if q.body != nil {
		ct := q.contentType
		if ct == "" {
			ct = "application/json"
		}
		r.Header.Set("Content-Type", ct)
	}
	if q.token != "" {
		r.Header.Set("Authorization", "Bearer "+q.token)
	}
	for k, v := range q.header {
		r.Header.Set(k, v)
	}
	if q.cookie != nil {
		r.AddCookie(q.cookie)
	}
	cl := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := cl.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp{status: res.StatusCode, body: b, header: res.Header}
}

// seed writes queue "orders" with 3 ready messages (priorities 0, 5, 0), one
// delayed, one in flight, and 3 dead letters; and queue "emails", empty.
func (e *env) seed(t *testing.T) {
	t.Helper()
	e.db.Exec(t, `INSERT INTO pgflow_queues (queue_name) VALUES ('orders'), ('emails')`)
	e.db.Exec(t, `INSERT INTO pgflow_messages (id, queue_name, payload, priority, headers, visible_at, created_at) VALUES
		(1001, 'orders', '{"order":1}', 0, '{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}', now() - interval '3 minutes', now() - interval '3 minutes'),
		(1002, 'orders', '{"order":2}', 5, '{}', now() - interval '2 minutes', now() - interval '2 minutes'),
		(1003, 'orders', '{"order":3}', 0, '{}', now() - interval '1 minute', now() - interval '1 minute'),
		(1004, 'orders', '{"order":4}', 0, '{}', now() + interval '1 hour', now())`)
	e.db.Exec(t, `INSERT INTO pgflow_messages (id, queue_name, payload, status, attempt, locked_by, locked_until)
		VALUES (1005, 'orders', '{"order":5}', 'processing', 1, 'worker-a', now() + interval '20 seconds')`)
	e.db.Exec(t, `INSERT INTO pgflow_dlq (message_id, queue_name, payload, error, errors, attempts, retry_count, message_created_at, created_at) VALUES
		(101, 'orders', '{"order":101}', 'card declined', '[{"attempt":1,"error":"card declined","at":"2026-01-01T00:00:00Z"}]', 1, 1, now() - interval '2 hours', now() - interval '90 minutes'),
		(102, 'orders', '{"order":102}', 'timeout calling bank', '[]', 4, 4, now() - interval '1 hour', now() - interval '30 minutes'),
		(103, 'orders', '{"order":103}', 'card declined', '[]', 1, 1, now() - interval '10 minutes', now() - interval '5 minutes')`)
}

func (e *env) dlqIDs(t *testing.T) []int64 {
	t.Helper()
	rows, err := e.db.Pool.Query(context.Background(), `SELECT id FROM `+e.db.Schema+`.pgflow_dlq ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// login posts a token to /login and returns the session cookie and the
// CSRF token the pages carry.
func (e *env) login(t *testing.T, token string) (*http.Cookie, string) {
	t.Helper()
	r, err := http.NewRequest("POST", e.srv.URL+"/login", strings.NewReader("token="+token))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	cl := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := cl.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", res.StatusCode)
	}
	var ck *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == "pgflow_console" {
			ck = c
		}
	}
	if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode {
		t.Fatalf("session cookie %+v", ck)
	}
	s := e.do(t, req{method: "GET", path: "/api/session", cookie: ck})
	var sess struct {
		Role      string `json:"role"`
		CSRFToken string `json:"csrf_token"`
	}
	s.json(t, &sess)
	if sess.CSRFToken == "" {
		t.Fatalf("session without CSRF token: %s", s.body)
	}
	return ck, sess.CSRFToken
}
