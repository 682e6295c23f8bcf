// Package audittest drives the audit relay in tests.
package audittest

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hookstream/hookstream/audit"
)

// Publish calls relay.PublishOnce on conn until it has published want
// records in all, or for at most 20 seconds, and returns how many it
// published; the caller compares that with want. A round that publishes
// nothing is tried again 10 ms later: the relay publishes only rows older
// than every running transaction, and the snapshot horizon is
// cluster-wide, so a short transaction of another test may hold rows back
// for a moment.
func Publish(t testing.TB, relay *audit.Relay, conn *pgx.Conn, want int) int {
	t.Helper()
	total := 0
	deadline := time.Now().Add(20 * time.Second)
	for total < want && time.Now().Before(deadline) {
		n, err := relay.PublishOnce(t.Context(), conn)
		if err != nil {
			t.Fatal(err)
		}
		total += n
		if n == 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	return total
}
