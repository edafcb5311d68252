package otelpgflow_test

import (
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/otelpgflow"
)

// A queue_changed event counts a settings change, and no message.
func TestQueueChangedCounted(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	m, err := otelpgflow.NewMetrics(otelpgflow.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))))
	if err != nil {
		t.Fatal(err)
	}
	m.Observe(pgflow.Event{Kind: pgflow.EventQueueChanged, Queue: "q",
		Changes: []pgflow.SettingChange{{Setting: "lease_timeout", Old: "30s", New: "5m0s"}}})
	ms := collect(t, reader)
	if got := point(t, ms, "pgflow.queue.settings_changed", map[string]string{"queue": "q"}); got != 1 {
		t.Errorf("pgflow.queue.settings_changed = %v, want 1", got)
	}
	for name := range ms {
		if name != "pgflow.queue.settings_changed" {
			t.Errorf("%s recorded for a queue_changed event", name)
		}
	}
}
