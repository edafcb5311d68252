package pgflow_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/internal/pgcluster"
	"github.com/pgflow-go/pgflow/migrate"
)

// The backup tests: producers and consumers run on a throwaway cluster, the
// pgflow schema is backed up at a moment the test knows, restored, recover
// runs, and a consumer drains the restored database.

const backupSchema = "flow"

// backupCluster starts a throwaway cluster (never the shared server).
func backupCluster(t *testing.T) *pgcluster.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster")
	}
	if !pgcluster.Available() {
		t.Skip("PostgreSQL server binaries not installed")
	}
	cl, err := pgcluster.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Remove)
	return cl
}

func openPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 12
	p, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func backupClient(t *testing.T, pool *pgxpool.Pool) *pgflow.Client {
	t.Helper()
	c, err := pgflow.New(pool, pgflow.Config{Schema: backupSchema, Logger: quietLogger(), PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	return c
}

// pgTool returns the path of a PostgreSQL program of the installed server's
// version.
func pgTool(name string) (string, error) {
	out, err := exec.Command("pg_config", "--bindir").Output()
	if err != nil {
		return "", fmt.Errorf("pg_config --bindir: %w", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), name), nil
}

func runTool(name string, args ...string) error {
	path, err := pgTool(name)
	if err != nil {
		return err
	}
	if out, err := exec.Command(path, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// idSet counts message ids; safe for concurrent use.
type idSet struct {
	mu  sync.Mutex
	ids map[int64]int
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

// backupHandler handles payload n: every 17th fails permanently (dead
// letters); the others are recorded in handled. block, when not nil, is
// called for 5, 15 and 25 instead (to hold them leased).
func backupHandler(handled *idSet, block func()) pgflow.Handler {
	return func(ctx context.Context, m *pgflow.Message) error {
		var n int
		if err := m.Decode(&n); err != nil {
			return pgflow.Permanent(err)
		}
		if block != nil && (n == 5 || n == 15 || n == 25) {
			block()
			return errors.New("the source database is being abandoned")
		}
		if n%17 == 0 {
			return pgflow.Permanent(fmt.Errorf("message %d is invalid", n))
		}
		handled.add(m.ID)
		return nil
	}
}

// traffic is a producer publishing 1, 2, 3, … (every 5th with a dedup key)
// and a consumer of 8 workers, on the source database.
type traffic struct {
	consumer *pgflow.Client
	handled  *idSet // handled on the source
	blocked  chan struct{}

	mu        sync.Mutex
	published []int64 // ids whose Publish returned (committed)
	dedup     map[string]int64
	produced  atomic.Int64
	stop      chan struct{}
	done      chan error
}

// startTraffic runs until traffic is flowing and the three blocked messages
// are leased.
func startTraffic(t *testing.T, pool *pgxpool.Pool) *traffic {
	t.Helper()
	ctx := context.Background()
	producer, consumer := backupClient(t, pool), backupClient(t, pool)
	if err := producer.DeclareQueue(ctx, pgflow.QueueConfig{Name: "orders", MaxRetries: pgflow.Set(0), LeaseTimeout: pgflow.Set(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	tr := &traffic{consumer: consumer, handled: newIDSet(), blocked: make(chan struct{}), dedup: map[string]int64{},
		stop: make(chan struct{}), done: make(chan error, 1)}
	var blockedRunning sync.WaitGroup
	blockedRunning.Add(3)
	block := func() {
		blockedRunning.Done()
		<-tr.blocked
	}
	if err := consumer.Consume(pgflow.ConsumerConfig{Queue: "orders", Workers: 8, Handler: backupHandler(tr.handled, block)}); err != nil {
		t.Fatal(err)
	}
	if err := consumer.Start(ctx); err != nil {
		t.Fatal(err)
	}
	go func() {
		for n := 1; ; n++ {
			select {
			case <-tr.stop:
				tr.done <- nil
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
				tr.done <- fmt.Errorf("publish %d: %w", n, err)
				return
			}
			tr.mu.Lock()
			tr.published = append(tr.published, id)
			if key != "" {
				tr.dedup[key] = id
			}
			tr.mu.Unlock()
			tr.produced.Add(1)
		}
	}()
	waitFor(t, "traffic", func() bool { return tr.produced.Load() >= 300 && tr.handled.len() >= 100 })
	blockedRunning.Wait()
	return tr
}

// publishedSoFar returns the ids whose Publish has returned.
func (tr *traffic) publishedSoFar() []int64 {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]int64(nil), tr.published...)
}

// more waits until n more messages were published.
func (tr *traffic) more(t *testing.T, n int64) {
	t.Helper()
	from := tr.produced.Load()
	waitFor(t, "more traffic", func() bool { return tr.produced.Load() >= from+n })
}

// finish stops the producer and the consumer.
func (tr *traffic) finish(t *testing.T) {
	t.Helper()
	close(tr.stop)
	if err := <-tr.done; err != nil {
		t.Fatal(err)
	}
	close(tr.blocked)
	if err := tr.consumer.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// keyHeldBy returns a dedup key whose message is in ids.
func (tr *traffic) keyHeldBy(ids map[int64]string) (string, int64) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for k, id := range tr.dedup {
		if _, ok := ids[id]; ok {
			return k, id
		}
	}
	return "", 0
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// liveMessages returns every live message's id and status.
func liveMessages(t *testing.T, q querier) map[int64]string {
	t.Helper()
	rows, err := q.Query(context.Background(), "SELECT id, status FROM "+backupSchema+".pgflow_messages")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64]string{}
	var id int64
	var status string
	if _, err := pgx.ForEachRow(rows, []any{&id, &status}, func() error {
		out[id] = status
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func dlqCount(t *testing.T, q querier) int {
	t.Helper()
	var n int
	if err := q.QueryRow(context.Background(), "SELECT count(*) FROM "+backupSchema+".pgflow_dlq").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func leasedCount(ids map[int64]string) int {
	n := 0
	for _, st := range ids {
		if st == "processing" {
			n++
		}
	}
	return n
}

// recoverAndDrain runs Recover on the restored database, checks that it
// released leased messages and that a dedup key held by a restored message
// still deduplicates, drains the queue and returns how many times each
// message was handled. A delivery that counted a failure fails the test.
func recoverAndDrain(t *testing.T, pool *pgxpool.Pool, tr *traffic, restoredIDs map[int64]string) map[int64]int {
	t.Helper()
	ctx := context.Background()
	c := backupClient(t, pool)
	released, err := c.Recover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if leased := leasedCount(restoredIDs); released["orders"] != leased || leased < 3 {
		t.Fatalf("recover released %v; %d were leased in the restored database (3 at least, held by the test)", released, leased)
	}
	key, keyID := tr.keyHeldBy(restoredIDs)
	if key == "" {
		t.Fatal("no restored message has a dedup key")
	}
	if dup, err := c.Publish(ctx, "orders", 1, pgflow.WithDedupKey(key)); err != nil || dup != keyID {
		t.Fatalf("dedup key %s after the restore: id %d (%v), want %d", key, dup, err, keyID)
	}
	handled := newIDSet()
	var retried atomic.Int32
	h := backupHandler(handled, nil)
	if err := c.Consume(pgflow.ConsumerConfig{Queue: "orders", Workers: 8, Handler: func(ctx context.Context, m *pgflow.Message) error {
		if m.RetryCount != 0 {
			retried.Add(1)
		}
		return h(ctx, m)
	}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the restored queue drained", func() bool {
		var n int
		_ = pool.QueryRow(ctx, "SELECT count(*) FROM "+backupSchema+".pgflow_messages").Scan(&n)
		return n == 0
	})
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if n := retried.Load(); n != 0 {
		t.Fatalf("%d deliveries after the restore counted a failure: recover must not", n)
	}
	// The id sequence is past every id in use.
	maxID := int64(0)
	if err := pool.QueryRow(ctx, "SELECT coalesce(max(message_id), 0) FROM "+backupSchema+".pgflow_dlq").Scan(&maxID); err != nil {
		t.Fatal(err)
	}
	for id := range restoredIDs {
		maxID = max(maxID, id)
	}
	if id, err := c.Publish(ctx, "other", 1); err != nil || id <= maxID {
		t.Fatalf("new message id %d (%v), want above %d", id, err, maxID)
	}
	return handled.copy()
}

// checkDrained: every restored message was handled once or dead-lettered
// after the restore, and nothing else was handled.
func checkDrained(t *testing.T, pool *pgxpool.Pool, restoredIDs map[int64]string, dlqRestored int, after map[int64]int) {
	t.Helper()
	for id, times := range after {
		if _, ok := restoredIDs[id]; !ok {
			t.Fatalf("message %d handled after the restore was not restored", id)
		}
		if times != 1 {
			t.Fatalf("message %d handled %d times after the restore", id, times)
		}
	}
	if dead := dlqCount(t, pool) - dlqRestored; len(after)+dead != len(restoredIDs) {
		t.Fatalf("after the restore %d handled and %d dead-lettered; %d were restored", len(after), dead, len(restoredIDs))
	}
}

// TestLogicalBackupAndRestore: pg_dump takes the pgflow schema at a
// snapshot the test holds open (pg_dump --snapshot) while producers and
// consumers run; the dump is restored into a new database, recover runs
// and a consumer drains it. Every message acknowledged before the snapshot
// is absent; every other message published before it is present and
// handled exactly once after the restore, those leased at the snapshot
// included (without waiting for their hour-long lease and without a
// counted failure); nothing published before it is lost; dead letters,
// dedup keys and the id sequence carry over.
func TestLogicalBackupAndRestore(t *testing.T) {
	cl := backupCluster(t)
	t.Parallel()
	ctx := context.Background()
	admin := openPool(t, cl.URL("postgres"))
	for _, db := range []string{"src", "dst"} {
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+db); err != nil {
			t.Fatal(err)
		}
	}
	src := openPool(t, cl.URL("src"))
	if _, err := migrate.Up(ctx, src, backupSchema); err != nil {
		t.Fatal(err)
	}
	tr := startTraffic(t, src)

	// The snapshot: the dump holds exactly what this transaction sees. Ids
	// whose Publish returned before it began were committed before it.
	publishedBefore := tr.publishedSoFar()
	tx, err := src.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	var snapshot string
	if err := tx.QueryRow(ctx, "SELECT pg_export_snapshot()").Scan(&snapshot); err != nil {
		t.Fatal(err)
	}
	handledBefore := tr.handled.copy() // includes every message acknowledged before the snapshot
	atSnap := liveMessages(t, tx)
	dlqAtSnap := dlqCount(t, tx)

	dump := filepath.Join(t.TempDir(), "pgflow.dump")
	dumped := make(chan error, 1)
	start := time.Now()
	go func() {
		dumped <- runTool("pg_dump", "-d", cl.URL("src"), "--snapshot="+snapshot, "-Fc", "-n", backupSchema, "-f", dump)
	}()
	tr.more(t, 100) // traffic goes on while pg_dump reads at the snapshot
	if err := <-dumped; err != nil {
		t.Fatal(err)
	}
	dumpTook := time.Since(start)
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	tr.finish(t)
	if dlqAtSnap == 0 {
		t.Fatal("no dead letter at the snapshot; the test needs one")
	}
	// Nothing published before the snapshot is lost: it was queued, or
	// handled, or dead-lettered by then.
	for _, id := range publishedBefore {
		if _, ok := atSnap[id]; !ok && handledBefore[id] == 0 {
			var dead int
			if err := src.QueryRow(ctx, "SELECT count(*) FROM "+backupSchema+".pgflow_dlq WHERE message_id = $1", id).Scan(&dead); err != nil {
				t.Fatal(err)
			}
			if dead == 0 {
				t.Fatalf("message %d, published before the snapshot, is neither in it nor handled nor dead-lettered", id)
			}
		}
	}

	if err := runTool("pg_restore", "-d", cl.URL("dst"), "--exit-on-error", dump); err != nil {
		t.Fatal(err)
	}
	dst := openPool(t, cl.URL("dst"))
	restored := liveMessages(t, dst)
	if len(restored) != len(atSnap) {
		t.Fatalf("restored %d messages, the snapshot held %d", len(restored), len(atSnap))
	}
	for id, st := range atSnap {
		if restored[id] != st {
			t.Fatalf("message %d: restored as %q, %q at the snapshot", id, restored[id], st)
		}
	}
	if n := dlqCount(t, dst); n != dlqAtSnap {
		t.Fatalf("restored %d dead letters, the snapshot held %d", n, dlqAtSnap)
	}
	after := recoverAndDrain(t, dst, tr, restored)
	checkDrained(t, dst, restored, dlqAtSnap, after)
	t.Logf("snapshot: %d queued (%d leased), %d dead letters, %d published before it; pg_dump %v; %d handled after the restore",
		len(atSnap), leasedCount(atSnap), dlqAtSnap, len(publishedBefore), dumpTook.Round(time.Millisecond), len(after))
}

// TestPointInTimeRecovery: the same through a base backup and WAL replay to
// a named restore point. The restore point is bracketed by two reads of the
// live messages: a message live at both is restored, a message published
// and acknowledged before the first is not, and every restored message is
// handled once after recover. Set PGFLOW_TEST_PITR=1 to run it (a second
// cluster, a base backup and a WAL replay: about 10 s more).
func TestPointInTimeRecovery(t *testing.T) {
	if os.Getenv("PGFLOW_TEST_PITR") == "" {
		t.Skip("set PGFLOW_TEST_PITR=1 to run the point-in-time recovery test")
	}
	cl := backupCluster(t)
	t.Parallel()
	ctx := context.Background()
	if err := cl.EnableArchiving(ctx); err != nil {
		t.Fatal(err)
	}
	src := openPool(t, cl.URL("postgres"))
	if _, err := migrate.Up(ctx, src, backupSchema); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	backup, err := cl.BaseBackup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(backup.Remove)
	baseTook := time.Since(start)
	tr := startTraffic(t, src)

	publishedBefore := tr.publishedSoFar()
	first := liveMessages(t, src)
	handledBefore := tr.handled.copy()
	if _, err := src.Exec(ctx, "SELECT pg_create_restore_point('pgflow-test')"); err != nil {
		t.Fatal(err)
	}
	second := liveMessages(t, src)
	tr.more(t, 100)
	var segment string
	if err := src.QueryRow(ctx, "SELECT pg_walfile_name(pg_switch_wal())").Scan(&segment); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the restore point archived", func() bool {
		var last *string
		_ = src.QueryRow(ctx, "SELECT last_archived_wal FROM pg_stat_archiver").Scan(&last)
		return last != nil && *last >= segment
	})
	tr.finish(t)

	if err := backup.RecoverTo(cl, "pgflow-test"); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if err := backup.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	dst := openPool(t, backup.URL("postgres"))
	waitFor(t, "recovery to end", func() bool {
		var inRecovery bool
		return dst.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery) == nil && !inRecovery
	})
	replayTook := time.Since(start)

	restored := liveMessages(t, dst)
	for id := range first {
		if _, ok := second[id]; ok {
			if _, ok := restored[id]; !ok {
				t.Fatalf("message %d, live before and after the restore point, was not restored", id)
			}
		}
	}
	for _, id := range publishedBefore {
		if _, ok := first[id]; ok {
			continue
		}
		if _, ok := restored[id]; ok {
			t.Fatalf("message %d, finished before the restore point, was restored", id)
		}
		if handledBefore[id] == 0 {
			var dead int
			if err := dst.QueryRow(ctx, "SELECT count(*) FROM "+backupSchema+".pgflow_dlq WHERE message_id = $1", id).Scan(&dead); err != nil {
				t.Fatal(err)
			}
			if dead == 0 {
				t.Fatalf("message %d, published before the restore point, is lost", id)
			}
		}
	}
	all := map[int64]bool{}
	for _, id := range tr.publishedSoFar() {
		all[id] = true
	}
	for id := range restored {
		if !all[id] {
			t.Fatalf("restored message %d was never published", id)
		}
	}
	dlqRestored := dlqCount(t, dst)
	after := recoverAndDrain(t, dst, tr, restored)
	checkDrained(t, dst, restored, dlqRestored, after)
	t.Logf("restore point between %d and %d live messages; %d restored (%d leased); base backup %v, start with WAL replay to the restore point %v; %d handled after",
		len(first), len(second), len(restored), leasedCount(restored), baseTook.Round(time.Millisecond), replayTook.Round(time.Millisecond), len(after))
}
