package console_test

import (
	"testing"

	"github.com/pgflow-go/pgflow/pgflowtest"
)

func TestMain(m *testing.M) { pgflowtest.RunMain(m) }
