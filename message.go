package pgflow

import (
	"context"
	"encoding/json"
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
