package demo_test

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgflow-go/pgflow/examples/nexus/demo"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

func ExampleRun() {
	ctx := context.Background()
	pc, err := pgxpool.ParseConfig(pgflowtest.DatabaseURL())
	if err != nil {
		fmt.Println(err)
		return
	}
	pc.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close()
	schema := fmt.Sprintf("nexus_example_%d", time.Now().UnixNano())
	defer pool.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE") //nolint:errcheck

	rep, err := demo.Run(ctx, demo.Options{Pool: pool, Schema: schema, Instances: 2, Duration: time.Second,
		Logger: quiet(), LookupEnv: noEnv})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, q := range rep.Queues {
		if q.Published != q.Handled+q.DeadLettered+q.InFlight {
			fmt.Println(q.Queue, "does not add up")
		}
	}
	fmt.Println("queues:", len(rep.Queues), "nothing lost:", rep.OK)
	// Output:
	// queues: 6 nothing lost: true
}
