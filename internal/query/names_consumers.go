package query

// Statement names of dead-consumer detection (sql/consumers.sql).
const (
	RegisterConsumer    = "RegisterConsumer"
	LockConsumerSession = "LockConsumerSession"
	SetConsumerLock     = "SetConsumerLock"
	DeregisterConsumer  = "DeregisterConsumer"
	RescueLeases        = "RescueLeases"
)
