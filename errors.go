package pgflow

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Input errors are returned as *InputError, which matches
// one of these with errors.Is, and nothing is written when one is returned.
var (
	ErrInvalidQueueName = errors.New("pgflow: invalid queue name")
	ErrInvalidPayload   = errors.New("pgflow: invalid payload")
	ErrPayloadTooLarge  = errors.New("pgflow: payload too large")
	ErrInvalidOption    = errors.New("pgflow: invalid option")
	ErrNegativeDelay    = errors.New("pgflow: negative delay")
	ErrQueueNotFound    = errors.New("pgflow: queue not found")
	ErrInvalidConfig    = errors.New("pgflow: invalid configuration")
	// ErrNoSubscribers: PublishTopic to a topic no queue subscribes to
	// (pgflow_publish's SQLSTATE PF001), unless AllowNoSubscribers.
	ErrNoSubscribers = errors.New("pgflow: topic has no subscribers")

	// ErrLeaseLost is the cause of a handler's context when its lease was
	// taken over (it expired and another consumer claimed the message), and
	// AckTx's error when the message is no longer this delivery's to ack.
	ErrLeaseLost = errors.New("pgflow: lease lost")
	// ErrClientStopped is returned when work is handed to a stopped client,
	// and is the cause of a handler's context when Stop cut it short.
	ErrClientStopped = errors.New("pgflow: client stopped")
	// ErrHandlerTimeout is the cause of a handler's context once it has run
	// for ConsumerConfig.Timeout; the attempt then fails with an error
	// matching it.
	ErrHandlerTimeout = errors.New("pgflow: handler timeout")
)

// InputError describes bad input: which field, what was wrong. It wraps one
// of the sentinel errors above.
type InputError struct {
	Kind   error  // one of the Err* sentinels
	Field  string // e.g. "queue", "payload", "priority"
	Value  string // the offending value, shortened, when it helps
	Reason string
}

func (e *InputError) Error() string {
	msg := e.Kind.Error() + ": " + e.Field
	if e.Value != "" {
		msg += " " + e.Value
	}
	return msg + ": " + e.Reason
}

func (e *InputError) Unwrap() error { return e.Kind }

func inputErr(kind error, field, value, reason string, args ...any) error {
	if len(value) > 80 {
		value = value[:77] + "..."
	}
	if value != "" {
		value = fmt.Sprintf("%q", value)
	}
	return &InputError{Kind: kind, Field: field, Value: value, Reason: fmt.Sprintf(reason, args...)}
}

// Permanent wraps a handler error so the message goes to the dead-letter
// queue at once, without further retries.
func Permanent(err error) error {
	if err == nil {
		err = errors.New("permanent failure")
	}
	return &permanentError{err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return "permanent: " + e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// IsPermanent reports whether err asks for dead-lettering without retries.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// RetryAfter wraps a handler error so the message is retried after d
// instead of the queue's backoff. Retries left are still counted: a message
// out of retries goes to the dead-letter queue.
func RetryAfter(d time.Duration, err error) error {
	if err == nil {
		err = errors.New("retry requested")
	}
	if d < 0 {
		d = 0
	}
	return &retryAfterError{d: d, err: err}
}

type retryAfterError struct {
	d   time.Duration
	err error
}

func (e *retryAfterError) Error() string {
	return fmt.Sprintf("retry after %v: %v", e.d, e.err)
}
func (e *retryAfterError) Unwrap() error { return e.err }

// retryDelay returns the delay a handler asked for, if any.
func retryDelay(err error) (time.Duration, bool) {
	var r *retryAfterError
	if errors.As(err, &r) {
		return r.d, true
	}
	return 0, false
}

// PanicError is the error recorded for a handler that panicked.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("handler panicked: %v\n%s", e.Value, e.Stack)
}
