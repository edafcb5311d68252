package query

// Statement names of the metrics area (sql/metrics.sql).
const (
	QueueDepths         = "QueueDepths"
	QueueDepthsSettings = "QueueDepthsSettings"
)
