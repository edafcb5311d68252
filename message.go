package pgflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Message is one delivery of a queued message to a handler.
type Message struct {
	ID       int64
	Queue    string
	Payload  json.RawMessage
	Headers  map[string]string
	Priority int
	// Attempt is this delivery's number, 1 for the first.
	Attempt int
	// RetryCount is the number of failed deliveries before this one
	// (handler errors and expired leases).
	RetryCount int
	CreatedAt  time.Time
	// VisibleAt is when the message became available for this delivery.
	VisibleAt time.Time
	// LeaseUntil is when the lease granted at claim time runs out; heartbeats
	// extend it while the handler runs.
	LeaseUntil time.Time

	// token is this delivery's claim token: only this delivery can
	// acknowledge, fail, extend or hand back the message.
	token int64
}

// Decode unmarshals the JSON payload into v.
func (m *Message) Decode(v any) error {
	if err := json.Unmarshal(m.Payload, v); err != nil {
		return fmt.Errorf("pgflow: decode message %d of queue %s: %w", m.ID, m.Queue, err)
	}
	return nil
}

// Handler processes one message. Returning nil acknowledges it (the message
// is deleted). Any other error schedules a retry with backoff, or moves the
// message to the dead-letter queue when it has no retries left; wrap the
// error with Permanent to dead-letter at once, or RetryAfter to choose the
// delay. The context is cancelled when the handler runs past the
// consumer's Timeout (context.Cause is ErrHandlerTimeout; an error returned
// then fails the attempt with an error matching ErrHandlerTimeout, while nil
// still acknowledges), when the client stops past its deadline
// (ErrClientStopped), or when the lease is lost (ErrLeaseLost).
type Handler func(ctx context.Context, m *Message) error

// BatchHandler handles up to ConsumerConfig.BatchSize messages at once, in
// claim order. Its outcome applies per message, as a Handler's would:
//
//   - nil acknowledges every message;
//   - a BatchErrors (possibly wrapped) of len(msgs) gives each message its
//     own outcome: nil acknowledges it, an error retries it (RetryAfter
//     sets the delay), Permanent(err) dead-letters it; an empty BatchErrors
//     acknowledges every message;
//   - any other error fails every message with it.
//
// A BatchErrors of another length, or a panic, fails every message (retried
// like any error). The messages share the leases, retries, dead-letter queue
// and events of single deliveries: each is received, completed, retried or
// dead-lettered on its own, and its lease is extended while the call runs.
// ctx is cancelled at the timeout (cause ErrHandlerTimeout), at Stop's
// deadline (ErrClientStopped), or once every message's lease was lost
// (ErrLeaseLost); a message whose lease was lost while the call ran is not
// written, whatever its outcome.
type BatchHandler func(ctx context.Context, msgs []*Message) error

// BatchErrors is a BatchHandler's outcome per message: element i is the
// outcome of msgs[i].
type BatchErrors []error

func (e BatchErrors) Error() string {
	failed := 0
	var first error
	for _, err := range e {
		if err != nil {
			if first == nil {
				first = err
			}
			failed++
		}
	}
	if first == nil {
		return fmt.Sprintf("pgflow: batch of %d: no failures", len(e))
	}
	return fmt.Sprintf("pgflow: %d of %d messages failed; first: %v", failed, len(e), first)
}

// batchOutcomes turns a BatchHandler's error into one error per message
// (nil: every message succeeded).
func batchOutcomes(n int, err error) []error {
	if err == nil {
		return nil
	}
	var be BatchErrors
	if errors.As(err, &be) {
		if len(be) == 0 {
			return nil
		}
		if len(be) == n {
			return be
		}
		err = fmt.Errorf("pgflow: batch handler returned %d outcomes for %d messages", len(be), n)
	}
	errs := make([]error, n)
	for i := range errs {
		errs[i] = err
	}
	return errs
}

// decodeHeaders decodes a headers object read from the database; the empty
// object, by far the most common, costs nothing.
func decodeHeaders(raw []byte) (map[string]string, error) {
	if len(raw) == 0 || string(raw) == "{}" {
		return nil, nil
	}
	var h map[string]string
	if err := json.Unmarshal(raw, &h); err != nil {
		return nil, fmt.Errorf("pgflow: decode headers: %w", err)
	}
	return h, nil
}
