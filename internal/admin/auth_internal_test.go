package admin

import (
	"strings"
	"sync"
	"testing"
)

// TestTokenComparedByDigest: whatever the length of the token sent, the
// constant-time comparison is given two digests of one fixed size, so the
// time it takes tells nothing of the configured token's length
// (ConstantTimeCompare answers at once when the lengths differ).
func TestTokenComparedByDigest(t *testing.T) {
	var mu sync.Mutex
	var lengths [][2]int
	orig := constantTimeCompare
	constantTimeCompare = func(x, y []byte) int {
		mu.Lock()
		lengths = append(lengths, [2]int{len(x), len(y)})
		mu.Unlock()
		return orig(x, y)
	}
	t.Cleanup(func() { constantTimeCompare = orig })
	a := newAuthenticator(Config{Token: "the-configured-admin-token"})
	for _, sent := range []string{"", "t", "the-configured-admin-toke", "the-configured-admin-token", strings.Repeat("x", 4096)} {
		if got, want := a.matches(sent), sent == "the-configured-admin-token"; got != want {
			t.Errorf("matches(%q) = %v", sent, got)
		}
	}
	if len(lengths) != 5 {
		t.Fatalf("%d comparisons, want 5", len(lengths))
	}
	for _, l := range lengths {
		if l != [2]int{32, 32} {
			t.Errorf("compared %d bytes with %d, want two 32-byte digests", l[0], l[1])
		}
	}
}
