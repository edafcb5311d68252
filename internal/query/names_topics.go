package query

// Statement names of fan-out topics (sql/topics.sql).
const (
	Subscribe         = "Subscribe"
	Unsubscribe       = "Unsubscribe"
	PublishTopic      = "PublishTopic"
	ListSubscriptions = "ListSubscriptions"
)
