package pgflow

import (
	"encoding/json"
	"math"
	"regexp"
	"time"
)

// QueueNamePattern is the form every queue name must have: 1 to 128
// characters of letters, digits, '_', '.', ':' and '-', starting with a
// letter, digit or '_'. Names are always sent as query parameters, never
// spliced into SQL; the pattern keeps them readable in logs, metrics labels
// and CLI arguments.
var QueueNamePattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$`)

// ValidateQueueName returns an *InputError for a name that does not match
// QueueNamePattern.
func ValidateQueueName(name string) error {
	if name == "" {
		return inputErr(ErrInvalidQueueName, "queue", "", "must not be empty")
	}
	if !QueueNamePattern.MatchString(name) {
		return inputErr(ErrInvalidQueueName, "queue", name,
			"want 1-128 characters of [A-Za-z0-9_.:-], starting with a letter, digit or '_'")
	}
	return nil
}

const (
	maxDedupKeyBytes = 512
	maxHeaderBytes   = 64 << 10
)

// encodePayload turns a payload into JSON text. []byte and json.RawMessage
// must already be JSON; anything else is marshalled with encoding/json.
func encodePayload(payload any, limit int) ([]byte, error) {
	var raw []byte
	marshalled := false
	switch p := payload.(type) {
	case nil:
		return nil, inputErr(ErrInvalidPayload, "payload", "", "is nil; publish a JSON value")
	case json.RawMessage:
		raw = p
	case []byte:
		raw = p
	default:
		b, err := json.Marshal(p)
		if err != nil {
			return nil, inputErr(ErrInvalidPayload, "payload", "", "cannot be encoded as JSON: %v", err)
		}
		raw, marshalled = b, true
	}
	if limit > 0 && len(raw) > limit {
		return nil, inputErr(ErrPayloadTooLarge, "payload", "", "is %d bytes, over the limit of %d", len(raw), limit)
	}
	// json.Marshal's output is valid JSON (it checks what Marshalers return).
	if !marshalled && !json.Valid(raw) {
		return nil, inputErr(ErrInvalidPayload, "payload", string(raw), "is not valid JSON")
	}
	return raw, nil
}

// publishOptions collects what PublishOptions set.
type publishOptions struct {
	priority  *int
	delay     time.Duration
	visibleAt *time.Time
	dedupKey  *string
	headers   map[string]string
	// allowNoSubscribers: PublishTopic only (AllowNoSubscribers).
	allowNoSubscribers bool
	err                error
}

// PublishOption changes how one message is published.
type PublishOption func(*publishOptions)

// Priority levels. Any value in [-32768, 32767] is allowed; higher first.
const (
	PriorityLow    = -10
	PriorityNormal = 0
	PriorityHigh   = 10
)

// WithPriority sets the message's priority (higher is claimed first). Without
// it, the queue's default priority applies.
func WithPriority(p int) PublishOption {
	return func(o *publishOptions) {
		if p < math.MinInt16 || p > math.MaxInt16 {
			o.fail(inputErr(ErrInvalidOption, "priority", "", "%d is outside [%d, %d]", p, math.MinInt16, math.MaxInt16))
			return
		}
		o.priority = &p
	}
}

// WithDelay makes the message visible only after d.
func WithDelay(d time.Duration) PublishOption {
	return func(o *publishOptions) {
		if d < 0 {
			o.fail(inputErr(ErrNegativeDelay, "delay", d.String(), "must be zero or positive"))
			return
		}
		o.delay = d
	}
}

// WithVisibleAt makes the message visible at t (compared with the database
// clock). A time in the past means now.
func WithVisibleAt(t time.Time) PublishOption {
	return func(o *publishOptions) {
		if t.IsZero() {
			o.fail(inputErr(ErrInvalidOption, "visible_at", "", "is the zero time"))
			return
		}
		o.visibleAt = &t
	}
}

// WithDedupKey deduplicates the message: while a message with the same key
// is queued or in flight on the same queue, publishing again writes nothing
// and returns the existing message's id.
func WithDedupKey(key string) PublishOption {
	return func(o *publishOptions) {
		if key == "" || len(key) > maxDedupKeyBytes {
			o.fail(inputErr(ErrInvalidOption, "dedup_key", key, "must be 1-%d bytes", maxDedupKeyBytes))
			return
		}
		o.dedupKey = &key
	}
}

// WithHeaders adds headers (string key/value metadata such as trace context).
func WithHeaders(h map[string]string) PublishOption {
	return func(o *publishOptions) {
		for k, v := range h {
			o.setHeader(k, v)
		}
	}
}

// WithHeader adds one header.
func WithHeader(key, value string) PublishOption {
	return func(o *publishOptions) { o.setHeader(key, value) }
}

func (o *publishOptions) setHeader(k, v string) {
	if k == "" {
		o.fail(inputErr(ErrInvalidOption, "headers", "", "header name must not be empty"))
		return
	}
	if o.headers == nil {
		o.headers = map[string]string{}
	}
	o.headers[k] = v
}

func (o *publishOptions) fail(err error) {
	if o.err == nil {
		o.err = err
	}
}

// applyOptions runs the options; o.err holds the first invalid one.
func applyOptions(opts []PublishOption) publishOptions {
	var o publishOptions
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	return o
}

// buildOptions applies the options and encodes the headers as JSON.
func buildOptions(opts []PublishOption) (publishOptions, []byte, error) {
	o := applyOptions(opts)
	if o.err != nil {
		return o, nil, o.err
	}
	headers := []byte("{}")
	if len(o.headers) > 0 {
		b, err := json.Marshal(o.headers)
		if err != nil {
			return o, nil, inputErr(ErrInvalidOption, "headers", "", "%v", err)
		}
		if len(b) > maxHeaderBytes {
			return o, nil, inputErr(ErrInvalidOption, "headers", "", "are %d bytes, over the limit of %d", len(b), maxHeaderBytes)
		}
		headers = b
	}
	return o, headers, nil
}
