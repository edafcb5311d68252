package console_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/console"
)

// The browser tests drive headless Chromium (Debian's chromium package;
// .ci/run installs it). Without it they skip locally and fail in CI.

func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium not found: the browser tests need it (apt-get install chromium)")
	}
	t.Skip("chromium not found; install it (apt-get install chromium) to run the browser tests")
	return ""
}

// tab is a headless Chromium tab for one test.
type tab struct {
	t   *testing.T
	ctx context.Context
}

// browser starts a headless Chromium for one test.
func browser(t *testing.T) tab {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	return tab{t: t, ctx: ctx}
}

// browserWait bounds every wait on the browser: long enough for a loaded
// machine, short enough that a missing element fails rather than hangs.
const browserWait = 60 * time.Second

// do runs steps, each bounded so that a missing element fails the test
// instead of hanging it.
func (b tab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

func (b tab) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(css(sel)))
	if err != nil {
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

func (b tab) evalInt(js string) int {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	defer cancel()
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](js, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", js, err)
	}
	return n
}

func css(s string) chromedp.CSS { return chromedp.CSS(s) }

func (b tab) login(base, token string) {
	b.t.Helper()
	b.do("log in",
		chromedp.Navigate(base+"/login"),
		chromedp.WaitVisible(css("#token")),
		chromedp.SendKeys(css("#token"), token),
		chromedp.Click(css("#login-submit")),
		// The overview, where the login redirects: the login page has no
		// such table, so this waits for the new page.
		chromedp.WaitVisible(css("#queues")),
	)
}

// screenshot takes a full-page PNG and checks it is one. It is kept in
// $PGFLOW_CONSOLE_SCREENSHOTS when set (docs/console.md's pictures come from
// PGFLOW_CONSOLE_SCREENSHOTS=../docs/console), else in a temporary folder,
// so that a test run leaves the checkout as it was.
func (b tab) screenshot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if len(png) < 1000 || string(png[1:4]) != "PNG" {
		b.t.Fatalf("screenshot %s is not a PNG (%d bytes)", name, len(png))
	}
	dir := os.Getenv("PGFLOW_CONSOLE_SCREENSHOTS")
	if dir == "" {
		dir = b.t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(browserWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond) // polling, not synchronisation
	}
}

// The path of the issue: the overview lists the queues; a dead letter is
// found, opened, its error read, and redriven from the page; a running
// consumer then handles it.
func TestBrowserFindAndRedriveDeadLetter(t *testing.T) {
	e := newEnv(t, console.Options{AdminToken: adminToken, RefreshInterval: 300 * time.Millisecond})
	ctx := context.Background()

	// A consumer that fails every message permanently until fixed.
	consumer, err := pgflow.New(e.db.Pool, pgflow.Config{Schema: e.db.Schema, PollInterval: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	var fixed atomic.Bool
	handled := make(chan int64, 10)
	err = consumer.Consume(pgflow.ConsumerConfig{Queue: "payments", Handler: func(_ context.Context, m *pgflow.Message) error {
		if !fixed.Load() {
			return pgflow.Permanent(errors.New("card declined: issuer unavailable (code 91)"))
		}
		handled <- m.ID
		return nil
	}, Declare: &pgflow.QueueConfig{MaxRetries: pgflow.Set(0)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := consumer.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = consumer.Close(context.Background()) })
	for _, q := range []string{"emails", "reports"} {
		if err := e.client.DeclareQueue(ctx, pgflow.QueueConfig{Name: q}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		if _, err := e.client.Publish(ctx, "emails", map[string]any{"to": fmt.Sprintf("user%d@example.com", i)}); err != nil {
			t.Fatal(err)
		}
	}
	id, err := e.client.Publish(ctx, "payments", map[string]any{"order": 4711, "amount_cents": 1999, "currency": "EUR"},
		pgflow.WithHeader("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the payment to be dead-lettered", func() bool { return e.db.Count(t, "pgflow_dlq", "") == 1 })
	if err := consumer.FlushStats(ctx); err != nil {
		t.Fatal(err)
	}
	// An hour of synthetic history, so the sparklines and charts in the
	// screenshots have a shape.
	e.db.Exec(t, `INSERT INTO pgflow_queue_stats (queue_name, bucket, handled, failed, dead_lettered)
		SELECT q, date_trunc('minute', now()) - i * interval '1 minute',
		       (40 + 30 * sin(i / 6.0) + (i % 7) * 3)::bigint * CASE q WHEN 'emails' THEN 2 ELSE 1 END,
		       CASE WHEN i BETWEEN 18 AND 24 THEN 12 - abs(i - 21) * 3 ELSE i % 3 END, 0
		FROM unnest(ARRAY['emails', 'payments']) q, generate_series(1, 59) i`)

	b := browser(t)
	b.login(e.srv.URL, adminToken)
	overview := b.text("#queues tbody")
	for _, q := range []string{"emails", "payments", "reports"} {
		if !strings.Contains(overview, q) {
			t.Fatalf("overview lacks queue %s: %q", q, overview)
		}
	}
	// It refreshes without a reload: a new queue appears.
	if err := e.client.DeclareQueue(ctx, pgflow.QueueConfig{Name: "webhooks"}); err != nil {
		t.Fatal(err)
	}
	b.do("see the overview refresh", chromedp.WaitVisible(css(`#queues tr[data-queue="webhooks"]`)))
	b.screenshot("overview")

	// The DLQ count links to the queue's dead letters.
	b.do("open the queue's dead letters",
		chromedp.Click(css(`#queues tr[data-queue="payments"] td.warn a`)),
		chromedp.WaitVisible(css("#dead")),
	)
	row := b.text("#dead tbody")
	if !strings.Contains(row, "card declined: issuer unavailable") {
		t.Fatalf("dead-letter row lacks the error: %q", row)
	}
	b.screenshot("queue")

	b.do("open the dead letter",
		chromedp.Click(css("#dead a.dlq-link")),
		chromedp.WaitVisible(css("#last-error")),
	)
	why, payload, trace := b.text("#last-error"), b.text("#payload"), b.text("#trace-id")
	if !strings.Contains(why, "card declined: issuer unavailable (code 91)") || !strings.Contains(payload, `"order": 4711`) ||
		trace != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("message page: why %q payload %q trace %q", why, payload, trace)
	}
	b.screenshot("message")

	// The bug is fixed; redrive from the page.
	fixed.Store(true)
	b.do("redrive", chromedp.Click(css("#btn-redrive")), chromedp.WaitVisible(css("#confirm-text")))
	confirmText := b.text("#confirm-text")
	b.do("confirm the redrive", chromedp.Click(css("#confirm-ok")), chromedp.WaitVisible(css("#toast")))
	if !strings.Contains(confirmText, "payments") {
		t.Fatalf("confirmation %q", confirmText)
	}
	select {
	case got := <-handled:
		if got != id {
			t.Fatalf("consumer handled %d, want %d", got, id)
		}
	case <-time.After(browserWait):
		t.Fatal("the redriven message was not handled")
	}
	if n := e.db.Count(t, "pgflow_dlq", ""); n != 0 {
		t.Fatalf("%d dead letters left", n)
	}
	toast := b.text("#toast")
	if !strings.Contains(toast, "Redrove 1 message to payments") {
		t.Fatalf("toast %q", toast)
	}
	acts := e.recorded()
	last := acts[len(acts)-1]
	if last.Name != "redrive" || last.Count != 1 || !strings.HasPrefix(last.Who, "admin session ") {
		t.Fatalf("recorded %+v", last)
	}
}

// A purge asks for confirmation with the count first; cancelling purges
// nothing. The publish editor validates JSON before it sends.
func TestBrowserPurgeConfirmsAndPublishValidates(t *testing.T) {
	e := newEnv(t, console.Options{AdminToken: adminToken})
	e.seed(t)
	b := browser(t)
	b.login(e.srv.URL, adminToken)

	b.do("open the dead letters",
		chromedp.Navigate(e.srv.URL+"/queues/orders?tab=dead"),
		chromedp.WaitVisible(css("#btn-purge-matching")),
		chromedp.Click(css("#btn-purge-matching")),
		chromedp.WaitVisible(css("#confirm-text")),
	)
	text, ok := b.text("#confirm-text"), b.text("#confirm-ok")
	if !strings.Contains(text, "3 dead letters of queue orders") || ok != "Purge 3 messages" {
		t.Fatalf("confirmation %q / %q", text, ok)
	}
	b.do("cancel", chromedp.Click(css("#confirm-cancel")), chromedp.WaitNotVisible(css("#confirm")))
	if n := e.db.Count(t, "pgflow_dlq", ""); n != 3 {
		t.Fatalf("cancelled purge left %d of 3", n)
	}

	// Filtered: the count follows the filter.
	b.do("filter and purge",
		chromedp.SendKeys(css("#filter-error"), "declined"),
		chromedp.Click(css("#filter-apply")),
		chromedp.WaitVisible(css(`#filters a[href="?tab=dead"]`)), // the filtered page, with its Clear link
		chromedp.Click(css("#btn-purge-matching")),
		chromedp.WaitVisible(css("#confirm-text")),
	)
	text = b.text("#confirm-text")
	if !strings.Contains(text, "2 dead letters") {
		t.Fatalf("filtered confirmation %q", text)
	}
	b.do("confirm", chromedp.Click(css("#confirm-ok")), chromedp.WaitVisible(css("#toast")))
	waitUntil(t, "the purge", func() bool { return e.db.Count(t, "pgflow_dlq", "") == 1 })
	if n := e.db.Count(t, "pgflow_dlq", "error = 'timeout calling bank'"); n != 1 {
		t.Fatal("the purge took a dead letter outside the filter")
	}

	// Publish: invalid JSON disables the button and says where.
	b.do("open the publish editor",
		chromedp.Navigate(e.srv.URL+"/queues/emails"),
		chromedp.WaitVisible(css("#btn-publish")),
		chromedp.Click(css("#btn-publish")),
		chromedp.WaitVisible(css("#pub-payload")),
		chromedp.SetValue(css("#pub-payload"), `{"to": "ada@example.com",}`),
		chromedp.SendKeys(css("#pub-payload"), " "), // fires input
	)
	status := b.text("#pub-payload-status")
	disabled := b.evalInt(`document.querySelector("#pub-submit").disabled ? 1 : 0`) == 1
	if !strings.Contains(status, "not valid JSON") || !strings.Contains(status, "line 1") || !disabled {
		t.Fatalf("invalid payload: status %q, disabled %v", status, disabled)
	}
	b.do("type valid JSON",
		chromedp.SetValue(css("#pub-payload"), `{"to": "ada@example.com"}`),
		chromedp.SendKeys(css("#pub-payload"), " "),
		chromedp.SetValue(css("#pub-priority"), "4"),
	)
	status = b.text("#pub-payload-status")
	b.do("publish", chromedp.Click(css("#pub-submit")), chromedp.WaitVisible(css("#toast")))
	if status != "Valid JSON" {
		t.Fatalf("valid payload status %q", status)
	}
	waitUntil(t, "the published message", func() bool {
		return e.db.Count(t, "pgflow_messages", `queue_name = 'emails' AND priority = 4 AND payload = '{"to": "ada@example.com"}'`) == 1
	})
}

// A read-only session sees no action button, and its forged POST (even with
// its own CSRF token) is refused; an admin session's POST without the CSRF
// token is refused too.
func TestBrowserReadOnlyAndCSRF(t *testing.T) {
	e := newEnv(t, console.Options{AdminToken: adminToken, ReadToken: readToken})
	e.seed(t)
	b := browser(t)
	b.login(e.srv.URL, readToken)

	role := b.text("#role")
	b.do("open the queue read-only", chromedp.Navigate(e.srv.URL+"/queues/orders?tab=dead"), chromedp.WaitVisible(css("#dead")))
	buttons := b.evalInt(`document.querySelectorAll("[data-act], [data-bulk], [data-open], input.pick, #publish").length`)
	if role != "read-only" || buttons != 0 {
		t.Fatalf("read-only session: role %q, %d action controls", role, buttons)
	}
	b.do("open a dead letter read-only", chromedp.Click(css("#dead a.dlq-link")), chromedp.WaitVisible(css("#last-error")))
	dlqButtons := b.evalInt(`document.querySelectorAll("button[data-act]").length`)
	if dlqButtons != 0 {
		t.Fatalf("%d action buttons on the dead letter for a read-only session", dlqButtons)
	}
	forged := `fetch("/api/dlq/purge", {method: "POST", headers: {"Content-Type": "application/json",
		"X-CSRF-Token": document.querySelector('meta[name="pgflow-csrf"]').content}, body: JSON.stringify({all: true})}).then(r => r.status)`
	if got := b.evalInt(forged); got != 403 {
		t.Fatalf("read-only forged purge: %d, want 403", got)
	}
	if n := e.db.Count(t, "pgflow_dlq", ""); n != 3 {
		t.Fatalf("DLQ has %d of 3 after a refused purge", n)
	}

	// An admin session: without the CSRF token, refused; with it, done.
	b.do("log out", chromedp.Click(css(`header form button`)), chromedp.WaitVisible(css("#login-link")))
	b.login(e.srv.URL, adminToken)
	noToken := `fetch("/api/queues/orders/pause", {method: "POST"}).then(r => r.status)`
	if got := b.evalInt(noToken); got != 403 {
		t.Fatalf("pause without CSRF token: %d, want 403", got)
	}
	wrong := `fetch("/api/queues/orders/pause", {method: "POST", headers: {"X-CSRF-Token": "forged"}}).then(r => r.status)`
	if got := b.evalInt(wrong); got != 403 {
		t.Fatalf("pause with a forged CSRF token: %d, want 403", got)
	}
	if n := e.db.Count(t, "pgflow_queues", "paused"); n != 0 {
		t.Fatal("a refused pause paused the queue")
	}
	b.do("pause from the page",
		chromedp.Navigate(e.srv.URL+"/queues/orders"),
		chromedp.WaitVisible(css("#btn-pause")),
		chromedp.Click(css("#btn-pause")),
		chromedp.WaitVisible(css("#btn-resume")),
	)
	state := b.text("#queue-state")
	if state != "paused" || e.db.Count(t, "pgflow_queues", "queue_name = 'orders' AND paused") != 1 {
		t.Fatalf("pause from the page: state %q", state)
	}
}
