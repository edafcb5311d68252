package query

// Statement names of the maintenance task and of recovery after a restore
// (sql/maintenance.sql).
const (
	MaintenanceLock = "MaintenanceLock"
	ExpireMessages  = "ExpireMessages"
	TrimDLQ         = "TrimDLQ"
	RecoverLeases   = "RecoverLeases"
)
