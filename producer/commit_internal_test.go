package producer

import (
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

type safe struct{}

func (safe) Error() string     { return "lock failed" }
func (safe) SafeToRetry() bool { return true }

func TestMayHaveCommitted(t *testing.T) {
	_, refused := pgconn.Connect(context.Background(), "postgres://postgres@127.0.0.1:1/postgres")
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"server error", fmt.Errorf("commit: %w", &pgconn.PgError{Code: "40001"}), false},
		{"server shutting down", &pgconn.PgError{Code: "57P01"}, false},
		{"connection refused", refused, false},
		{"nothing sent", fmt.Errorf("x: %w", safe{}), false},
		{"EOF mid-request", fmt.Errorf("x: %w", io.ErrUnexpectedEOF), true},
		{"closed mid-request", fmt.Errorf("x: %w", pgconn.ErrConnClosed), true},
		{"attempt timed out", context.DeadlineExceeded, true},
	} {
		if got := mayHaveCommitted(tc.err); got != tc.want {
			t.Errorf("%s: mayHaveCommitted(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}
