package query

// Statement names of the operators' reads (end of sql/admin.sql): one live
// message, the counters as a time series, and the two halves of the queue
// stats.
const (
	GetMessage        = "GetMessage"
	StatsSeries       = "StatsSeries"
	QueueMessageStats = "QueueMessageStats"
	QueueDLQStats     = "QueueDLQStats"
)
