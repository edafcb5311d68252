package query

// Statement names of the console's reads (end of sql/admin.sql).
const (
	GetMessage        = "GetMessage"
	StatsSeries       = "StatsSeries"
	QueueMessageStats = "QueueMessageStats"
	QueueDLQStats     = "QueueDLQStats"
)
