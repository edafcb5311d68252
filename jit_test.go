package pgflow_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgflow-go/pgflow/pgflowtest"
)

// The state functions plan with sequential scans disabled; a disabled scan
// the planner must keep costs 10^10, which would make PostgreSQL JIT-compile
// the statement on every call (tens of milliseconds for a one-row read).
// Every function that disables scans turns JIT off too.
func TestFunctionsThatDisableScansTurnJITOff(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	rows, err := db.Pool.Query(context.Background(), `
		SELECT p.oid::regprocedure::text, array_to_string(p.proconfig, ',')
		FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE n.nspname = $1 AND 'enable_seqscan=off' = ANY (p.proconfig)`, db.Schema)
	if err != nil {
		t.Fatal(err)
	}
	type fn struct{ Name, Config string }
	fns, err := pgx.CollectRows(rows, pgx.RowToStructByPos[fn])
	if err != nil {
		t.Fatal(err)
	}
	if len(fns) < 10 {
		t.Fatalf("found %d functions that disable sequential scans, want the engine's 10: %v", len(fns), fns)
	}
	for _, f := range fns {
		if !strings.Contains(","+f.Config+",", ",jit=off,") {
			t.Errorf("%s disables sequential scans but not JIT: %s", f.Name, f.Config)
		}
	}
}

// The rescuer's judgement of gone consumers, called as every started
// client calls it, compiles nothing, where the same kind of statement
// outside the function does. Needs a server built with JIT and the
// auto_explain module, whose plans (with their JIT section) reach the
// session as LOG notices.
func TestRescueDeadDoesNotJIT(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	// A session of its own on the server itself: LOAD and SET are session
	// state, which a transaction pooler would not keep.
	var mu sync.Mutex
	var plans []string
	cfg, err := pgx.ParseConfig(pgflowtest.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		mu.Lock()
		defer mu.Unlock()
		plans = append(plans, n.Message)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var available bool
	if err := conn.QueryRow(ctx, `SELECT pg_jit_available()`).Scan(&available); err != nil {
		t.Fatal(err)
	}
	if !available {
		t.Skip("this server has no JIT: nothing to compile")
	}
	for _, s := range []string{
		`LOAD 'auto_explain'`,
		`SET jit = on`,
		`SET auto_explain.log_min_duration = 0`,
		`SET auto_explain.log_nested_statements = on`,
		`SET client_min_messages = log`,
		fmt.Sprintf(`SET search_path = %q`, db.Schema),
		// A fresh judge registered long enough to judge, and another
		// fresh registration: the judgement reads pgflow_consumers and
		// finds no one gone.
		`INSERT INTO pgflow_consumers (id, consumer, lock_key, expiry_ms, seen_at, up_since)
		 VALUES (1, 'judge', NULL, 1000, now(), now() - interval '1 minute'),
		        (2, 'other', NULL, 1000, now(), now() - interval '1 minute')`,
	} {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	jitted := func(stmt string) bool {
		t.Helper()
		mu.Lock()
		plans = nil
		mu.Unlock()
		if _, err := conn.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(plans) == 0 {
			t.Fatalf("%s: auto_explain logged no plan", stmt)
		}
		for _, p := range plans {
			if strings.Contains(p, "JIT:") {
				return true
			}
		}
		return false
	}
	// The check can see JIT: the judgement's first query, at the top
	// level with the function's planner settings, compiles.
	if _, err := conn.Exec(ctx, `SET enable_seqscan = off`); err != nil {
		t.Fatal(err)
	}
	if !jitted(`SELECT EXISTS (SELECT 1 FROM pgflow_consumers c WHERE c.seen_at < now() - c.expiry_ms * interval '1 millisecond')`) {
		t.Fatal("a disabled sequential scan at the top level did not JIT: the check cannot see JIT on this server")
	}
	if _, err := conn.Exec(ctx, `RESET enable_seqscan`); err != nil {
		t.Fatal(err)
	}
	if jitted(`SELECT * FROM pgflow_rescue_dead(1, 1000)`) {
		t.Fatalf("pgflow_rescue_dead JIT-compiled a statement:\n%s", strings.Join(plans, "\n"))
	}
}
