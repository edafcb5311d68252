package telemetry

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pgflow-go/pgflow"
)

// Prefix starts every event name.
const Prefix = "evolution.pgflow."

// Event is one named application event.
type Event struct {
	Name         string // e.g. "evolution.pgflow.proposal_published"
	Service      string // e.g. "singularity-2", "centralcloud"
	Queue        string
	MessageID    int64
	Time         time.Time
	Measurements map[string]float64 // queue_wait_ms, handler_ms
	Metadata     map[string]string  // headers of the message, error text
}

// Handler receives events synchronously: keep it fast.
type Handler func(Event)

// Telemetry fans events out to attached handlers and counts them.
type Telemetry struct {
	mu       sync.Mutex
	handlers map[string]attached
	counts   map[string]int64
}

type attached struct {
	prefix string
	fn     Handler
}

// New returns an empty Telemetry.
func New() *Telemetry {
	return &Telemetry{handlers: map[string]attached{}, counts: map[string]int64{}}
}

// Attach registers fn under id for events whose name starts with prefix
// ("evolution.pgflow." for all). Attaching an id again replaces it.
func (t *Telemetry) Attach(id, prefix string, fn Handler) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.handlers[id] = attached{prefix: prefix, fn: fn}
}

// Detach removes a handler.
func (t *Telemetry) Detach(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.handlers, id)
}

// Emit sends an event to the matching handlers.
func (t *Telemetry) Emit(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	t.mu.Lock()
	t.counts[e.Name]++
	var fns []Handler
	for _, id := range slices.Sorted(maps.Keys(t.handlers)) {
		if a := t.handlers[id]; strings.HasPrefix(e.Name, a.prefix) {
			fns = append(fns, a.fn)
		}
	}
	t.mu.Unlock()
	for _, fn := range fns {
		fn(e)
	}
}

// Counts returns how many times each event name was emitted.
func (t *Telemetry) Counts() map[string]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.counts)
}

// Rule maps one pgflow event to an application event.
type Rule struct {
	Kind pgflow.EventKind
	// Queue is the queue's base name: partitions ("<queue>.<instance>")
	// match their base.
	Queue string
	// Header, when set, must equal HeaderValue in the message's headers (as
	// seen when the message was received).
	Header, HeaderValue string
	// Name is the event name without Prefix, e.g. "proposal_published".
	Name string
}

// Bridge returns a hook that emits rules' events for service. Any
// publish_failed becomes "publish_failed" unless a rule says otherwise.
func Bridge(t *Telemetry, service string, rules []Rule) pgflow.EventHook {
	b := &bridge{t: t, service: service, rules: rules, headers: map[int64]map[string]string{}}
	for _, r := range rules {
		if r.Header != "" {
			b.needHeaders = true
		}
	}
	return b.hook
}

type bridge struct {
	t           *Telemetry
	service     string
	rules       []Rule
	needHeaders bool

	mu      sync.Mutex
	headers map[int64]map[string]string // received, not yet finished
}

func (b *bridge) hook(e pgflow.Event) {
	base, _, _ := strings.Cut(e.Queue, ".")
	headers := e.Headers
	if b.needHeaders {
		b.mu.Lock()
		switch e.Kind {
		case pgflow.EventReceived:
			if len(e.Headers) > 0 {
				b.headers[e.MessageID] = e.Headers
			}
		case pgflow.EventCompleted, pgflow.EventRetried, pgflow.EventDeadLettered, pgflow.EventLeaseExpired:
			if headers == nil {
				headers = b.headers[e.MessageID]
			}
			if e.Kind != pgflow.EventRetried && e.Kind != pgflow.EventLeaseExpired {
				delete(b.headers, e.MessageID)
			}
		}
		b.mu.Unlock()
	}
	matched := false
	for _, r := range b.rules {
		if r.Kind != e.Kind || r.Queue != base || (r.Header != "" && headers[r.Header] != r.HeaderValue) {
			continue
		}
		matched = true
		b.emit(r.Name, e, headers)
	}
	if !matched && e.Kind == pgflow.EventPublishFailed {
		b.emit("publish_failed", e, headers)
	}
}

func (b *bridge) emit(name string, e pgflow.Event, headers map[string]string) {
	ev := Event{Name: Prefix + name, Service: b.service, Queue: e.Queue, MessageID: e.MessageID, Time: e.Time,
		Measurements: map[string]float64{}, Metadata: maps.Clone(headers)}
	if e.QueueWait > 0 {
		ev.Measurements["queue_wait_ms"] = float64(e.QueueWait.Microseconds()) / 1000
	}
	if e.HandlerDuration > 0 {
		ev.Measurements["handler_ms"] = float64(e.HandlerDuration.Microseconds()) / 1000
	}
	if e.Err != nil {
		if ev.Metadata == nil {
			ev.Metadata = map[string]string{}
		}
		ev.Metadata["error"] = e.Err.Error()
	}
	b.t.Emit(ev)
}
