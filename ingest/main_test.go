package ingest_test

import (
	"testing"

	"github.com/hookstream/hookstream/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }
