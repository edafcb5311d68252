package producer_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/pgflowtest"
	"github.com/pgflow-go/pgflow/producer"
)

// commitCutter is a TCP proxy in front of the test server. Armed, it passes
// the next end of a transaction to the server (a COMMIT, or the Sync after an
// executed statement: a statement outside a transaction block commits so),
// holds back the server's answer, and once that answer ends with the server
// idle again (ReadyForQuery, status I: the transaction committed) cuts the
// connection: the commit has happened, the client cannot know. An answer
// that leaves a transaction open (a Sync inside BEGIN) is passed on and the
// cutter stays armed for the COMMIT.
type commitCutter struct {
	ln     net.Listener
	target string
	armed  atomic.Bool
	cuts   atomic.Int32
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func newCommitCutter(t *testing.T, target string) *commitCutter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cc := &commitCutter{ln: ln, target: target}
	cc.wg.Add(1)
	go cc.accept()
	t.Cleanup(cc.close)
	return cc
}

func (cc *commitCutter) accept() {
	defer cc.wg.Done()
	for {
		client, err := cc.ln.Accept()
		if err != nil {
			return // listener closed
		}
		server, err := net.Dial("tcp", cc.target)
		if err != nil {
			client.Close()
			continue
		}
		cc.mu.Lock()
		cc.conns = append(cc.conns, client, server)
		cc.mu.Unlock()
		var ending atomic.Bool // an end of a transaction is on its way to the server
		cc.wg.Add(2)
		go func() {
			defer cc.wg.Done()
			defer client.Close()
			defer server.Close()
			cc.answer(client, server, &ending)
		}()
		go func() {
			defer cc.wg.Done()
			defer server.Close()
			cc.forward(client, server, &ending)
		}()
	}
}

// readMessage reads one typed protocol message (a byte, a length, the body).
func readMessage(r io.Reader) ([]byte, error) {
	var head [5]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return nil, err
	}
	msg := make([]byte, 1+binary.BigEndian.Uint32(head[1:]))
	copy(msg, head[:])
	if _, err := io.ReadFull(r, msg[5:]); err != nil {
		return nil, err
	}
	return msg, nil
}

// forward copies the client's messages to the server one by one: the
// startup packet, then typed messages. Before passing on an end of a
// transaction while armed it sets ending, so that answer holds back what
// the server says to it.
func (cc *commitCutter) forward(client, server net.Conn, ending *atomic.Bool) {
	var head [4]byte
	if _, err := io.ReadFull(client, head[:]); err != nil {
		return
	}
	startup := make([]byte, binary.BigEndian.Uint32(head[:]))
	copy(startup, head[:])
	if _, err := io.ReadFull(client, startup[4:]); err != nil {
		return
	}
	if _, err := server.Write(startup); err != nil {
		return
	}
	executed := false // an Execute since the last Sync
	for {
		msg, err := readMessage(client)
		if err != nil {
			return
		}
		kind, body := msg[0], msg[5:]
		if kind == 'E' {
			executed = true
		}
		ends := kind == 'Q' && bytes.HasPrefix(bytes.ToLower(body), []byte("commit")) || kind == 'S' && executed
		if kind == 'S' {
			executed = false
		}
		if ends && cc.armed.Load() {
			ending.Store(true)
		}
		if _, err := server.Write(msg); err != nil {
			return
		}
	}
}

// answer copies the server's messages to the client. While ending, it holds
// them back until ReadyForQuery: idle means the transaction committed, and
// the connection is cut with nothing passed on; otherwise (still in a
// transaction) what it held goes on to the client.
func (cc *commitCutter) answer(client, server net.Conn, ending *atomic.Bool) {
	var held [][]byte
	for {
		msg, err := readMessage(server)
		if err != nil {
			return
		}
		if !ending.Load() {
			if _, err := client.Write(msg); err != nil {
				return
			}
			continue
		}
		held = append(held, msg)
		if msg[0] != 'Z' {
			continue
		}
		ending.Store(false)
		if len(msg) > 5 && msg[5] == 'I' && cc.armed.CompareAndSwap(true, false) {
			cc.cuts.Add(1)
			return
		}
		for _, m := range held {
			if _, err := client.Write(m); err != nil {
				return
			}
		}
		held = held[:0]
	}
}

func (cc *commitCutter) close() {
	cc.ln.Close()
	cc.mu.Lock()
	for _, c := range cc.conns {
		c.Close()
	}
	cc.mu.Unlock()
	cc.wg.Wait()
}

// TestConnectionLostAfterCommit: the connection breaks after COMMIT was sent,
// so the write's outcome is unknown (it did commit). The producer retries:
// the publish succeeds and the message is stored at least once; without a
// dedup key the retry stores a second copy (the at-least-once edge the
// package documents), with one the retry returns the stored message's id.
func TestConnectionLostAfterCommit(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	pc, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	cut := newCommitCutter(t, net.JoinHostPort(pc.ConnConfig.Host, strconv.Itoa(int(pc.ConnConfig.Port))))
	pc.ConnConfig.Host, pc.ConnConfig.Port = "127.0.0.1", uint16(cut.ln.Addr().(*net.TCPAddr).Port)
	pc.ConnConfig.TLSConfig, pc.ConnConfig.Fallbacks = nil, nil // the proxy reads plain messages
	pc.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := pgflow.New(pool, pgflow.Config{Schema: db.Schema, PollOnly: true, Logger: quiet, DisableStatsCounters: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	if err := c.DeclareQueue(ctx, pgflow.QueueConfig{Name: "cut"}); err != nil {
		t.Fatal(err)
	}
	var logs lockedLog
	p, err := producer.New(c, producer.Config{Queue: "cut", MaxRetries: 5, RetryDelay: time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)

	count := func(where string, args ...any) int {
		t.Helper()
		var n int
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+db.Schema+`.pgflow_messages WHERE `+where, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	cut.armed.Store(true)
	id, err := p.Publish(ctx, map[string]string{"k": "plain"})
	if err != nil || id == 0 {
		t.Fatalf("publish: id %d err %v", id, err)
	}
	if cut.cuts.Load() != 1 {
		t.Fatalf("%d commits cut, want 1", cut.cuts.Load())
	}
	if n := count(`payload->>'k' = 'plain'`); n != 2 {
		t.Fatalf("%d copies stored, want 2 (the cut commit and the retry)", n)
	}
	if count(`id = $1`, id) != 1 {
		t.Fatalf("returned id %d is not stored", id)
	}
	if !strings.Contains(logs.String(), "may_have_committed=true") {
		t.Fatalf("the retry's log line does not say the write may have committed:\n%s", logs.String())
	}

	cut.armed.Store(true)
	id, err = p.Publish(ctx, map[string]string{"k": "keyed"}, pgflow.WithDedupKey("order-1"))
	if err != nil || id == 0 {
		t.Fatalf("publish with a dedup key: id %d err %v", id, err)
	}
	if cut.cuts.Load() != 2 {
		t.Fatalf("%d commits cut, want 2", cut.cuts.Load())
	}
	if n := count(`payload->>'k' = 'keyed'`); n != 1 || count(`id = $1 AND dedup_key = 'order-1'`, id) != 1 {
		t.Fatalf("%d copies stored, want 1 with the returned id %d", n, id)
	}
}

type lockedLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
