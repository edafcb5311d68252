// Package config loads a pgflow service's queues from a YAML file
// (pgflow.yaml), validates it before anything connects, and wires it to a
// client. It is a module of its own (github.com/pgflow-go/pgflow/config), so
// that the library's module needs no YAML parser.
//
// # File format
//
// A file names the database, the queues the service publishes to
// (producers) and the queues it consumes (consumers):
//
//	database_url: ${PGFLOW_DATABASE_URL:-postgresql://localhost/singularity}
//	producers:
//	  proposals_for_consensus:
//	    queue_name: proposals_for_consensus_queue
//	    workers: ${PGFLOW_PROPOSALS_WORKERS:-2}
//	    max_retries: 3
//	    retry_delay_ms: 1000
//	consumers:
//	  rollback_triggers:
//	    queue_name: rollback_triggers_queue
//	    workers: ${PGFLOW_ROLLBACK_WORKERS:-1}
//	    handler: handle_rollback_trigger
//	    max_retries: 3
//	    retry_delay_ms: 1000
//	    priority: high
//
// # Keys
//
//	database_url     PostgreSQL URL. PGFLOW_DATABASE_URL, when set, wins over
//	                 the file's value.
//	schema           schema holding pgflow's tables; default PGFLOW_SCHEMA
//	                 or "public".
//	producers.NAME   a queue this service publishes to:
//	  queue_name       the queue
//	  workers          flushers committing batches in parallel (group commit)
//	  max_retries      retries of a publish that failed on a transient error
//	  retry_delay_ms   first retry's delay, doubled for each further retry
//	  priority         default priority of its messages: high, normal or a number
//	consumers.NAME   a queue this service consumes:
//	  queue_name       the queue
//	  workers          handlers running at once
//	  handler          the name of a handler registered in Go (one key: a
//	                   handler_method key is refused with a hint)
//	  batch_size       makes handler a batch handler (BatchHandlers) that
//	                   receives up to this many messages per call (1-10000);
//	                   workers is then the number of calls running at once
//	  prefetch         messages claimed ahead of free workers (0-10000,
//	                   default 0), so that cheap handlers drain a backlog
//	                   with fewer claims; a prefetched message holds its
//	                   lease while it waits and is handed back after half
//	                   the lease. Not with batch_size
//	  max_retries      the queue's retries before the dead-letter queue
//	  retry_delay_ms   the queue's first retry delay, doubled for each further retry
//	  priority         the queue's default message priority
//	  lease_timeout_ms the queue's lease: how long a message is held without
//	                   a heartbeat before it is delivered again (100-86400000)
//	  timeout_ms       how long one handler call may run before its context
//	                   is cancelled (1-86400000; unset: the consumer's default)
//	  topics           topics the queue subscribes to at Start (a list of
//	                   names): every publish to one of them (PublishTopic,
//	                   pgflow_publish) puts a copy in this queue
//	  expiry           the queue's default message expiry: a message nobody
//	                   claimed this long after it became visible goes to the
//	                   DLQ (reason expired); a duration such as 15m, or off
//	  dlq_retention    how long the queue's dead letters are kept before the
//	                   maintenance task deletes them: 7d, 36h, or off
//
// expiry and dlq_retention take a unit (s, m, h, d) because they span days;
// the _ms keys take integer milliseconds.
//
// # Defaults
//
// max_retries and retry_delay_ms default to PGFLOW_MAX_RETRIES and
// PGFLOW_RETRY_DELAY_MS when set. Otherwise a producer retries 3 times from
// 1000 ms (DefaultMaxRetries, DefaultRetryDelayMs), and a consumer entry
// leaves the setting alone: at Start it declares exactly the queue settings
// it sets (max_retries, retry_delay_ms, lease_timeout_ms, priority, expiry,
// dlq_retention), so a queue keeps whatever else it has stored, and a new
// queue gets pgflow's
// defaults, the same as a queue created on first publish. Changing a stored
// setting is logged as a warning with the old and new value. workers
// defaults to 1.
//
// # Environment variables
//
// Every scalar value may use ${VAR} and ${VAR:-default} (default used when
// VAR is unset or empty); $$ is a literal $, and a $ not followed by { or $
// is kept as is. Expansion happens after parsing, so an expanded value can
// never change the file's structure.
//
// # Errors
//
// Load reports every problem at once, each with its key path and line:
// unknown keys, wrong types, values out of range, a consumer whose handler is
// not registered, a queue declared twice with different settings.
package config
