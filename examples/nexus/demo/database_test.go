package demo

import (
	"context"
	"os"
	"testing"
)

// Starting a cluster costs a few seconds of initdb; run with
// NEXUS_TEST_THROWAWAY=1.
func TestThrowawayCluster(t *testing.T) {
	if os.Getenv("NEXUS_TEST_THROWAWAY") == "" {
		t.Skip("set NEXUS_TEST_THROWAWAY=1 to start a throwaway PostgreSQL cluster")
	}
	ctx := context.Background()
	d, err := startThrowaway(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dir := d.cluster.Dir
	if err := ping(ctx, d.URL); err != nil {
		d.Close()
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("%s still exists", dir)
	}
	if err := ping(ctx, d.URL); err == nil {
		t.Fatal("the cluster still answers after Close")
	}
}
