package config_test

import (
	"testing"

	"github.com/pgflow-go/pgflow/pgflowtest"
)

// exampleSchema is the migrated schema the runnable examples use; TestMain
// drops it.
func exampleSchema() string { return pgflowtest.ExampleSchema("config") }

func TestMain(m *testing.M) { pgflowtest.RunMain(m) }
