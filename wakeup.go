package pgflow

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/pgflow-go/pgflow/internal/notify"
)

// Waking consumers: in-process publishes and LISTEN/NOTIFY.

// wakeLocal wakes this client's consumer of queue, if it runs.
func (c *Client) wakeLocal(queue string) {
	c.mu.Lock()
	rs := c.run
	c.mu.Unlock()
	if rs == nil {
		return
	}
	if r := rs.runs[queue]; r != nil {
		r.fetch.Wake()
	}
}

func (c *Client) wakeAll() {
	c.mu.Lock()
	rs := c.run
	c.mu.Unlock()
	if rs == nil {
		return
	}
	for _, r := range rs.runs {
		r.fetch.Wake()
	}
}

// listen runs the client's own session until ctx is cancelled: it LISTENs
// unless PollOnly, and holds the consumer registration's session lock
// (presence.lockSession) when p is set.
func (c *Client) listen(ctx context.Context, p *presence) {
	l := &notify.Listener{
		Connect: func(ctx context.Context) (*pgx.Conn, error) {
			return pgx.ConnectConfig(ctx, c.pool.Config().ConnConfig.Copy())
		},
		OnNotify: c.wakeLocal,
		Log:      c.log,
	}
	if !c.cfg.PollOnly {
		l.Channel = c.channel
		// Notifications sent while no one listened are lost: look.
		l.OnConnect = func() {
			if h := c.testHooks.listening; h != nil {
				h()
			}
			c.wakeAll()
		}
	}
	if p != nil {
		l.Setup = p.lockSession
	}
	l.Run(ctx)
}
