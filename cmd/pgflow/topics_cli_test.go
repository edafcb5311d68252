package main

import (
	"strings"
	"testing"

	"github.com/pgflow-go/pgflow/pgflowtest"
)

// pgflow topics: subscribe, list, publish to every subscriber, unsubscribe,
// and the no-subscriber error with its exit code.
func TestCLITopics(t *testing.T) {
	db := pgflowtest.New(t, pgflowtest.Options{MaxConns: 4})
	r := run(t, db, "", "topics", "subscribe", "profiles", "sing.i-1", "sing.i-2", "sing.i-3")
	if r.code != 0 || strings.Count(r.stdout, "subscribed ") != 3 {
		t.Fatalf("subscribe: %+v", r)
	}
	if r := run(t, db, "", "topics", "subscribe", "profiles", "sing.i-1"); r.code != 0 || !strings.Contains(r.stdout, "already subscribed") {
		t.Fatalf("subscribe again: %+v", r)
	}
	type sub struct{ Topic, Queue string }
	subs := decode[[]sub](t, run(t, db, "", "topics", "list", "--json"))
	if len(subs) != 3 || subs[0].Queue != "sing.i-1" || subs[2].Topic != "profiles" {
		t.Fatalf("list: %+v", subs)
	}
	type sent struct {
		Topic    string
		Messages []struct {
			Queue string
			ID    int64
		}
	}
	s := decode[sent](t, run(t, db, "", "topics", "publish", "profiles", `{"profile":"strict"}`, "-H", "source=cli", "--json"))
	if s.Topic != "profiles" || len(s.Messages) != 3 || s.Messages[1].Queue != "sing.i-2" {
		t.Fatalf("publish: %+v", s)
	}
	for _, q := range []string{"sing.i-1", "sing.i-2", "sing.i-3"} {
		msgs := db.Messages(t, q)
		if len(msgs) != 1 || string(msgs[0].Payload) != `{"profile": "strict"}` || msgs[0].Headers["source"] != "cli" {
			t.Fatalf("queue %s: %+v", q, msgs)
		}
	}
	if r := run(t, db, "", "topics", "unsubscribe", "profiles", "sing.i-3"); r.code != 0 || !strings.Contains(r.stdout, "unsubscribed sing.i-3") {
		t.Fatalf("unsubscribe: %+v", r)
	}
	if r := run(t, db, "", "topics", "publish", "nobody", `{}`); r.code != exitNotFound || !strings.Contains(r.stderr, "no subscribers") {
		t.Fatalf("publish without subscribers: %+v", r)
	}
	if r := run(t, db, "", "topics", "publish", "nobody", `{}`, "--allow-no-subscribers"); r.code != 0 {
		t.Fatalf("publish --allow-no-subscribers: %+v", r)
	}
	if r := run(t, db, "", "topics", "publish", "profiles", `{nope`); r.code != exitUsage {
		t.Fatalf("bad json: %+v", r)
	}
}
