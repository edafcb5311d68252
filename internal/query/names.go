package query

// Statement names of the core engine, one constant per "-- name:" block in
// sql/*.sql. Other areas keep their constants in names_<area>.go.
const (
	EnsureQueue          = "EnsureQueue"
	UpdateQueue          = "UpdateQueue"
	GetQueue             = "GetQueue"
	ListQueueDefinitions = "ListQueueDefinitions"
	PauseQueue           = "PauseQueue"
	ResumeQueue          = "ResumeQueue"
	Notify               = "Notify"
	NotifySettings       = "NotifySettings"

	InsertMessage            = "InsertMessage"
	InsertMessagePlain       = "InsertMessagePlain"
	InsertMessageNotify      = "InsertMessageNotify"
	InsertMessagePlainNotify = "InsertMessagePlainNotify"
	FindByDedupKey           = "FindByDedupKey"
	InsertMessages           = "InsertMessages"
	InsertMessagesPlain      = "InsertMessagesPlain"
	InsertMessagesOneQueue   = "InsertMessagesOneQueue"

	ClaimMessages       = "ClaimMessages"
	ClaimMessagesAfter  = "ClaimMessagesAfter"
	AckMessages         = "AckMessages"
	AckMessageTx        = "AckMessageTx"
	FailMessages        = "FailMessages"
	ExtendLeases        = "ExtendLeases"
	ReleaseMessages     = "ReleaseMessages"
	RescueExpiredLeases = "RescueExpiredLeases"
)
