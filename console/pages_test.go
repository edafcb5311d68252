package console_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/pgflow-go/pgflow/console"
)

func page(t *testing.T, e *env, path string) (int, string) {
	t.Helper()
	r := e.do(t, req{method: "GET", path: path})
	return r.status, string(r.body)
}

func TestPages(t *testing.T) {
	e := newEnv(t, console.Options{AdminToken: adminToken})
	e.seed(t)
	// A payload and an error that would run script if not escaped.
	e.db.Exec(t, `INSERT INTO pgflow_messages (id, queue_name, payload, errors) VALUES
		(2001, 'orders', '{"html": "<script>alert(1)</script>"}', '[{"attempt":1,"error":"<img src=x onerror=alert(2)>","at":"2026-01-01T00:00:00Z"}]')`)

	cases := []struct {
		path   string
		status int
		want   []string
	}{
		{"/", 200, []string{`href="/queues/orders"`, `href="/queues/emails"`, "Log in with the admin token", "Counted at"}},
		{"/queues/orders", 200, []string{"Pending (4)", "In flight (1)", "Dead letters (3)", `id="messages"`, "worker-a", "Last hour, per minute"}},
		{"/queues/orders?tab=dead", 200, []string{`id="dead"`, "card declined", "timeout calling bank"}},
		{"/queues/orders?tab=in_flight", 200, []string{"worker-a", "Lease left"}},
		{"/queues/orders?tab=delayed", 200, []string{"1004", "delayed"}},
		{"/queues/orders?tab=dead&error=bank", 200, []string{"timeout calling bank", "Clear"}},
		{"/queues/orders?priority=high", 400, []string{`id="list-error"`, "priority"}},
		{"/queues/orders?tab=lost", 400, []string{"state &#34;lost&#34; must be one of"}},
		{"/queues/nope", 404, []string{"queue not found"}},
		{"/queues/bad%20name", 400, []string{"invalid queue name"}},
		{"/messages/1001", 200, []string{"4bf92f3577b34da6a3ce929d0e0e4736", `&#34;order&#34;: 1`, "No failed attempt."}},
		{"/messages/2001", 200, []string{"&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;img src=x onerror=alert(2)&gt;"}},
		{"/messages/999999", 404, []string{"is not in any queue"}},
		{"/messages/abc", 400, []string{"not a message id"}},
		{"/dlq/999999", 404, []string{"not in the DLQ"}},
		{"/login", 200, []string{`name="token"`}},
		{"/nope", 404, nil},
	}
	for _, c := range cases {
		status, body := page(t, e, c.path)
		if status != c.status {
			t.Errorf("%s: %d, want %d", c.path, status, c.status)
		}
		for _, w := range c.want {
			if !strings.Contains(body, w) {
				t.Errorf("%s lacks %q", c.path, w)
			}
		}
		if strings.Contains(body, "<script>alert") || strings.Contains(body, "<img src=x") {
			t.Errorf("%s: unescaped markup", c.path)
		}
	}
	// Anonymous on a console with an admin token: no action control.
	_, body := page(t, e, "/queues/orders?tab=dead")
	if strings.Contains(body, "data-act") || strings.Contains(body, "data-bulk") || strings.Contains(body, `id="publish"`) {
		t.Error("action controls shown without the admin credential")
	}
	// An admin session sees them.
	ck, _ := e.login(t, adminToken)
	r := e.do(t, req{method: "GET", path: "/queues/orders?tab=dead", cookie: ck})
	if !strings.Contains(string(r.body), `data-bulk="purge-matching"`) || !strings.Contains(string(r.body), `id="btn-pause"`) {
		t.Error("admin session without action controls")
	}
}

// Every asset is embedded: pages load nothing from another origin, and
// their script and stylesheet come from the handler.
func TestPagesUseOnlyEmbeddedAssets(t *testing.T) {
	e := newEnv(t, console.Options{})
	e.seed(t)
	ref := regexp.MustCompile(`(?:src|href)="([^"]*)"`)
	seen := map[string]bool{}
	for _, p := range []string{"/", "/queues/orders", "/queues/orders?tab=dead", "/messages/1001", "/dlq/1", "/login"} {
		r := e.do(t, req{method: "GET", path: p})
		if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("%s: CSP %q", p, csp)
		}
		for _, m := range ref.FindAllStringSubmatch(string(r.body), -1) {
			u := m[1]
			if strings.Contains(u, "//") {
				t.Errorf("%s refers to another origin: %s", p, u)
			}
			if strings.HasPrefix(u, "/assets/") {
				seen[u] = true
			}
		}
	}
	for _, a := range []string{"/assets/app.js", "/assets/app.css", "/assets/favicon.svg"} {
		if !seen[a] {
			t.Errorf("no page uses %s", a)
		}
		r := e.do(t, req{method: "GET", path: a})
		if r.status != http.StatusOK || len(r.body) < 100 {
			t.Errorf("%s: %d, %d bytes", a, r.status, len(r.body))
		}
	}
}

// Mounted under a prefix, links and redirects keep it.
func TestMountedUnderPrefix(t *testing.T) {
	e := newEnv(t, console.Options{})
	e.seed(t)
	h, err := console.New(e.client, console.Options{Prefix: "/ops/console", ReadToken: readToken})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	mux := http.NewServeMux()
	mux.Handle("/ops/console/", h)
	mux.Handle("/ops/console", h)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	cl := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	res, err := cl.Get(srv.URL + "/ops/console/queues/orders")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if loc := res.Header.Get("Location"); res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/ops/console/login?next=%2Fops%2Fconsole%2Fqueues%2Forders") {
		t.Fatalf("redirect to login: %d %q", res.StatusCode, loc)
	}
	r, _ := http.NewRequest("GET", srv.URL+"/ops/console/", nil)
	r.Header.Set("Authorization", "Bearer "+readToken)
	res, err = cl.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{`href="/ops/console/queues/orders"`, `src="/ops/console/assets/app.js"`, `content="/ops/console"`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("page under prefix lacks %q", want)
		}
	}
	res, err = cl.Get(srv.URL + "/ops/console")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusFound || res.Header.Get("Location") != "/ops/console/" {
		t.Errorf("bare prefix: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
}
