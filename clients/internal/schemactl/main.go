package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgflow-go/pgflow/migrate"
)

func main() {
	url := flag.String("url", os.Getenv("PGFLOW_TEST_DATABASE_URL"), "PostgreSQL URL")
	schemaName := flag.String("schema", "", "schema to create or drop")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: schemactl -url URL -schema NAME up|drop")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *url == "" || *schemaName == "" || flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*url, *schemaName, flag.Arg(0)); err != nil {
		fmt.Fprintln(os.Stderr, "schemactl:", err)
		os.Exit(1)
	}
}

func run(url, schemaName, action string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return err
	}
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	switch action {
	case "up":
		res, err := migrate.Up(ctx, pool, schemaName)
		if err != nil {
			return err
		}
		fmt.Printf("schema %s at version %d\n", res.Schema, res.Version)
		return nil
	case "drop":
		_, err := pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schemaName}.Sanitize()+" CASCADE")
		return err
	default:
		return fmt.Errorf("unknown action %q: want up or drop", action)
	}
}
