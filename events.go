package pgflow

import "time"

// EventKind names a lifecycle event.
type EventKind string

// The lifecycle events a client emits to its hooks.
const (
	EventPublished     EventKind = "published"      // a message was committed (PublishTx: written in the caller's transaction)
	EventPublishFailed EventKind = "publish_failed" // a publish returned an error
	EventReceived      EventKind = "received"       // a consumer claimed the message; QueueWait is set
	EventCompleted     EventKind = "completed"      // the handler returned nil; HandlerDuration is set
	EventRetried       EventKind = "retried"        // the handler failed and the message will be retried
	EventDeadLettered  EventKind = "dead_lettered"  // the message moved to the DLQ
	EventLeaseExpired  EventKind = "lease_expired"  // a lease ran out, or its consumer is gone, and the rescuer took the message back
	EventConsumerGone  EventKind = "consumer_gone"  // a consumer's session ended and its heartbeat stopped; Consumer and Count (messages taken back) are set
	EventRedriven      EventKind = "redriven"       // a DLQ message went back to its queue
	EventPurged        EventKind = "purged"         // DLQ messages were deleted; Count is set
	EventQueueChanged  EventKind = "queue_changed"  // DeclareQueue changed an existing queue's settings; Changes is set
	EventHandlerStuck  EventKind = "handler_stuck"  // a handler ran past its timeout and grace period; its lease is no longer extended
	EventExpired       EventKind = "expired"        // the maintenance task moved a message nobody claimed before its expiry to the DLQ (reason "expired")
	EventDLQDeleted    EventKind = "dlq_deleted"    // the maintenance task deleted dead letters older than their queue's DLQRetention; Count is set
)

// Event is what hooks receive. Fields that do not apply to a kind are zero.
type Event struct {
	Kind      EventKind
	Time      time.Time
	Queue     string
	MessageID int64
	Attempt   int
	// Err is the handler's or the database's error (publish_failed, retried,
	// dead_lettered, lease_expired).
	Err error
	// HandlerDuration is how long the handler ran (completed, retried,
	// dead_lettered after a handler error).
	HandlerDuration time.Duration
	// QueueWait is how long the message waited between becoming visible and
	// being claimed, measured on the database clock (received).
	QueueWait time.Duration
	// Count is the number of messages a batch event covers (purged,
	// redriven, dlq_deleted, consumer_gone).
	Count int
	// Consumer is the id (Config.ID, pgflow_messages.locked_by) of the
	// consumer a consumer_gone event is about.
	Consumer string
	// Headers are the message's headers (published, received).
	Headers map[string]string
	// Changes are the settings a declaration changed, old and new values
	// (queue_changed).
	Changes []SettingChange
}

// EventHook receives events synchronously on the goroutine that caused them:
// keep it fast and never block. A panicking hook is logged and ignored.
type EventHook func(Event)

func (c *Client) emit(e Event) {
	if len(c.hooks) == 0 {
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	for _, h := range c.hooks {
		c.callHook(h, e)
	}
}

func (c *Client) callHook(h EventHook, e Event) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("pgflow: event hook panicked", "event", string(e.Kind), "panic", r)
		}
	}()
	h(e)
}
