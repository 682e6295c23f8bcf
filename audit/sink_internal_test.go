package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestRefused: the table's refusals of a record are told apart from the
// database's own trouble, which the sink retries instead of quarantining.
func TestRefused(t *testing.T) {
	for _, c := range []struct {
		err  error
		code string
	}{
		{&pgconn.PgError{Code: "22P02"}, "22P02"},                                  // invalid_text_representation
		{fmt.Errorf("audit: insert: %w", &pgconn.PgError{Code: "23514"}), "23514"}, // check_violation
		{&pgconn.PgError{Code: "23502"}, "23502"},                                  // not_null_violation
		{&pgconn.PgError{Code: "54000"}, "54000"},                                  // program_limit_exceeded
		{&pgconn.PgError{Code: "23505"}, ""},                                       // unique_violation: a race, retried
		{&pgconn.PgError{Code: "57P01"}, ""},                                       // admin_shutdown
		{&pgconn.PgError{Code: "08006"}, ""},                                       // connection_failure
		{&pgconn.PgError{Code: "40P01"}, ""},                                       // deadlock_detected
		{&pgconn.PgError{Code: "53300"}, ""},                                       // too_many_connections
		{io.ErrUnexpectedEOF, ""},
		{context.DeadlineExceeded, ""},
		{errors.New("dial tcp: connection refused"), ""},
	} {
		code, ok := refused(c.err)
		if code != c.code || ok != (c.code != "") {
			t.Errorf("refused(%v) = %q, %v; want %q", c.err, code, ok, c.code)
		}
	}
}
