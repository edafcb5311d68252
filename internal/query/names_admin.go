package query

// Statement names of the operations area (sql/admin.sql, sql/dlq.sql).
const (
	QueueStats      = "QueueStats"
	ListPending     = "ListPending"
	AddQueueStats   = "AddQueueStats"
	PruneQueueStats = "PruneQueueStats"
	ListInFlight    = "ListInFlight"

	ListDLQ    = "ListDLQ"
	GetDLQ     = "GetDLQ"
	MaxDLQID   = "MaxDLQID"
	RedriveDLQ = "RedriveDLQ"
	PurgeDLQ   = "PurgeDLQ"
	CountDLQ   = "CountDLQ"
)
