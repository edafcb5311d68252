package config_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/config"
)

func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := vars[k]
		return v, ok
	}
}

func noop(context.Context, *pgflow.Message) error { return nil }

var handlers = config.Handlers{"handle_a": noop, "handle_b": noop}

var batchHandlers = config.BatchHandlers{"handle_batch": func(ctx context.Context, msgs []*pgflow.Message) error { return nil }}

const valid = `
database_url: postgres://127.0.0.1/test
producers:
  out:
    queue_name: out_queue
    workers: ${OUT_WORKERS:-2}
    max_retries: 3
    retry_delay_ms: 1000
    priority: high
consumers:
  in:
    queue_name: in_queue
    workers: 3
    handler: handle_a
    max_retries: 5
    retry_delay_ms: 250
    priority: normal
    lease_timeout_ms: 300000
    timeout_ms: 90000
    prefetch: 6
    expiry: 15m
    dlq_retention: 7d
`

func TestParseValid(t *testing.T) {
	cfg, err := config.Parse([]byte(valid), "pgflow.yaml", config.Options{Handlers: handlers, LookupEnv: env(nil)})
	if err != nil {
		t.Fatal(err)
	}
	high, normal := pgflow.PriorityHigh, pgflow.PriorityNormal
	if cfg.DatabaseURL != "postgres://127.0.0.1/test" || cfg.Schema != "public" {
		t.Fatalf("database %q schema %q", cfg.DatabaseURL, cfg.Schema)
	}
	p := cfg.Producers[0]
	if p.Name != "out" || p.QueueName != "out_queue" || p.Workers != 2 || *p.MaxRetries != 3 || *p.RetryDelay != time.Second || *p.Priority != high || p.Line != 4 {
		t.Fatalf("producer %+v", p)
	}
	c := cfg.Consumers[0]
	if c.Name != "in" || c.QueueName != "in_queue" || c.Workers != 3 || c.Handler != "handle_a" || *c.MaxRetries != 5 ||
		*c.RetryDelay != 250*time.Millisecond || *c.Priority != normal || *c.LeaseTimeout != 5*time.Minute || c.Timeout != 90*time.Second {
		t.Fatalf("consumer %+v", c)
	}
	cc := c.ConsumerConfig(noop)
	want := pgflow.QueueConfig{Name: "in_queue", MaxRetries: pgflow.Set(5), RetryDelay: pgflow.Set(250 * time.Millisecond),
		LeaseTimeout: pgflow.Set(5 * time.Minute), Priority: pgflow.Set(normal),
		Expiry: pgflow.Set(15 * time.Minute), DLQRetention: pgflow.Set(7 * 24 * time.Hour)}
	if cc.Queue != "in_queue" || cc.Workers != 3 || cc.Prefetch != 6 || cc.Timeout != 90*time.Second || cc.Declare == nil || *cc.Declare != want {
		t.Fatalf("consumer config %+v, declare %+v", cc, cc.Declare)
	}
	pc := p.ProducerConfig()
	if pc.Queue != "out_queue" || pc.Workers != 2 || pc.MaxRetries != 3 || pc.RetryDelay != time.Second || *pc.Priority != high {
		t.Fatalf("producer config %+v", pc)
	}
}

func TestEnvironment(t *testing.T) {
	src := `
database_url: ${DB:-postgres://127.0.0.1/default}
producers:
  out:
    queue_name: out_${SUFFIX}
    workers: ${OUT_WORKERS:-2}
consumers:
  in:
    queue_name: in_queue
    handler: handle_a
`
	for _, tc := range []struct {
		name       string
		vars       map[string]string
		url        string
		queue      string
		workers    int
		maxRetries int
		delay      time.Duration
	}{
		{"defaults", map[string]string{"SUFFIX": "x"}, "postgres://127.0.0.1/default", "out_x", 2, 3, time.Second},
		{"set", map[string]string{"SUFFIX": "y", "OUT_WORKERS": "5", "DB": "postgres://h/db"}, "postgres://h/db", "out_y", 5, 3, time.Second},
		{"empty uses default", map[string]string{"SUFFIX": "z", "OUT_WORKERS": ""}, "postgres://127.0.0.1/default", "out_z", 2, 3, time.Second},
		{"PGFLOW_DATABASE_URL wins", map[string]string{"SUFFIX": "x", "DB": "postgres://h/db", "PGFLOW_DATABASE_URL": "postgres://env/db"}, "postgres://env/db", "out_x", 2, 3, time.Second},
		{"retry env defaults", map[string]string{"SUFFIX": "x", "PGFLOW_MAX_RETRIES": "7", "PGFLOW_RETRY_DELAY_MS": "50"}, "postgres://127.0.0.1/default", "out_x", 2, 7, 50 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(src), "f.yaml", config.Options{Handlers: handlers, LookupEnv: env(tc.vars)})
			if err != nil {
				t.Fatal(err)
			}
			p, c := cfg.Producers[0], cfg.Consumers[0]
			pc := p.ProducerConfig()
			if cfg.DatabaseURL != tc.url || p.QueueName != tc.queue || p.Workers != tc.workers ||
				pc.MaxRetries != tc.maxRetries || pc.RetryDelay != tc.delay {
				t.Fatalf("got url %q queue %q workers %d retries %d delay %v", cfg.DatabaseURL, p.QueueName, p.Workers, pc.MaxRetries, pc.RetryDelay)
			}
			// The consumer declares the environment's settings when set, and
			// nothing otherwise (the queue keeps what it has).
			decl := c.ConsumerConfig(noop).Declare
			if _, set := tc.vars["PGFLOW_MAX_RETRIES"]; set {
				if decl == nil || decl.MaxRetries != pgflow.Set(tc.maxRetries) || decl.RetryDelay != pgflow.Set(tc.delay) {
					t.Fatalf("consumer declares %+v, want retries %d and delay %v", decl, tc.maxRetries, tc.delay)
				}
			} else if decl != nil || c.MaxRetries != nil || c.RetryDelay != nil {
				t.Fatalf("consumer declares %+v (retries %v, delay %v), want nothing", decl, c.MaxRetries, c.RetryDelay)
			}
		})
	}
}

func TestProblems(t *testing.T) {
	const head = "database_url: postgres://127.0.0.1/test\n"
	for _, tc := range []struct {
		name string
		src  string
		vars map[string]string
		want string
	}{
		{"empty", ``, nil, `f.yaml: the file is empty`},
		{"not a mapping", `- a`, nil, `f.yaml: line 1: want a mapping with database_url, producers and consumers, got a list`},
		{"syntax", "producers: [", nil, `f.yaml: line 1: did not find expected node content`},
		{"unknown top key", head + "producer: {}\n", nil, `f.yaml: line 2: producer: unknown key (want database_url, schema, producers or consumers)`},
		{"missing database", "producers: {}\n", nil, `f.yaml: database_url: missing: set database_url or PGFLOW_DATABASE_URL`},
		{"bad database url", "database_url: 'postgres://x:notaport/db'\n", nil, `f.yaml: line 1: database_url: not a PostgreSQL URL: cannot parse ` + "`postgres://x:notaport/db`" + `: invalid port`},
		{"unknown entry key", head + "producers:\n  p:\n    queue_name: q\n    worker: 2\n", nil,
			`f.yaml: line 5: producers.p.worker: unknown key (want queue_name, workers, max_retries, retry_delay_ms, priority)`},
		{"unknown consumer key", head + "consumers:\n  c:\n    queue_name: q\n    handler: handle_a\n    lease_ms: 5\n", nil,
			`f.yaml: line 6: consumers.c.lease_ms: unknown key (want queue_name, workers, max_retries, retry_delay_ms, priority, handler, batch_size, prefetch, lease_timeout_ms, timeout_ms, expiry, dlq_retention, topics)`},
		{"expiry on a producer", head + "producers:\n  p:\n    queue_name: q\n    expiry: 5m\n", nil,
			`f.yaml: line 5: producers.p.expiry: unknown key: expiry is only for consumers`},
		{"retention without unit", head + "consumers:\n  c:\n    queue_name: q\n    handler: handle_a\n    dlq_retention: 604800000\n", nil,
			`f.yaml: line 6: consumers.c.dlq_retention: want a duration such as 15m, 36h or 7d, or off; got "604800000"`},
		{"expiry too short", head + "consumers:\n  c:\n    queue_name: q\n    handler: handle_a\n    expiry: 10us\n", nil,
			`f.yaml: line 6: consumers.c.expiry: must be at least 1ms (or off), got "10us"`},
		{"retention from bad env", head + "consumers:\n  c:\n    queue_name: q\n    handler: handle_a\n    dlq_retention: ${KEEP:-7d}\n", map[string]string{"KEEP": "a week"},
			`f.yaml: line 6: consumers.c.dlq_retention: want a duration such as 15m, 36h or 7d, or off; got "a week" (from ${KEEP:-7d})`},
		{"lease on a producer", head + "producers:\n  p:\n    queue_name: q\n    lease_timeout_ms: 1000\n", nil,
			`f.yaml: line 5: producers.p.lease_timeout_ms: unknown key: lease_timeout_ms is only for consumers`},
		{"timeout on a producer", head + "producers:\n  p:\n    queue_name: q\n    timeout_ms: 1000\n", nil,
			`f.yaml: line 5: producers.p.timeout_ms: unknown key: timeout_ms is only for consumers`},
		{"lease too short", head + "consumers:\n  c:\n    queue_name: q\n    handler: handle_a\n    lease_timeout_ms: 99\n", nil,
			`f.yaml: line 6: consumers.c.lease_timeout_ms: must be at least 100, got 99`},
		{"lease too long", head + "consumers:\n  c:\n    queue_name: q\n    handler: handle_a\n    lease_timeout_ms: 86400001\n", nil,
			`f.yaml: line 6: consumers.c.lease_timeout_ms: must be at most a day (86400000), got 86400001`},
		{"lease not a number", head + "consumers:\n  c:\n    queue_name: q\n    handler: handle_a\n    lease_timeout_ms: 5m\n", nil,
			`f.yaml: line 6: consumers.c.lease_timeout_ms: want an integer, got "5m"`},
		{"lease from bad env", head + "consumers:\n  c:\n    queue_name: q\n    handler: handle_a\n    lease_timeout_ms: ${LEASE:-30000}\n", map[string]string{"LEASE": "long"},
			`f.yaml: line 6: consumers.c.lease_timeout_ms: want an integer, got "long" (from ${LEASE:-30000})`},
		{"topics not a list", head + "consumers:\n  c:\n    queue_name: q\n    handler: handle_a\n    topics: news\n", nil,
			`f.yaml: line 6: consumers.c.topics: want a list of topic names, got the string "news"`},
		{"bad topic name", head + "consumers:\n  c:\n    queue_name: q\n    handler: handle_a\n    topics: [news, 'bad topic']\n", nil,
			`f.yaml: line 6: consumers.c.topics[1]: "bad topic": want 1-128 characters of [A-Za-z0-9_.:-], starting with a letter, digit or '_'`},
		{"topics on a producer", head + "producers:\n  p:\n    queue_name: q\n    topics: [news]\n", nil,
			`f.yaml: line 5: producers.p.topics: unknown key: topics is only for consumers (a queue subscribes to topics)`},
		{"timeout zero", head + "consumers:\n  c:\n    queue_name: q\n    handler: handle_a\n    timeout_ms: 0\n", nil,
			`f.yaml: line 6: consumers.c.timeout_ms: must be at least 1, got 0`},
		{"timeout too long", head + "consumers:\n  c:\n    queue_name: q\n    handler: handle_a\n    timeout_ms: 86400001\n", nil,
			`f.yaml: line 6: consumers.c.timeout_ms: must be at most a day (86400000), got 86400001`},
		{"timeout empty", head + "consumers:\n  c:\n    queue_name: q\n    handler: handle_a\n    timeout_ms:\n", nil,
			`f.yaml: line 6: consumers.c.timeout_ms: want an integer, got nothing`},
		{"timeout a list", head + "consumers:\n  c:\n    queue_name: q\n    handler: handle_a\n    timeout_ms: [1]\n", nil,
			`f.yaml: line 6: consumers.c.timeout_ms: want an integer, got a list`},
		{"batch size on a producer", head + "producers:\n  p:\n    queue_name: q\n    batch_size: 10\n", nil,
			`f.yaml: line 5: producers.p.batch_size: unknown key: batch_size is only for consumers`},
		{"batch size zero", head + "consumers:\n  c:\n    queue_name: q\n    handler: handle_batch\n    batch_size: 0\n", nil,
			"f.yaml: 2 problems:\n  line 5: consumers.c.handler: handler \"handle_batch\" is a batch handler; set batch_size\n  line 6: consumers.c.batch_size: must be 1-10000, got 0"},
		{"batch size for a single handler", head + "consumers:\n  c:\n    queue_name: q\n    batch_size: 50\n    handler: handle_a\n", nil,
			`f.yaml: line 6: consumers.c.handler: handler "handle_a" handles one message at a time; batch_size needs a batch handler (registered: handle_batch)`},
		{"unregistered batch handler", head + "consumers:\n  c:\n    queue_name: q\n    handler: handle_x\n    batch_size: 50\n", nil,
			`f.yaml: line 5: consumers.c.handler: batch handler "handle_x" is not registered (registered: handle_batch)`},
		{"prefetch on a producer", head + "producers:\n  p:\n    queue_name: q\n    prefetch: 10\n", nil,
			`f.yaml: line 5: producers.p.prefetch: unknown key: prefetch is only for consumers`},
		{"prefetch negative", head + "consumers:\n  c:\n    queue_name: q\n    handler: handle_a\n    prefetch: -1\n", nil,
			`f.yaml: line 6: consumers.c.prefetch: must be 0-10000, got -1`},
		{"prefetch absurd", head + "consumers:\n  c:\n    queue_name: q\n    handler: handle_a\n    prefetch: 1000000\n", nil,
			`f.yaml: line 6: consumers.c.prefetch: must be 0-10000, got 1000000`},
		{"prefetch with batch size", head + "consumers:\n  c:\n    queue_name: q\n    handler: handle_batch\n    batch_size: 50\n    prefetch: 10\n", nil,
			`f.yaml: line 7: consumers.c.prefetch: is for handlers of one message at a time; a batch handler claims ahead through batch_size`},
		{"handler on producer", head + "producers:\n  p:\n    queue_name: q\n    handler: handle_a\n", nil,
			`f.yaml: line 5: producers.p.handler: unknown key: handler is only for consumers`},
		{"handler_method", head + "consumers:\n  c:\n    queue_name: q\n    handler: handle_a\n    handler_method: x\n", nil,
			`f.yaml: line 6: consumers.c.handler_method: unknown key: pgflow names a handler with one key; register the method under a name and write handler: <name>`},
		{"workers not a number", head + "producers:\n  p:\n    queue_name: q\n    workers: two\n", nil,
			`f.yaml: line 5: producers.p.workers: want an integer, got "two"`},
		{"workers from bad env", head + "producers:\n  p:\n    queue_name: q\n    workers: ${W:-2}\n", map[string]string{"W": "lots"},
			`f.yaml: line 5: producers.p.workers: want an integer, got "lots" (from ${W:-2})`},
		{"workers a list", head + "producers:\n  p:\n    queue_name: q\n    workers: [1]\n", nil,
			`f.yaml: line 5: producers.p.workers: want an integer, got a list`},
		{"workers zero", head + "producers:\n  p:\n    queue_name: q\n    workers: 0\n", nil,
			`f.yaml: line 5: producers.p.workers: must be at least 1, got 0`},
		{"workers empty", head + "producers:\n  p:\n    queue_name: q\n    workers:\n", nil,
			`f.yaml: line 5: producers.p.workers: want an integer, got nothing`},
		{"negative retries", head + "producers:\n  p:\n    queue_name: q\n    max_retries: -1\n", nil,
			`f.yaml: line 5: producers.p.max_retries: must be 0 or more, got -1`},
		{"negative delay", head + "producers:\n  p:\n    queue_name: q\n    retry_delay_ms: -5\n", nil,
			`f.yaml: line 5: producers.p.retry_delay_ms: must be 0 or more, got -5`},
		{"bad priority", head + "producers:\n  p:\n    queue_name: q\n    priority: urgent\n", nil,
			`f.yaml: line 5: producers.p.priority: want high, normal or a number, got "urgent"`},
		{"priority out of range", head + "producers:\n  p:\n    queue_name: q\n    priority: 40000\n", nil,
			`f.yaml: line 5: producers.p.priority: 40000 is outside [-32768, 32767]`},
		{"queue name a number", head + "producers:\n  p:\n    queue_name: 12\n", nil,
			`f.yaml: line 4: producers.p.queue_name: want a string, got the number 12`},
		{"bad queue name", head + "producers:\n  p:\n    queue_name: 'a b'\n", nil,
			`f.yaml: line 4: producers.p.queue_name: "a b": want 1-128 characters of [A-Za-z0-9_.:-], starting with a letter, digit or '_'`},
		{"missing queue name", head + "producers:\n  p:\n    workers: 1\n", nil,
			`f.yaml: line 3: producers.p.queue_name: missing`},
		{"entry not a mapping", head + "producers:\n  p: q\n", nil,
			`f.yaml: line 3: producers.p: want a mapping of settings (queue_name, workers, …), got the string "q"`},
		{"producers a list", head + "producers:\n  - queue_name: q\n", nil,
			`f.yaml: line 3: producers: want a mapping of entry name to settings, got a list`},
		{"missing handler", head + "consumers:\n  c:\n    queue_name: q\n", nil,
			`f.yaml: line 3: consumers.c.handler: missing: name the Go handler for this queue`},
		{"unregistered handler", head + "consumers:\n  c:\n    queue_name: q\n    handler: handle_c\n", nil,
			`f.yaml: line 5: consumers.c.handler: handler "handle_c" is not registered (registered: handle_a, handle_b)`},
		{"unset variable", head + "producers:\n  p:\n    queue_name: ${QUEUE}\n", nil,
			`f.yaml: line 4: producers.p.queue_name: environment variable QUEUE is not set (write ${QUEUE:-default} to give a default)`},
		{"unclosed variable", head + "producers:\n  p:\n    queue_name: ${QUEUE\n", nil,
			`f.yaml: line 4: producers.p.queue_name: unclosed ${ in "${QUEUE"`},
		{"bad variable", head + "producers:\n  p:\n    queue_name: ${1Q}\n", nil,
			`f.yaml: line 4: producers.p.queue_name: bad variable ${1Q}: want ${NAME} or ${NAME:-default}, NAME of letters, digits and _`},
		{"bad schema", head + "schema: My-Schema\n", nil, `f.yaml: line 2: schema: "My-Schema": want 1-63 characters of [a-z0-9_], starting with a letter or underscore`},
		{"bad env default", head, map[string]string{"PGFLOW_MAX_RETRIES": "three"},
			`f.yaml: env PGFLOW_MAX_RETRIES: want a non-negative integer, got "three"`},
		{"duplicate entry", head + "producers:\n  p:\n    queue_name: q\n  p:\n    queue_name: r\n", nil,
			`f.yaml: line 5: producers.p: declared twice (first on line 3)`},
		{"queue declared twice differently", head + "producers:\n  p:\n    queue_name: q\n    max_retries: 3\n    priority: high\nconsumers:\n  c:\n    queue_name: q\n    handler: handle_a\n    max_retries: 5\n    priority: 3\n", nil,
			`f.yaml: line 8: consumers.c: queue "q" is declared again with different settings than producers.p (line 3): max_retries 5 vs 3, priority 3 vs 10`},
		{"two consumers", head + "consumers:\n  a:\n    queue_name: q\n    handler: handle_a\n  b:\n    queue_name: q\n    handler: handle_b\n", nil,
			`f.yaml: line 6: consumers.b: queue "q" already has a consumer (consumers.a, line 3); use one entry and raise its workers`},
		{"all at once", "database_url: postgres://127.0.0.1/test\nproducers:\n  p:\n    queue_name: q\n    workers: 0\n    colour: red\nconsumers:\n  c:\n    queue_name: r\n    handler: nope\n", nil,
			"f.yaml: 3 problems:\n  line 5: producers.p.workers: must be at least 1, got 0\n  line 6: producers.p.colour: unknown key (want queue_name, workers, max_retries, retry_delay_ms, priority)\n  line 10: consumers.c.handler: handler \"nope\" is not registered (registered: handle_a, handle_b)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse([]byte(tc.src), "f.yaml", config.Options{Handlers: handlers, BatchHandlers: batchHandlers, LookupEnv: env(tc.vars)})
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a *config.Error", err)
			}
			if err.Error() != tc.want {
				t.Fatalf("got\n%s\nwant\n%s", err, tc.want)
			}
		})
	}
}

func TestSameQueueSameSettingsIsFine(t *testing.T) {
	src := "database_url: postgres://127.0.0.1/test\nproducers:\n  p:\n    queue_name: q\nconsumers:\n  c:\n    queue_name: q\n    handler: handle_a\n"
	if _, err := config.Parse([]byte(src), "f.yaml", config.Options{Handlers: handlers, LookupEnv: env(nil)}); err != nil {
		t.Fatal(err)
	}
}

func TestNilHandlersSkipsTheCheck(t *testing.T) {
	src := "database_url: postgres://127.0.0.1/test\nconsumers:\n  c:\n    queue_name: q\n    handler: anything\n"
	if _, err := config.Parse([]byte(src), "f.yaml", config.Options{LookupEnv: env(nil)}); err != nil {
		t.Fatal(err)
	}
}

// The nexus example's two configuration files.
func TestGuideFiles(t *testing.T) {
	names := func(ns ...string) config.Handlers {
		h := config.Handlers{}
		for _, n := range ns {
			h[n] = noop
		}
		return h
	}
	sing, err := config.Load("../examples/nexus/singularity/pgflow.yaml", config.Options{
		Handlers:  names("handle_consensus_result", "handle_rollback_trigger", "handle_safety_profile_update"),
		LookupEnv: env(map[string]string{"SINGULARITY_INSTANCE_ID": "singularity-2", "PGFLOW_CONSENSUS_WORKERS": "4"}),
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range sing.Producers {
		got = append(got, p.QueueName+"/"+strconv.Itoa(p.Workers))
	}
	for _, c := range sing.Consumers {
		got = append(got, c.QueueName+"/"+strconv.Itoa(c.Workers)+"/"+c.Handler)
	}
	want := "proposals_for_consensus_queue/2 metrics_to_guardian_queue/2 patterns_for_aggregator_queue/1 " +
		"consensus_results_queue.singularity-2/4/handle_consensus_result rollback_triggers_queue.singularity-2/1/handle_rollback_trigger " +
		"guardian_safety_profiles_queue.singularity-2/1/handle_safety_profile_update"
	if strings.Join(got, " ") != want {
		t.Fatalf("singularity:\n%s\nwant\n%s", strings.Join(got, " "), want)
	}
	if p := sing.Consumers[1].Priority; p == nil || *p != pgflow.PriorityHigh {
		t.Fatal("rollback consumer is not high priority")
	}
	if sing.DatabaseURL != "postgresql://localhost/singularity" || sing.Schema != "nexus_demo" {
		t.Fatalf("singularity database %q schema %q", sing.DatabaseURL, sing.Schema)
	}
	cc, err := config.Load("../examples/nexus/centralcloud/pgflow.yaml", config.Options{
		Handlers:      names("handle_proposal_for_consensus", "handle_pattern_discovered"),
		BatchHandlers: config.BatchHandlers{"handle_execution_metrics": nil},
		LookupEnv:     env(nil),
	})
	if err != nil {
		t.Fatal(err)
	}
	got = got[:0]
	for _, p := range cc.Producers {
		got = append(got, p.QueueName+"/"+strconv.Itoa(p.Workers))
	}
	for _, c := range cc.Consumers {
		got = append(got, c.QueueName+"/"+strconv.Itoa(c.Workers)+"/"+c.Handler)
	}
	want = "consensus_results_queue/2 rollback_triggers_queue/1 guardian_safety_profiles_queue/1 " +
		"proposals_for_consensus_queue/3/handle_proposal_for_consensus metrics_to_guardian_queue/2/handle_execution_metrics " +
		"patterns_for_aggregator_queue/1/handle_pattern_discovered"
	if strings.Join(got, " ") != want {
		t.Fatalf("centralcloud:\n%s\nwant\n%s", strings.Join(got, " "), want)
	}
}

func TestLifetimesOffAndUnset(t *testing.T) {
	const file = `
database_url: postgres://127.0.0.1/test
consumers:
  off:
    queue_name: off_queue
    handler: handle_a
    expiry: off
    dlq_retention: 0
  unset:
    queue_name: unset_queue
    handler: handle_a
  env:
    queue_name: env_queue
    handler: handle_a
    dlq_retention: ${KEEP:-30d}
    expiry: 1d12h
`
	cfg, err := config.Parse([]byte(file), "pgflow.yaml", config.Options{Handlers: handlers, LookupEnv: env(nil)})
	if err != nil {
		t.Fatal(err)
	}
	off := cfg.Consumers[0].ConsumerConfig(noop)
	if off.Declare == nil || off.Declare.Expiry != pgflow.Set(time.Duration(0)) || off.Declare.DLQRetention != pgflow.Set(time.Duration(0)) {
		t.Fatalf("off: declare %+v, want both set to 0", off.Declare)
	}
	if unset := cfg.Consumers[1].ConsumerConfig(noop); unset.Declare != nil {
		t.Fatalf("unset: declare %+v, want none (stored values stay)", unset.Declare)
	}
	e := cfg.Consumers[2].ConsumerConfig(noop)
	if e.Declare == nil || e.Declare.DLQRetention != pgflow.Set(30*24*time.Hour) || e.Declare.Expiry != pgflow.Set(36*time.Hour) {
		t.Fatalf("env: declare %+v", e.Declare)
	}
}
