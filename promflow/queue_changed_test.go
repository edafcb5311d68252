package promflow_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/promflow"
)

// A queue_changed event counts a settings change, and no message.
func TestQueueChangedCounted(t *testing.T) {
	ec := promflow.NewEventCollector(promflow.EventOptions{})
	change := pgflow.Event{Kind: pgflow.EventQueueChanged, Queue: "q",
		Changes: []pgflow.SettingChange{{Setting: "max_retries", Old: "3", New: "0"}}}
	ec.Observe(change)
	ec.Observe(change)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(ec)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		byName[f.GetName()] = f
		if f.GetName() != "pgflow_queue_settings_changed_total" && len(f.GetMetric()) > 0 {
			t.Errorf("%s has series after queue_changed events only", f.GetName())
		}
	}
	mustValue(t, byName, "pgflow_queue_settings_changed_total", map[string]string{"queue": "q"}, 2)
}

// A consumer_gone event counts a consumer, of no queue, and no message
// (each message taken back has its own lease_expired event).
func TestConsumerGoneCounted(t *testing.T) {
	ec := promflow.NewEventCollector(promflow.EventOptions{})
	ec.Observe(pgflow.Event{Kind: pgflow.EventConsumerGone, Consumer: "host:1:abcd", Count: 3})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(ec)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		byName[f.GetName()] = f
		if f.GetName() != "pgflow_consumers_gone_total" && len(f.GetMetric()) > 0 {
			t.Errorf("%s has series after consumer_gone events only", f.GetName())
		}
	}
	mustValue(t, byName, "pgflow_consumers_gone_total", map[string]string{}, 1)
}
