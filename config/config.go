package config

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.yaml.in/yaml/v3"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/internal/schema"
)

// Config is a loaded, validated configuration file.
type Config struct {
	// Path is the file it was loaded from ("" for Parse).
	Path        string
	DatabaseURL string
	// Schema holds pgflow's tables.
	Schema    string
	Producers []Producer // in file order
	Consumers []Consumer // in file order
}

// Queue holds the settings producer and consumer entries share. A nil
// setting is one the entry does not set (nor PGFLOW_MAX_RETRIES or
// PGFLOW_RETRY_DELAY_MS): a producer then uses DefaultMaxRetries and
// DefaultRetryDelayMs, a consumer leaves the queue's stored value alone.
type Queue struct {
	// Name is the entry's key, e.g. "proposals_for_consensus".
	Name       string
	QueueName  string
	Workers    int
	MaxRetries *int
	RetryDelay *time.Duration
	// Priority is nil when the entry does not set one.
	Priority *int
	// Line is the entry's line in the file.
	Line int
}

// Producer is a queue the service publishes to.
type Producer struct{ Queue }

// Consumer is a queue the service consumes.
type Consumer struct {
	Queue
	// Handler names a handler registered in Go.
	Handler string
	// LeaseTimeout is the queue's lease (lease_timeout_ms), nil when unset.
	LeaseTimeout *time.Duration
	// Timeout bounds one handler call (timeout_ms); 0 when unset, which
	// leaves the consumer's default.
	Timeout time.Duration
	// Expiry is the queue's default message expiry (expiry), nil when
	// unset; 0 turns it off.
	Expiry *time.Duration
	// DLQRetention is how long the queue's dead letters are kept
	// (dlq_retention), nil when unset; 0 keeps them until purged.
	DLQRetention *time.Duration
	// Topics the queue subscribes to (topics), at Service.Start.
	Topics []string
	// BatchSize (batch_size), when not 0, makes Handler a batch handler
	// receiving up to BatchSize messages per call.
	BatchSize int
	// Prefetch (prefetch) is pgflow.ConsumerConfig.Prefetch: how many
	// messages beyond Workers the consumer may claim ahead of free workers;
	// 0 when unset. Not with BatchSize.
	Prefetch int
}

// Handlers maps the names used in consumer entries' handler key to handlers.
type Handlers map[string]pgflow.Handler

// Names returns the registered names, sorted.
func (h Handlers) Names() []string {
	names := make([]string, 0, len(h))
	for n := range h {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// BatchHandlers maps the names used by consumer entries with batch_size to
// batch handlers.
type BatchHandlers map[string]pgflow.BatchHandler

// Options tune loading.
type Options struct {
	// Handlers, when not nil, are the handler names consumers may use; an
	// entry naming another is a problem. Nil (with BatchHandlers nil) skips
	// the check (for tools that only inspect a file).
	Handlers Handlers
	// BatchHandlers are the handler names consumer entries with batch_size
	// may use; checked like Handlers.
	BatchHandlers BatchHandlers
	// LookupEnv reads environment variables. Default os.LookupEnv.
	LookupEnv func(string) (string, bool)
}

// Problem is one thing wrong with a file.
type Problem struct {
	Path    string // key path, e.g. "consumers.rollback_triggers.workers"
	Line    int    // 0 when unknown
	Message string
}

func (p Problem) String() string {
	s := ""
	if p.Line > 0 {
		s = fmt.Sprintf("line %d: ", p.Line)
	}
	if p.Path != "" {
		s += p.Path + ": "
	}
	return s + p.Message
}

// Error lists every problem found in a file.
type Error struct {
	File     string
	Problems []Problem
}

func (e *Error) Error() string {
	name := e.File
	if name == "" {
		name = "config"
	}
	var b strings.Builder
	if len(e.Problems) == 1 {
		fmt.Fprintf(&b, "%s: %s", name, e.Problems[0])
		return b.String()
	}
	fmt.Fprintf(&b, "%s: %d problems:", name, len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  " + p.String())
	}
	return b.String()
}

// Default values of producer entries that do not set them (and that
// PGFLOW_MAX_RETRIES and PGFLOW_RETRY_DELAY_MS do not set either), and the
// workers of every entry. A consumer entry has no defaults of its own for
// queue settings: what it does not set, the queue keeps.
const (
	DefaultMaxRetries   = 3
	DefaultRetryDelayMs = 1000
	DefaultWorkers      = 1
)

// Load reads and validates a configuration file.
func Load(path string, opts Options) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := parse(data, path, opts)
	if cfg != nil {
		cfg.Path = path
	}
	return cfg, err
}

// Parse validates configuration text. name labels errors.
func Parse(data []byte, name string, opts Options) (*Config, error) {
	return parse(data, name, opts)
}

type loader struct {
	opts     Options
	problems []Problem
}

func (l *loader) add(path string, line int, format string, args ...any) {
	l.problems = append(l.problems, Problem{Path: path, Line: line, Message: fmt.Sprintf(format, args...)})
}

func parse(data []byte, name string, opts Options) (*Config, error) {
	if opts.LookupEnv == nil {
		opts.LookupEnv = os.LookupEnv
	}
	l := &loader{opts: opts}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, &Error{File: name, Problems: []Problem{{Message: strings.TrimPrefix(err.Error(), "yaml: ")}}}
	}
	if len(doc.Content) == 0 {
		return nil, &Error{File: name, Problems: []Problem{{Message: "the file is empty"}}}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, &Error{File: name, Problems: []Problem{{Line: root.Line, Message: "want a mapping with database_url, producers and consumers, got " + kindName(root)}}}
	}
	cfg := &Config{}
	defaults := l.envDefaults()
	var dbLine int
	l.each(root, "", func(key string, k, v *yaml.Node) {
		switch key {
		case "database_url":
			cfg.DatabaseURL, _ = l.str(v, key)
			dbLine = v.Line
		case "schema":
			cfg.Schema, _ = l.str(v, key)
		case "producers":
			l.entries(v, key, func(name string, k, v *yaml.Node) {
				q := l.queue(name, "producers."+name, k, v, defaults, false)
				cfg.Producers = append(cfg.Producers, Producer{Queue: q.Queue})
			})
		case "consumers":
			l.entries(v, key, func(name string, k, v *yaml.Node) {
				q := l.queue(name, "consumers."+name, k, v, defaults, true)
				cfg.Consumers = append(cfg.Consumers, q)
			})
		default:
			l.add(key, k.Line, "unknown key (want database_url, schema, producers or consumers)")
		}
	})

	if u, ok := opts.LookupEnv("PGFLOW_DATABASE_URL"); ok && u != "" {
		cfg.DatabaseURL = u
		dbLine = 0
	}
	if cfg.DatabaseURL == "" {
		l.add("database_url", dbLine, "missing: set database_url or PGFLOW_DATABASE_URL")
	} else if _, err := pgconn.ParseConfig(cfg.DatabaseURL); err != nil {
		path := "database_url"
		if dbLine == 0 {
			path = "PGFLOW_DATABASE_URL"
		}
		l.add(path, dbLine, "not a PostgreSQL URL: %v", unwrapAll(err))
	}
	schemaLine := 0
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "schema" {
			schemaLine = root.Content[i+1].Line
		}
	}
	if cfg.Schema == "" {
		if s, ok := opts.LookupEnv("PGFLOW_SCHEMA"); ok && s != "" {
			cfg.Schema = s
		} else {
			cfg.Schema = schema.Default
		}
	}
	if schema.Validate(cfg.Schema) != nil {
		l.add("schema", schemaLine, "%q: want 1-63 characters of [a-z0-9_], starting with a letter or underscore", cfg.Schema)
	}
	l.crossCheck(cfg)
	if len(l.problems) > 0 {
		return nil, &Error{File: name, Problems: l.problems}
	}
	return cfg, nil
}

// envDefaults are PGFLOW_MAX_RETRIES and PGFLOW_RETRY_DELAY_MS, nil when
// unset.
type envDefaults struct {
	maxRetries, retryDelayMs *int
}

func (l *loader) envDefaults() envDefaults {
	var d envDefaults
	read := func(name string, into **int) {
		s, ok := l.opts.LookupEnv(name)
		if !ok || s == "" {
			return
		}
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 0 {
			l.add("env "+name, 0, "want a non-negative integer, got %q", s)
			return
		}
		*into = &n
	}
	read("PGFLOW_MAX_RETRIES", &d.maxRetries)
	read("PGFLOW_RETRY_DELAY_MS", &d.retryDelayMs)
	return d
}

// each calls fn for every key of a mapping node, reporting duplicate keys.
func (l *loader) each(m *yaml.Node, prefix string, fn func(key string, k, v *yaml.Node)) {
	seen := map[string]int{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		path := join(prefix, k.Value)
		if k.Kind != yaml.ScalarNode {
			l.add(prefix, k.Line, "keys must be plain names")
			continue
		}
		if line, dup := seen[k.Value]; dup {
			l.add(path, k.Line, "declared twice (first on line %d)", line)
			continue
		}
		seen[k.Value] = k.Line
		fn(k.Value, k, v)
	}
}

// entries walks producers or consumers: a mapping of entry name to settings.
func (l *loader) entries(v *yaml.Node, path string, fn func(name string, k, v *yaml.Node)) {
	if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
		return // "producers:" with nothing under it
	}
	if v.Kind != yaml.MappingNode {
		l.add(path, v.Line, "want a mapping of entry name to settings, got %s", kindName(v))
		return
	}
	l.each(v, path, func(name string, k, v *yaml.Node) {
		if v.Kind != yaml.MappingNode {
			l.add(join(path, name), v.Line, "want a mapping of settings (queue_name, workers, …), got %s", kindName(v))
			return
		}
		fn(name, k, v)
	})
}

func (l *loader) queue(name, path string, k, v *yaml.Node, d envDefaults, consumer bool) Consumer {
	c := Consumer{Queue: Queue{Name: name, Line: k.Line, Workers: DefaultWorkers, MaxRetries: d.maxRetries}}
	if d.retryDelayMs != nil {
		c.RetryDelay = durationPtr(*d.retryDelayMs)
	}
	var sawQueue, sawHandler bool
	handlerLine, prefetchLine := 0, 0
	l.each(v, path, func(key string, kn, vn *yaml.Node) {
		p := join(path, key)
		switch key {
		case "queue_name":
			sawQueue = true
			if s, ok := l.str(vn, p); ok {
				if err := pgflow.ValidateQueueName(s); err != nil {
					var ie *pgflow.InputError
					if errors.As(err, &ie) {
						l.add(p, vn.Line, "%q: %s", s, ie.Reason)
					} else {
						l.add(p, vn.Line, "%v", err)
					}
				}
				c.QueueName = s
			}
		case "workers":
			if n, ok := l.integer(vn, p); ok {
				if n < 1 {
					l.add(p, vn.Line, "must be at least 1, got %d", n)
				} else if n > 1000 {
					l.add(p, vn.Line, "must be at most 1000, got %d", n)
				}
				c.Workers = n
			}
		case "max_retries":
			if n, ok := l.integer(vn, p); ok {
				if n < 0 {
					l.add(p, vn.Line, "must be 0 or more, got %d", n)
				}
				c.MaxRetries = &n
			}
		case "retry_delay_ms":
			if n, ok := l.integer(vn, p); ok {
				if n < 0 {
					l.add(p, vn.Line, "must be 0 or more, got %d", n)
				} else if n > 24*3600*1000 {
					l.add(p, vn.Line, "must be at most a day (86400000), got %d", n)
				}
				c.RetryDelay = durationPtr(n)
			}
		case "priority":
			if pr, ok := l.priority(vn, p); ok {
				c.Priority = &pr
			}
		case "handler":
			if !consumer {
				l.add(p, kn.Line, "unknown key: handler is only for consumers")
				return
			}
			sawHandler = true
			if s, ok := l.str(vn, p); ok {
				c.Handler = s
				handlerLine = vn.Line
				if s == "" {
					l.add(p, vn.Line, "must not be empty")
				}
			}
		case "batch_size":
			if !consumer {
				l.add(p, kn.Line, "unknown key: batch_size is only for consumers")
				return
			}
			if n, ok := l.integerIn(vn, p, 1, 10000); ok {
				c.BatchSize = n
			}
		case "prefetch":
			if !consumer {
				l.add(p, kn.Line, "unknown key: prefetch is only for consumers")
				return
			}
			if n, ok := l.integerIn(vn, p, 0, 10000); ok {
				c.Prefetch, prefetchLine = n, vn.Line
			}
		case "lease_timeout_ms", "timeout_ms":
			if !consumer {
				l.add(p, kn.Line, "unknown key: %s is only for consumers", key)
				return
			}
			floor := 1
			if key == "lease_timeout_ms" {
				floor = 100
			}
			if n, ok := l.integer(vn, p); ok {
				switch {
				case n < floor:
					l.add(p, vn.Line, "must be at least %d, got %d", floor, n)
				case n > 24*3600*1000:
					l.add(p, vn.Line, "must be at most a day (86400000), got %d", n)
				case key == "lease_timeout_ms":
					c.LeaseTimeout = durationPtr(n)
				default:
					c.Timeout = time.Duration(n) * time.Millisecond
				}
			}
		case "expiry", "dlq_retention":
			if !consumer {
				l.add(p, kn.Line, "unknown key: %s is only for consumers", key)
				return
			}
			if d, ok := l.lifetime(vn, p); ok {
				if key == "expiry" {
					c.Expiry = &d
				} else {
					c.DLQRetention = &d
				}
			}
		case "topics":
			if !consumer {
				l.add(p, kn.Line, "unknown key: topics is only for consumers (a queue subscribes to topics)")
				return
			}
			c.Topics = l.topics(vn, p)
		case "handler_method":
			l.add(p, kn.Line, "unknown key: pgflow names a handler with one key; register the method under a name and write handler: <name>")
		default:
			known := "queue_name, workers, max_retries, retry_delay_ms, priority"
			if consumer {
				known += ", handler, batch_size, prefetch, lease_timeout_ms, timeout_ms, expiry, dlq_retention, topics"
			}
			l.add(p, kn.Line, "unknown key (want %s)", known)
		}
	})
	if !sawQueue {
		l.add(join(path, "queue_name"), k.Line, "missing")
	}
	if c.BatchSize > 0 && c.Prefetch > 0 {
		l.add(join(path, "prefetch"), prefetchLine, "is for handlers of one message at a time; a batch handler claims ahead through batch_size")
	}
	if consumer && !sawHandler {
		l.add(join(path, "handler"), k.Line, "missing: name the Go handler for this queue")
	}
	if consumer && c.Handler != "" && (l.opts.Handlers != nil || l.opts.BatchHandlers != nil) {
		if msg := handlerProblem(c, l.opts.Handlers, l.opts.BatchHandlers); msg != "" {
			l.add(join(path, "handler"), handlerLine, "%s", msg)
		}
	}
	return c
}

// topics reads a list of topic names.
func (l *loader) topics(v *yaml.Node, path string) []string {
	if v.Kind == yaml.AliasNode && v.Alias != nil {
		v = v.Alias
	}
	if v.Kind != yaml.SequenceNode {
		l.add(path, v.Line, "want a list of topic names, got %s", kindName(v))
		return nil
	}
	var out []string
	for i, item := range v.Content {
		p := fmt.Sprintf("%s[%d]", path, i)
		s, ok := l.str(item, p)
		if !ok {
			continue
		}
		if !pgflow.QueueNamePattern.MatchString(s) {
			l.add(p, item.Line, "%q: want 1-128 characters of [A-Za-z0-9_.:-], starting with a letter, digit or '_'", s)
			continue
		}
		if slices.Contains(out, s) {
			l.add(p, item.Line, "topic %q is listed twice", s)
			continue
		}
		out = append(out, s)
	}
	return out
}

// handlerProblem says why c's handler is not registered ("" when it is): a
// batch_size entry names a batch handler, another entry a handler.
func handlerProblem(c Consumer, hs Handlers, bs BatchHandlers) string {
	_, single := hs[c.Handler]
	_, batch := bs[c.Handler]
	switch {
	case c.BatchSize > 0 && batch, c.BatchSize == 0 && single:
		return ""
	case c.BatchSize > 0 && single:
		return fmt.Sprintf("handler %q handles one message at a time; batch_size needs a batch handler (registered: %s)", c.Handler, registered(bs))
	case c.BatchSize > 0:
		return fmt.Sprintf("batch handler %q is not registered (registered: %s)", c.Handler, registered(bs))
	case batch:
		return fmt.Sprintf("handler %q is a batch handler; set batch_size", c.Handler)
	default:
		return fmt.Sprintf("handler %q is not registered (registered: %s)", c.Handler, registered(hs))
	}
}

func registered[H any](h map[string]H) string {
	if len(h) == 0 {
		return "none"
	}
	names := make([]string, 0, len(h))
	for n := range h {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// scalar returns a scalar node's value after ${VAR} expansion.
func (l *loader) scalar(v *yaml.Node, path, want string) (string, bool) {
	if v.Kind == yaml.AliasNode && v.Alias != nil {
		v = v.Alias
	}
	if v.Kind != yaml.ScalarNode {
		l.add(path, v.Line, "want %s, got %s", want, kindName(v))
		return "", false
	}
	if v.Tag == "!!null" {
		l.add(path, v.Line, "want %s, got nothing", want)
		return "", false
	}
	s, err := expand(v.Value, l.opts.LookupEnv)
	if err != nil {
		l.add(path, v.Line, "%v", err)
		return "", false
	}
	return s, true
}

func (l *loader) str(v *yaml.Node, path string) (string, bool) {
	if v.Kind == yaml.ScalarNode && v.Tag != "!!str" && v.Tag != "!!null" && v.Style == 0 {
		l.add(path, v.Line, "want a string, got %s %s", tagName(v.Tag), v.Value)
		return "", false
	}
	return l.scalar(v, path, "a string")
}

// integerIn is integer within [lo, hi]; a number outside is a problem.
func (l *loader) integerIn(v *yaml.Node, path string, lo, hi int) (int, bool) {
	n, ok := l.integer(v, path)
	if ok && (n < lo || n > hi) {
		l.add(path, v.Line, "must be %d-%d, got %d", lo, hi, n)
		return 0, false
	}
	return n, ok
}

func (l *loader) integer(v *yaml.Node, path string) (int, bool) {
	s, ok := l.scalar(v, path, "an integer")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		l.add(path, v.Line, "want an integer, got %q%s", s, fromEnv(v.Value, s))
		return 0, false
	}
	return n, true
}

// lifetime reads expiry and dlq_retention: a duration with a unit (90s,
// 15m, 36h, 7d, 1d12h), or off (also 0). These span days, unlike the _ms
// keys, so they take units.
func (l *loader) lifetime(v *yaml.Node, path string) (time.Duration, bool) {
	s, ok := l.scalar(v, path, "a duration")
	if !ok {
		return 0, false
	}
	t := strings.TrimSpace(s)
	if t == "off" || t == "0" {
		return 0, true
	}
	d, err := parseLifetime(t)
	switch {
	case err != nil:
		l.add(path, v.Line, "want a duration such as 15m, 36h or 7d, or off; got %q%s", s, fromEnv(v.Value, s))
		return 0, false
	case d < time.Millisecond:
		l.add(path, v.Line, "must be at least 1ms (or off), got %q", s)
		return 0, false
	case d > 10*365*24*time.Hour:
		l.add(path, v.Line, "must be at most 10 years, got %q", s)
		return 0, false
	}
	return d, true
}

// parseLifetime is time.ParseDuration plus a leading number of days.
func parseLifetime(s string) (time.Duration, error) {
	days, rest, ok := strings.Cut(s, "d")
	if !ok {
		return time.ParseDuration(s)
	}
	n, err := strconv.Atoi(days)
	if err != nil || n < 0 || n > 10*366 {
		return 0, fmt.Errorf("bad number of days in %q", s)
	}
	d := time.Duration(n) * 24 * time.Hour
	if rest != "" {
		r, err := time.ParseDuration(rest)
		if err != nil || r < 0 {
			return 0, fmt.Errorf("bad duration %q", s)
		}
		d += r
	}
	return d, nil
}

func (l *loader) priority(v *yaml.Node, path string) (int, bool) {
	s, ok := l.scalar(v, path, "high, normal or a number")
	if !ok {
		return 0, false
	}
	switch strings.TrimPrefix(strings.TrimSpace(s), ":") {
	case "high":
		return pgflow.PriorityHigh, true
	case "normal":
		return pgflow.PriorityNormal, true
	}
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		l.add(path, v.Line, "want high, normal or a number, got %q%s", s, fromEnv(v.Value, s))
		return 0, false
	}
	if n < -32768 || n > 32767 {
		l.add(path, v.Line, "%d is outside [-32768, 32767]", n)
		return 0, false
	}
	return n, true
}

// fromEnv notes where an expanded value came from.
func fromEnv(raw, expanded string) string {
	if raw != expanded {
		return fmt.Sprintf(" (from %s)", raw)
	}
	return ""
}

// crossCheck finds queues declared more than once with different settings
// and queues with two consumers.
func (l *loader) crossCheck(cfg *Config) {
	type decl struct {
		path string
		q    Queue
	}
	byQueue := map[string]decl{}
	consumerOf := map[string]decl{}
	check := func(path string, q Queue) {
		if q.QueueName == "" {
			return
		}
		first, ok := byQueue[q.QueueName]
		if !ok {
			byQueue[q.QueueName] = decl{path, q}
			return
		}
		// Settings only one entry sets are not a conflict.
		var diffs []string
		if first.q.MaxRetries != nil && q.MaxRetries != nil && *first.q.MaxRetries != *q.MaxRetries {
			diffs = append(diffs, fmt.Sprintf("max_retries %d vs %d", *q.MaxRetries, *first.q.MaxRetries))
		}
		if first.q.RetryDelay != nil && q.RetryDelay != nil && *first.q.RetryDelay != *q.RetryDelay {
			diffs = append(diffs, fmt.Sprintf("retry_delay_ms %d vs %d", q.RetryDelay.Milliseconds(), first.q.RetryDelay.Milliseconds()))
		}
		if first.q.Priority != nil && q.Priority != nil && *first.q.Priority != *q.Priority {
			diffs = append(diffs, fmt.Sprintf("priority %d vs %d", *q.Priority, *first.q.Priority))
		}
		if len(diffs) > 0 {
			l.add(path, q.Line, "queue %q is declared again with different settings than %s (line %d): %s",
				q.QueueName, first.path, first.q.Line, strings.Join(diffs, ", "))
		}
	}
	for _, p := range cfg.Producers {
		check("producers."+p.Name, p.Queue)
	}
	for _, c := range cfg.Consumers {
		path := "consumers." + c.Name
		if first, ok := consumerOf[c.QueueName]; ok && c.QueueName != "" {
			l.add(path, c.Line, "queue %q already has a consumer (%s, line %d); use one entry and raise its workers",
				c.QueueName, first.path, first.q.Line)
			continue
		}
		consumerOf[c.QueueName] = decl{path, c.Queue}
		check(path, c.Queue)
	}
	// Report in file order; problems without a line (environment) first.
	slices.SortStableFunc(l.problems, func(a, b Problem) int { return a.Line - b.Line })
}

func durationPtr(ms int) *time.Duration {
	d := time.Duration(ms) * time.Millisecond
	return &d
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing"
		}
		return fmt.Sprintf("%s %q", tagName(n.Tag), n.Value)
	}
	return "something else"
}

func tagName(tag string) string {
	switch tag {
	case "!!int":
		return "the number"
	case "!!float":
		return "the number"
	case "!!bool":
		return "the boolean"
	case "!!str":
		return "the string"
	}
	return "the value"
}

func unwrapAll(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}
