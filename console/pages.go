package console

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/pgflow-go/pgflow"
)

// page is what every template gets.
type page struct {
	Title           string
	Base            string // mount prefix
	Role            string
	Admin           bool
	Via             string
	CSRF            string
	AdminConfigured bool
	ReadRequired    bool
	RefreshMS       int64
	Now             time.Time
	Error           string
	Data            any
}

func (k *Console) newPage(c caller, title string) page {
	return page{Title: title, Base: k.o.Prefix, Role: c.role.String(), Admin: c.role == RoleAdmin, Via: c.via,
		CSRF: k.csrfToken(c.sid), AdminConfigured: k.o.AdminToken != "", ReadRequired: k.o.ReadToken != "",
		RefreshMS: k.o.RefreshInterval.Milliseconds(), Now: time.Now()}
}

var pageNames = []string{"overview", "queue", "message", "dlqmessage", "login", "error"}

func parsePages(k *Console) (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"url":    k.url,
		"age":    ageSeconds,
		"ts":     func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
		"tsp":    func(t *time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
		"pretty": prettyJSON,
		"spark":  sparkline,
		"chart":  chart,
		"short":  shortJSON,
		"add":    func(a, b int) int { return a + b },
		"sum":    sum,
		"secs":   func(ms int64) float64 { return float64(ms) / 1000 },
		"csv":    func(s []string) string { return strings.Join(s, ", ") },
		"lease":  func(s *float64) string { return leaseLeft(s) },
		"queryWith": func(v url.Values, kv ...string) string {
			w := url.Values{}
			for key, vals := range v {
				w[key] = append([]string(nil), vals...)
			}
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i+1] == "" {
					w.Del(kv[i])
				} else {
					w.Set(kv[i], kv[i+1])
				}
			}
			return w.Encode()
		},
	}
	out := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(embedded, "templates/layout.html", "templates/message_parts.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

func (k *Console) render(w http.ResponseWriter, status int, name string, p page) {
	var buf bytes.Buffer
	if err := k.pages[name].Execute(&buf, p); err != nil {
		k.log.Error("pgflow console: render", "page", name, "err", err)
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// renderError shows a page-level error with the status statusOf gives.
func (k *Console) renderError(w http.ResponseWriter, r *http.Request, c caller, err error) {
	status := statusOf(err)
	p := k.newPage(c, "Error")
	p.Error = err.Error()
	if status == http.StatusInternalServerError {
		k.log.Error("pgflow console: page failed", "path", r.URL.Path, "err", err)
		p.Error = "Cannot read the queues: " + err.Error()
		status = http.StatusServiceUnavailable
	}
	k.render(w, status, "error", p)
}

func (k *Console) pageOverview(w http.ResponseWriter, r *http.Request, c caller) {
	qs, err := k.overview(r)
	if err != nil {
		k.renderError(w, r, c, err)
		return
	}
	p := k.newPage(c, "Queues")
	p.Data = qs
	k.render(w, http.StatusOK, "overview", p)
}

// listTab lists the queue page's tab. A bad filter is the page's message
// (the rest of the page still shows), not an error.
func (k *Console) listTab(r *http.Request, queue string, qp *queuePage, lp listParams, listErr error, items *any) error {
	err := listErr
	if err == nil {
		lp.state = qp.Tab
		*items, qp.Next, err = k.listMessages(r, queue, lp)
	}
	if err != nil {
		if statusOf(err) == http.StatusInternalServerError {
			return err
		}
		qp.ListError = err.Error()
	}
	return nil
}

type queuePage struct {
	Q        queueDetailJSON
	Tab      string
	Tabs     []string
	Query    url.Values
	Messages []messageJSON
	Dead     []dlqJSON
	Next     string
	Since    string
	Error    string
	Priority string
	Chart1h  seriesJSON
	Chart24h seriesJSON
	// Filtered is true when a filter narrows the listing.
	Filtered bool
	// ListError is a bad filter's message; the rest of the page still shows.
	ListError string
}

func (k *Console) pageQueue(w http.ResponseWriter, r *http.Request, c caller) {
	queue, err := pathQueue(r)
	if err != nil {
		k.renderError(w, r, c, err)
		return
	}
	q := r.URL.Query()
	lp, listErr := parseList(q)
	qp := queuePage{Tab: q.Get("tab"), Tabs: states, Query: q,
		Since: q.Get("since"), Error: q.Get("error"), Priority: q.Get("priority")}
	qp.Filtered = qp.Since != "" || qp.Error != "" || qp.Priority != ""
	var items any
	tabAsked := qp.Tab != ""
	// The page's reads run at once; the tab's listing waits for the counts
	// only when no tab is asked for (the default tab depends on them).
	err = parallel(
		func() (err error) {
			if qp.Q, err = k.queueDetail(r, queue); err != nil || tabAsked {
				return err
			}
			qp.Tab = "pending"
			if qp.Q.Ready == 0 && qp.Q.DeadLettered > 0 {
				qp.Tab = "dead" // what someone opening this queue most likely looks for
			}
			return k.listTab(r, queue, &qp, lp, listErr, &items)
		},
		func() (err error) { qp.Chart1h, err = k.series(r, queue, "1h"); return },
		func() (err error) { qp.Chart24h, err = k.series(r, queue, "24h"); return },
		func() error {
			if !tabAsked {
				return nil
			}
			return k.listTab(r, queue, &qp, lp, listErr, &items)
		},
	)
	if err != nil {
		k.renderError(w, r, c, err)
		return
	}
	switch v := items.(type) {
	case []messageJSON:
		qp.Messages = v
	case []dlqJSON:
		qp.Dead = v
	}
	p := k.newPage(c, queue)
	p.Data = qp
	status := http.StatusOK
	if qp.ListError != "" {
		status = http.StatusBadRequest
	}
	k.render(w, status, "queue", p)
}

func (k *Console) pageMessage(w http.ResponseWriter, r *http.Request, c caller) {
	id, err := pathID(r)
	if err != nil {
		k.renderError(w, r, c, err)
		return
	}
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	m, err := k.c.Message(ctx, id)
	if errors.Is(err, pgflow.ErrMessageNotFound) {
		err = fmt.Errorf("message %d is not in any queue: it was handled (acknowledged messages are deleted), never published, or is in the dead-letter queue", id)
		p := k.newPage(c, "Message not found")
		p.Error = err.Error()
		k.render(w, http.StatusNotFound, "error", p)
		return
	}
	if err != nil {
		k.renderError(w, r, c, err)
		return
	}
	p := k.newPage(c, fmt.Sprintf("Message %d", id))
	p.Data = fromLive(m)
	k.render(w, http.StatusOK, "message", p)
}

func (k *Console) pageDLQMessage(w http.ResponseWriter, r *http.Request, c caller) {
	id, err := pathID(r)
	if err != nil {
		k.renderError(w, r, c, err)
		return
	}
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	m, err := k.c.DLQMessage(ctx, id)
	if errors.Is(err, pgflow.ErrDLQMessageNotFound) {
		p := k.newPage(c, "Dead letter not found")
		p.Error = fmt.Sprintf("dead letter %d is not in the DLQ: it was redriven, purged, or never existed", id)
		k.render(w, http.StatusNotFound, "error", p)
		return
	}
	if err != nil {
		k.renderError(w, r, c, err)
		return
	}
	p := k.newPage(c, fmt.Sprintf("Dead letter %d", id))
	p.Data = fromDLQ(m)
	k.render(w, http.StatusOK, "dlqmessage", p)
}

// ---- login ----

type loginPage struct {
	Next    string
	Message string
}

func safeNext(s string) string {
	if !strings.HasPrefix(s, "/") || strings.HasPrefix(s, "//") || strings.HasPrefix(s, "/\\") {
		return ""
	}
	return s
}

func (k *Console) pageLogin(w http.ResponseWriter, r *http.Request) {
	c, _ := k.identify(r)
	p := k.newPage(c, "Log in")
	p.Data = loginPage{Next: safeNext(r.URL.Query().Get("next"))}
	k.render(w, http.StatusOK, "login", p)
}

func (k *Console) login(w http.ResponseWriter, r *http.Request) {
	a := Action{Name: "login", Remote: remote(r), Who: "anonymous"}
	fail := func(status int, msg string, err error) {
		a.Status, a.Err = status, err
		k.record(a)
		p := k.newPage(caller{role: RoleNone}, "Log in")
		p.Data = loginPage{Next: safeNext(r.FormValue("next")), Message: msg}
		k.render(w, status, "login", p)
	}
	if err := k.cop.Check(r); err != nil {
		fail(http.StatusForbidden, "Cross-origin login refused.", err)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		fail(http.StatusBadRequest, "Bad form.", err)
		return
	}
	tok := strings.TrimSpace(r.PostFormValue("token"))
	role, err := k.roleOf(tok)
	if err != nil {
		fail(http.StatusUnauthorized, "That token is neither the admin nor the read-only token.", err)
		return
	}
	value, sid := k.newSession(role)
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: value, Path: k.url("/"), HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode, MaxAge: int(k.o.SessionTTL / time.Second)})
	a.Role, a.Who, a.Status = role, role.String()+" session "+sid[:8], http.StatusSeeOther
	k.record(a)
	next := safeNext(r.PostFormValue("next"))
	if next == "" {
		next = k.url("/")
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (k *Console) logout(w http.ResponseWriter, r *http.Request) {
	c, _ := k.identify(r)
	if err := k.cop.Check(r); err != nil {
		writeError(w, http.StatusForbidden, "cross-origin request refused")
		return
	}
	// A logout needs the CSRF token too, or any site could log users out.
	if c.via == "session" && !equal(r.Header.Get(csrfHeader), k.csrfToken(c.sid)) && !equal(r.PostFormValue("csrf"), k.csrfToken(c.sid)) {
		writeError(w, http.StatusForbidden, "missing or invalid CSRF token")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: k.url("/"), HttpOnly: true, MaxAge: -1, SameSite: http.SameSiteStrictMode})
	k.record(Action{Name: "logout", Who: c.who, Role: c.role, Remote: remote(r), Status: http.StatusSeeOther})
	http.Redirect(w, r, k.url("/"), http.StatusSeeOther)
}

// ---- template helpers ----

func ageSeconds(s float64) string {
	if s <= 0 {
		return "–"
	}
	d := time.Duration(s * float64(time.Second))
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%.0fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func leaseLeft(s *float64) string {
	if s == nil {
		return "–"
	}
	if *s < 0 {
		return "expired " + ageSeconds(-*s) + " ago"
	}
	return ageSeconds(*s)
}

func prettyJSON(v any) string {
	var raw []byte
	switch x := v.(type) {
	case json.RawMessage:
		raw = x
	default:
		b, err := json.Marshal(x)
		if err != nil {
			return fmt.Sprint(v)
		}
		raw = b
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return string(raw)
	}
	return buf.String()
}

// shortJSON is a one-line preview of a payload.
func shortJSON(raw json.RawMessage) string {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return string(raw)
	}
	s := buf.String()
	if len(s) > 90 {
		s = s[:87] + "…"
	}
	return s
}

// sparkline draws handled (green) and failed (red) per minute as one small
// SVG; app.js draws the same on refresh.
func sparkline(handled, failed []int64) template.HTML {
	const w, h = 120.0, 26.0
	top := int64(1)
	for i := range handled {
		top = max(top, handled[i], failed[i])
	}
	line := func(v []int64) string {
		var b strings.Builder
		for i, x := range v {
			px := float64(i) * w / math.Max(1, float64(len(v)-1))
			py := h - 1 - float64(x)*(h-2)/float64(top)
			fmt.Fprintf(&b, "%.1f,%.1f ", px, py)
		}
		return b.String()
	}
	return template.HTML(fmt.Sprintf(`<svg class="spark" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img" aria-label="handled and failed per minute, last hour"><polyline class="h" points="%s"/><polyline class="f" points="%s"/></svg>`,
		w, h, w, h, line(handled), line(failed)))
}

// chart draws a series' three lines with axes.
func chart(s seriesJSON, title string) template.HTML {
	const w, h, left, bottom = 560.0, 150.0, 40.0, 18.0
	pw, ph := w-left-6, h-bottom-8
	top := int64(1)
	for i := range s.Handled {
		top = max(top, s.Handled[i], s.Failed[i], s.DeadLettered[i])
	}
	n := len(s.Bins)
	x := func(i int) float64 { return left + float64(i)*pw/math.Max(1, float64(n-1)) }
	y := func(v int64) float64 { return 8 + ph - float64(v)*ph/float64(top) }
	line := func(v []int64, class string) string {
		var b strings.Builder
		for i, val := range v {
			fmt.Fprintf(&b, "%.1f,%.1f ", x(i), y(val))
		}
		return fmt.Sprintf(`<polyline class="%s" points="%s"/>`, class, b.String())
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %.0f %.0f" role="img" aria-label="%s">`, w, h, template.HTMLEscapeString(title))
	fmt.Fprintf(&b, `<line class="axis" x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f"/>`, left, 8+ph, w-6, 8+ph)
	fmt.Fprintf(&b, `<line class="axis" x1="%.0f" y1="8" x2="%.0f" y2="%.0f"/>`, left, left, 8+ph)
	fmt.Fprintf(&b, `<text x="%.0f" y="14" class="lbl" text-anchor="end">%d</text>`, left-4, top)
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" class="lbl" text-anchor="end">0</text>`, left-4, 8+ph)
	if n > 0 {
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" class="lbl">%s</text>`, left, h-3, s.Bins[0].UTC().Format("15:04"))
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" class="lbl" text-anchor="end">%s UTC</text>`, w-6, h-3, s.Bins[n-1].UTC().Format("15:04"))
	}
	b.WriteString(line(s.Handled, "h"))
	b.WriteString(line(s.Failed, "f"))
	b.WriteString(line(s.DeadLettered, "d"))
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// sum adds a series up (template helper for chart legends).
func sum(v []int64) int64 {
	var t int64
	for _, x := range v {
		t += x
	}
	return t
}
