package console_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/console"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

// Mount the console under /console in a service's own mux, with an admin
// token read from the environment.
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgflowtest.DatabaseURL())
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	client, err := pgflow.New(pool, pgflow.Config{Schema: pgflowtest.ExampleSchema("console"), DisableStatsCounters: true})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close(ctx)
	if _, err := client.Publish(ctx, "emails", map[string]string{"to": "ada@example.com"}); err != nil {
		log.Fatal(err)
	}

	h, err := console.New(client, console.Options{
		AdminToken: os.Getenv("PGFLOW_ADMIN_TOKEN"), // empty: read-only
		Prefix:     "/console",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close() // stops its background reads
	mux := http.NewServeMux()
	mux.Handle("/console/", h)

	srv := httptest.NewServer(mux)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/console/api/queues")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	var body strings.Builder
	_, _ = fmt.Fprint(&body, resp.Status)
	fmt.Println(body.String())
	// Output: 200 OK
}
