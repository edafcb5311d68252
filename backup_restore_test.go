package pgflow_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/internal/pgcluster"
	"github.com/pgflow-go/pgflow/migrate"
)

// pgTool returns the path of a PostgreSQL client program of the installed
// server's version.
func pgTool(t *testing.T, name string) string {
	t.Helper()
	out, err := exec.Command("pg_config", "--bindir").Output()
	if err != nil {
		t.Fatalf("pg_config --bindir: %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), name)
}

func runTool(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(pgTool(t, name), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// idSet is a set of message ids safe for concurrent use.
type idSet struct {
	mu  sync.Mutex
	ids map[int64]int // id -> times added
}

func newIDSet() *idSet { return &idSet{ids: map[int64]int{}} }

func (s *idSet) add(id int64) {
	s.mu.Lock()
	s.ids[id]++
	s.mu.Unlock()
}

func (s *idSet) copy() map[int64]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[int64]int, len(s.ids))
	for k, v := range s.ids {
		out[k] = v
	}
	return out
}

func (s *idSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ids)
}

// TestLogicalBackupAndRestore: producers and consumers run on a throwaway
// cluster while pg_dump takes the pgflow schema at a snapshot the test holds
// (pg_dump --snapshot). The dump is restored into a new database, `recover`
// runs there, and a consumer drains it. Every message acknowledged before
// the snapshot is absent; every other message published before it is
// present and handled exactly once after the restore, those leased at the
// snapshot included (without waiting for their hour-long lease and without
// a counted failure); nothing published before the snapshot is lost; dead
// letters, dedup keys and the id sequence carry over.
func TestLogicalBackupAndRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster")
	}
	if !pgcluster.Available() {
		t.Skip("PostgreSQL server binaries not installed")
	}
	t.Parallel()
	ctx := context.Background()
	cl, err := pgcluster.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Remove)
	admin, err := pgxpool.New(ctx, cl.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	for _, db := range []string{"src", "dst"} {
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+db); err != nil {
			t.Fatal(err)
		}
	}
	const schemaName = "flow"
	open := func(db string) *pgxpool.Pool {
		cfg, err := pgxpool.ParseConfig(cl.URL(db))
		if err != nil {
			t.Fatal(err)
		}
		cfg.MaxConns = 12
		p, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		return p
	}
	src := open("src")
	if _, err := migrate.Up(ctx, src, schemaName); err != nil {
		t.Fatal(err)
	}
	client := func(pool *pgxpool.Pool) *pgflow.Client {
		c, err := pgflow.New(pool, pgflow.Config{Schema: schemaName, Logger: quietLogger(), PollInterval: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = c.Close(cctx)
		})
		return c
	}
	producer, consumer := client(src), client(src)
	if err := producer.DeclareQueue(ctx, pgflow.QueueConfig{Name: "orders", MaxRetries: pgflow.Set(0), LeaseTimeout: pgflow.Set(time.Hour)}); err != nil {
		t.Fatal(err)
	}

	// Payload n: every 17th fails permanently (dead letters), 5, 15 and 25
	// block until the dump is taken (leased at the snapshot).
	handledSrc := newIDSet()
	blocked := make(chan struct{})
	var blockedRunning sync.WaitGroup
	blockedRunning.Add(3)
	handler := func(handled *idSet) pgflow.Handler {
		return func(ctx context.Context, m *pgflow.Message) error {
			var n int
			if err := m.Decode(&n); err != nil {
				return pgflow.Permanent(err)
			}
			if handled == handledSrc && (n == 5 || n == 15 || n == 25) {
				blockedRunning.Done()
				<-blocked
				return errors.New("the source database is being abandoned")
			}
			if n%17 == 0 {
				return pgflow.Permanent(fmt.Errorf("message %d is invalid", n))
			}
			handled.add(m.ID)
			return nil
		}
	}
	if err := consumer.Consume(pgflow.ConsumerConfig{Queue: "orders", Workers: 8, Handler: handler(handledSrc)}); err != nil {
		t.Fatal(err)
	}
	if err := consumer.Start(ctx); err != nil {
		t.Fatal(err)
	}

	// The producer records each id once Publish returned (committed).
	var pubMu sync.Mutex
	var published []int64
	dedupIDs := map[string]int64{}
	var produced atomic.Int64
	stopProducing := make(chan struct{})
	producing := make(chan struct{})
	go func() {
		defer close(producing)
		for n := 1; ; n++ {
			select {
			case <-stopProducing:
				return
			default:
			}
			var opts []pgflow.PublishOption
			key := ""
			if n%5 == 0 {
				key = fmt.Sprintf("k%d", n)
				opts = append(opts, pgflow.WithDedupKey(key))
			}
			id, err := producer.Publish(ctx, "orders", n, opts...)
			if err != nil {
				t.Errorf("publish %d: %v", n, err)
				return
			}
			pubMu.Lock()
			published = append(published, id)
			if key != "" {
				dedupIDs[key] = id
			}
			pubMu.Unlock()
			produced.Add(1)
		}
	}()
	waitFor(t, "traffic before the dump", func() bool { return produced.Load() >= 300 && handledSrc.len() >= 100 })
	blockedRunning.Wait()

	// The snapshot: what the dump holds is exactly what this transaction
	// sees. Published ids recorded before it was taken were committed
	// before it.
	snapConn, err := src.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer snapConn.Release()
	pubMu.Lock()
	publishedBefore := append([]int64(nil), published...)
	pubMu.Unlock()
	tx, err := snapConn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var snapshot string
	if _, err := tx.Exec(ctx, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"); err != nil {
		t.Fatal(err)
	}
	if err := tx.QueryRow(ctx, "SELECT pg_export_snapshot()").Scan(&snapshot); err != nil {
		t.Fatal(err)
	}
	handledBefore := handledSrc.copy() // a superset of those handled before the snapshot
	atSnap := map[int64]string{}       // id -> status
	rows, err := tx.Query(ctx, "SELECT id, status FROM "+schemaName+".pgflow_messages")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		var status string
		if err := rows.Scan(&id, &status); err != nil {
			t.Fatal(err)
		}
		atSnap[id] = status
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var dlqAtSnap int
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM "+schemaName+".pgflow_dlq").Scan(&dlqAtSnap); err != nil {
		t.Fatal(err)
	}

	dump := filepath.Join(t.TempDir(), "pgflow.dump")
	dumpDone := make(chan struct{})
	go func() {
		defer close(dumpDone)
		// pg_dump takes its locks and reads at the exported snapshot while
		// traffic goes on.
		runTool(t, "pg_dump", "-d", cl.URL("src"), "--snapshot="+snapshot, "-Fc", "-n", schemaName, "-f", dump)
	}()
	startAfter := produced.Load()
	waitFor(t, "traffic during the dump", func() bool { return produced.Load() >= startAfter+100 })
	<-dumpDone
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	close(stopProducing)
	<-producing
	close(blocked)
	if err := consumer.Stop(ctx); err != nil {
		t.Fatal(err)
	}

	leased := 0
	for _, st := range atSnap {
		if st == "processing" {
			leased++
		}
	}
	if leased < 3 || dlqAtSnap == 0 {
		t.Fatalf("the snapshot holds %d leased messages and %d dead letters; the test needs 3+ and 1+", leased, dlqAtSnap)
	}
	// Nothing published before the snapshot is lost: it was either still
	// queued or already handled.
	for _, id := range publishedBefore {
		if _, ok := atSnap[id]; !ok && handledBefore[id] == 0 {
			var dead int
			if err := src.QueryRow(ctx, "SELECT count(*) FROM "+schemaName+".pgflow_dlq WHERE message_id = $1", id).Scan(&dead); err != nil {
				t.Fatal(err)
			}
			if dead == 0 {
				t.Fatalf("message %d, published before the snapshot, is neither in it nor handled nor dead-lettered", id)
			}
		}
	}

	// Restore into a new database.
	runTool(t, "pg_restore", "-d", cl.URL("dst"), "--exit-on-error", dump)
	dst := open("dst")
	restored := client(dst)
	got := map[int64]string{}
	rows, err = dst.Query(ctx, "SELECT id, status FROM "+schemaName+".pgflow_messages")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		var status string
		if err := rows.Scan(&id, &status); err != nil {
			t.Fatal(err)
		}
		got[id] = status
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(atSnap) {
		t.Fatalf("restored %d messages, the snapshot held %d", len(got), len(atSnap))
	}
	for id, st := range atSnap {
		if got[id] != st {
			t.Fatalf("message %d: restored as %q, %q at the snapshot", id, got[id], st)
		}
	}
	var dlqRestored int
	if err := dst.QueryRow(ctx, "SELECT count(*) FROM "+schemaName+".pgflow_dlq").Scan(&dlqRestored); err != nil || dlqRestored != dlqAtSnap {
		t.Fatalf("restored %d dead letters, the snapshot held %d (%v)", dlqRestored, dlqAtSnap, err)
	}

	released, err := restored.Recover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if released["orders"] != leased {
		t.Fatalf("recover released %v, want the %d leased at the snapshot", released, leased)
	}

	// A message of the snapshot with a dedup key still holds it.
	key, keyID := "", int64(0)
	pubMu.Lock()
	for k, v := range dedupIDs {
		if _, ok := atSnap[v]; ok {
			key, keyID = k, v
			break
		}
	}
	pubMu.Unlock()
	if key == "" {
		t.Fatal("no message with a dedup key in the snapshot")
	}
	if dup, err := restored.Publish(ctx, "orders", 1, pgflow.WithDedupKey(key)); err != nil || dup != keyID {
		t.Fatalf("dedup key %s after the restore: id %d (%v), want %d", key, dup, err, keyID)
	}

	// Drain the restored database.
	handledDst := newIDSet()
	var retriedAfterRestore atomic.Int32
	h := handler(handledDst)
	if err := restored.Consume(pgflow.ConsumerConfig{Queue: "orders", Workers: 8, Handler: func(ctx context.Context, m *pgflow.Message) error {
		if m.RetryCount != 0 {
			retriedAfterRestore.Add(1)
		}
		return h(ctx, m)
	}}); err != nil {
		t.Fatal(err)
	}
	if err := restored.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the restored queue drained", func() bool {
		var n int
		_ = dst.QueryRow(ctx, "SELECT count(*) FROM "+schemaName+".pgflow_messages").Scan(&n)
		return n == 0
	})
	if err := restored.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	after := handledDst.copy()
	for id, times := range after {
		if _, ok := atSnap[id]; !ok {
			t.Fatalf("message %d handled after the restore was not in the snapshot (acknowledged before it, or published after)", id)
		}
		if times != 1 {
			t.Fatalf("message %d handled %d times after the restore", id, times)
		}
	}
	var deadAfter int
	if err := dst.QueryRow(ctx, "SELECT count(*) FROM "+schemaName+".pgflow_dlq").Scan(&deadAfter); err != nil {
		t.Fatal(err)
	}
	if len(after)+deadAfter-dlqAtSnap != len(atSnap) {
		t.Fatalf("after the restore %d handled and %d dead-lettered, the snapshot held %d", len(after), deadAfter-dlqAtSnap, len(atSnap))
	}
	if n := retriedAfterRestore.Load(); n != 0 {
		t.Fatalf("%d deliveries after the restore counted a failure: recover must not", n)
	}

	// The id sequence and the dedup keys carried over.
	var maxID int64
	if err := dst.QueryRow(ctx, "SELECT greatest((SELECT max(message_id) FROM "+schemaName+".pgflow_dlq), 0)").Scan(&maxID); err != nil {
		t.Fatal(err)
	}
	for id := range atSnap {
		maxID = max(maxID, id)
	}
	id, err := restored.Publish(ctx, "orders", 1000001)
	if err != nil || id <= maxID {
		t.Fatalf("new message id %d (%v), want above %d", id, err, maxID)
	}
	t.Logf("snapshot: %d queued (%d leased), %d dead letters; %d published before it, %d after; %d handled after the restore",
		len(atSnap), leased, dlqAtSnap, len(publishedBefore), produced.Load()-int64(len(publishedBefore)), len(after))
}
