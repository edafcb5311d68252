package pgflow

// ClaimPausedForTest exposes claimPausedInternal to the external tests.
var ClaimPausedForTest = claimPausedInternal

// SetTestHooks installs test signals on c; call before Start. idle runs
// each time a consumer's fetcher goes to sleep with nothing left to claim
// (wakePending: a wake-up is already queued); listening runs each time the
// notification listener has (re)started listening.
func SetTestHooks(c *Client, idle func(queue string, wakePending bool), listening func()) {
	c.testHooks.idle = idle
	c.testHooks.listening = listening
}

// Listens reports whether c's consumers are woken by LISTEN/NOTIFY (not
// PollOnly, which TransactionPooling implies).
func Listens(c *Client) bool { return !c.cfg.PollOnly }

// MessageToken is a delivery's claim token.
func MessageToken(m *Message) int64 { return m.token }

// MaintenanceKey is the advisory lock key of c's maintenance task.
func MaintenanceKey(c *Client) int64 { return c.maintenanceKey }

// UsesTransactionPooling reports c's effective Config.TransactionPooling
// (Connect sets it when it finds a pooler).
func UsesTransactionPooling(c *Client) bool { return c.cfg.TransactionPooling }
