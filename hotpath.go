package pgflow

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The consumer's statements run behind a settings statement (HotPathSettings
// or ClaimSettings in consume.sql) in one round trip and one implicit
// transaction, so the server plans them with those settings in force.

// hotBatch queues settings then stmt.
func (c *Client) hotBatch(settings, stmt string, args []any) *pgx.Batch {
	b := &pgx.Batch{}
	b.Queue(c.q.Get(settings))
	b.Queue(c.q.Get(stmt), args...)
	return b
}

// hotExec runs stmt behind settings and returns its command tag.
func (c *Client) hotExec(ctx context.Context, settings, stmt string, args ...any) (pgconn.CommandTag, error) {
	br := c.pool.SendBatch(ctx, c.hotBatch(settings, stmt, args))
	_, err := br.Exec()
	var tag pgconn.CommandTag
	if err == nil {
		tag, err = br.Exec()
	}
	// Close reports the commit's outcome.
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return tag, err
}

// hotCollect runs stmt behind settings and collects its rows with fn.
func hotCollect[T any](ctx context.Context, c *Client, settings, stmt string, args []any, fn pgx.RowToFunc[T]) ([]T, error) {
	br := c.pool.SendBatch(ctx, c.hotBatch(settings, stmt, args))
	_, err := br.Exec()
	var out []T
	if err == nil {
		var rows pgx.Rows
		if rows, err = br.Query(); err == nil {
			out, err = pgx.CollectRows(rows, fn)
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}
