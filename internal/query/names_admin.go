package query

// Statement names of the operations area (sql/admin.sql, sql/dlq.sql).
const (
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
