package ingest

import (
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestRefusedAnonymousBodyNeverHoldsTheVerifiedReserve: the part of the
// body budget held back for addresses that delivered a new event lately
// (VerifiedReserveBytes) is theirs alone. An anonymous body that
// asks for more than the open part is refused, and while the receiver
// finds out whether its address is a verified one (a look-up under its
// source's address table, which a flood keeps busy) it must not hold the
// bytes it asked for: a provider's body of another source, arriving
// meanwhile, fits the reserve and must get it. (It failed: take added the
// anonymous request's bytes to the budget before asking, so the
// provider's delivery was refused 503 overloaded with the reserve free.)
func TestRefusedAnonymousBodyNeverHoldsTheVerifiedReserve(t *testing.T) {
	cfg := PreAuthConfig{MaxUnverifiedBodyBytes: 64 << 10, VerifiedReserveBytes: 16 << 10}.WithDefaults()
	budget := &bodyBudget{open: 48 << 10, reserved: 64 << 10}
	attacked, delivered := newAddressTable(cfg), newAddressTable(cfg)
	attacker := netip.MustParseAddr("198.51.100.1")
	provider := netip.MustParseAddr("203.0.113.7")
	delivered.verifiedAt(provider, time.Now())

	// Anonymous bodies fill the open part.
	if !budget.take(48<<10, attacked, attacker) {
		t.Fatal("the open part refused 48 KiB")
	}
	// One more anonymous body asks for 8 KiB: only the reserve has room,
	// so its address is looked up, while its source's table is busy.
	attacked.mu.Lock()
	anonymous := make(chan bool, 1)
	go func() { anonymous <- budget.take(8<<10, attacked, attacker) }()
	eventually(t, "the anonymous take asking whether its address is verified", func() bool {
		buf := make([]byte, 1<<20)
		return strings.Contains(string(buf[:runtime.Stack(buf, true)]), "(*addressTable).recentlyVerified")
	})
	// Meanwhile the provider's 16 KiB fit the reserve exactly.
	ok := budget.take(16<<10, delivered, provider)
	attacked.mu.Unlock()
	if <-anonymous {
		t.Error("an anonymous body was let into the verified reserve")
	}
	if !ok {
		t.Errorf("a recently verified address's body was refused with the reserve free (the budget held %d bytes of a refused anonymous body)", 8<<10)
	}
	if got, want := budget.bytes.Load(), int64(64<<10); ok && got != want {
		t.Errorf("the budget holds %d bytes, want %d", got, want)
	}
}
