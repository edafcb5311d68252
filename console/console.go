package console

import (
	"context"
	"crypto/rand"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/pgflow-go/pgflow"
)

// Options configure a Console. The zero value serves a read-only console
// that anyone who can reach it may read.
type Options struct {
	// AdminToken is the credential that may act (pause, resume, redrive,
	// purge, publish). Empty: nobody may; the console is read-only.
	AdminToken string
	// ReadToken, when set, is needed to read (the admin token also reads).
	// Empty: reading needs no credential.
	ReadToken string
	// Prefix is the path the handler is mounted at, e.g. "/console"
	// (without a trailing slash). The handler strips it itself; mount it as
	// mux.Handle("/console/", h). Empty: mounted at the root.
	Prefix string
	// Logger receives one line per action and per refused action. Default
	// slog.Default().
	Logger *slog.Logger
	// OnAction, when set, receives every action, performed or refused, after
	// it is logged. Keep it fast.
	OnAction func(Action)
	// RefreshInterval is how often the overview re-reads the queues in the
	// browser. Default 5 s.
	RefreshInterval time.Duration
	// SessionTTL is how long a browser login lasts. Default 12 h.
	SessionTTL time.Duration
	// StatsMaxAge bounds how old the queue counts a page shows may be when
	// counting is slow (over 50 ms: about a million rows): pages then show
	// the last counts, with their time, while one background read renews
	// them. Cheap counts are read for every page. Default 2 s; negative:
	// always count for the page.
	StatsMaxAge time.Duration
}

// Action is one action asked of the console: what, by whom, on what, and
// how it ended.
type Action struct {
	Time time.Time
	// Name is pause, resume, redrive, purge, publish, login or logout.
	Name string
	// Who identifies the caller: role, session or token fingerprint.
	Who    string
	Role   Role
	Remote string
	Queue  string
	// Count is how many messages the action touched (redriven, purged,
	// published).
	Count int
	// Detail says more: the filter, skipped messages, the new message id.
	Detail string
	// Err is why the action was refused or failed; nil when done.
	Err error
	// Status is the HTTP status answered.
	Status int
}

// Console is the http.Handler of the console: HTML pages, their assets and
// the JSON API.
type Console struct {
	c       *pgflow.Client
	o       Options
	log     *slog.Logger
	key     []byte // signs sessions and CSRF tokens; new per Console
	mux     *http.ServeMux
	pages   map[string]*template.Template
	static  fs.FS
	cop     *http.CrossOriginProtection
	stats   *statsCache
	started time.Time
}

//go:embed assets templates
var embedded embed.FS

// New returns a console on client, which only needs to publish (consumers
// and stats counters may be off: pgflow.Config{DisableStatsCounters: true}).
func New(client *pgflow.Client, o Options) (*Console, error) {
	if client == nil {
		return nil, errors.New("console: nil client")
	}
	if o.Prefix != "" && (!strings.HasPrefix(o.Prefix, "/") || strings.HasSuffix(o.Prefix, "/")) {
		return nil, fmt.Errorf("console: prefix %q must start with / and not end with one", o.Prefix)
	}
	if o.AdminToken != "" && o.AdminToken == o.ReadToken {
		return nil, errors.New("console: the admin and read tokens must differ")
	}
	for _, t := range []string{o.AdminToken, o.ReadToken} {
		if t != "" && len(t) < 16 {
			return nil, errors.New("console: tokens must be at least 16 characters")
		}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.RefreshInterval <= 0 {
		o.RefreshInterval = 5 * time.Second
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = 12 * time.Hour
	}
	if o.StatsMaxAge == 0 {
		o.StatsMaxAge = 2 * time.Second
	}
	k := &Console{c: client, o: o, log: o.Logger, key: make([]byte, 32), started: time.Now()}
	if _, err := rand.Read(k.key); err != nil {
		return nil, err
	}
	var err error
	if k.pages, err = parsePages(k); err != nil {
		return nil, err
	}
	k.static, _ = fs.Sub(embedded, "assets")
	k.cop = http.NewCrossOriginProtection()
	k.stats = newStatsCache(func(ctx context.Context, queue string) ([]pgflow.QueueStats, error) {
		if queue == "" {
			return client.AllQueueStats(ctx)
		}
		s, err := client.QueueStats(ctx, queue)
		if err != nil {
			return nil, err
		}
		return []pgflow.QueueStats{s}, nil
	}, o.StatsMaxAge)
	k.routes()
	return k, nil
}

// Close stops the background reads of queue counts and waits for them. The
// handler keeps answering (reading counts for each page).
func (k *Console) Close() {
	k.stats.close()
}

// ServeHTTP serves the console.
func (k *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if k.o.Prefix != "" {
		rest, ok := strings.CutPrefix(r.URL.Path, k.o.Prefix)
		if !ok || (rest != "" && !strings.HasPrefix(rest, "/")) {
			http.NotFound(w, r)
			return
		}
		if rest == "" {
			http.Redirect(w, r, k.o.Prefix+"/", http.StatusFound)
			return
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path = rest
		r2.URL.RawPath = ""
		r = r2
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "same-origin")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	k.mux.ServeHTTP(w, r)
}

func (k *Console) routes() {
	m := http.NewServeMux()
	// Pages.
	m.HandleFunc("GET /{$}", k.read(k.pageOverview))
	m.HandleFunc("GET /queues/{queue}", k.read(k.pageQueue))
	m.HandleFunc("GET /messages/{id}", k.read(k.pageMessage))
	m.HandleFunc("GET /dlq/{id}", k.read(k.pageDLQMessage))
	m.HandleFunc("GET /login", k.pageLogin)
	m.HandleFunc("POST /login", k.login)
	m.HandleFunc("POST /logout", k.logout)
	m.Handle("GET /assets/", http.StripPrefix("/assets/", assetServer(k.static)))

	// JSON API: reads.
	m.HandleFunc("GET /api/session", k.apiSession)
	m.HandleFunc("GET /api/queues", k.readAPI(k.apiQueues))
	m.HandleFunc("GET /api/queues/{queue}", k.readAPI(k.apiQueue))
	m.HandleFunc("GET /api/queues/{queue}/messages", k.readAPI(k.apiQueueMessages))
	m.HandleFunc("GET /api/queues/{queue}/series", k.readAPI(k.apiSeries))
	m.HandleFunc("GET /api/messages/{id}", k.readAPI(k.apiMessage))
	m.HandleFunc("GET /api/dlq", k.readAPI(k.apiDLQ))
	m.HandleFunc("GET /api/dlq/count", k.readAPI(k.apiDLQCount))
	m.HandleFunc("GET /api/dlq/{id}", k.readAPI(k.apiDLQMessage))
	// JSON API: actions (admin credential, CSRF token for browser sessions).
	m.HandleFunc("POST /api/queues/{queue}/pause", k.act("pause", k.apiPause))
	m.HandleFunc("POST /api/queues/{queue}/resume", k.act("resume", k.apiResume))
	m.HandleFunc("POST /api/queues/{queue}/publish", k.act("publish", k.apiPublish))
	m.HandleFunc("POST /api/dlq/redrive", k.act("redrive", k.apiRedrive))
	m.HandleFunc("POST /api/dlq/purge", k.act("purge", k.apiPurge))
	// Unknown endpoints get a JSON 404; a known path with another method
	// still gets the mux's 405.
	notFound := func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such API endpoint: %s %s (see docs/console.md)", r.Method, r.URL.Path)
	}
	m.HandleFunc("GET /api/", notFound)
	m.HandleFunc("POST /api/", notFound)
	k.mux = m
}

// assetServer serves the embedded assets with a short cache lifetime (they
// change with the binary, and names carry no hash).
func assetServer(fsys fs.FS) http.Handler {
	h := http.FileServerFS(fsys)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=300")
		h.ServeHTTP(w, r)
	})
}

// url returns a console path with the mount prefix.
func (k *Console) url(p string) string { return k.o.Prefix + p }

// record logs an action and hands it to OnAction.
func (k *Console) record(a Action) {
	if a.Time.IsZero() {
		a.Time = time.Now()
	}
	attrs := []any{"action", a.Name, "who", a.Who, "role", a.Role.String(), "remote", a.Remote,
		"queue", a.Queue, "count", a.Count, "status", a.Status}
	if a.Detail != "" {
		attrs = append(attrs, "detail", a.Detail)
	}
	if a.Err != nil {
		attrs = append(attrs, "err", a.Err.Error())
		k.log.Warn("pgflow console: action refused or failed", attrs...)
	} else {
		k.log.Info("pgflow console: action", attrs...)
	}
	if k.o.OnAction != nil {
		k.o.OnAction(a)
	}
}

// ctxTimeout bounds a read; actions use the request's context alone, so a
// long rate-limited redrive runs until done or until the client goes away.
func ctxTimeout(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), 30*time.Second)
}
