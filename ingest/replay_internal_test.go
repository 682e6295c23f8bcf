package ingest

import (
	"strconv"
	"testing"
	"time"
)

// TestRecentDigests: a digest is claimed by its first event id; another
// id gets that one back, within the TTL and the capacity only.
func TestRecentDigests(t *testing.T) {
	var d recentDigests
	now := time.Now()
	if got := d.claim("s", "d1", "e1", now); got != "" {
		t.Fatalf("first claim: %q", got)
	}
	if got := d.claim("s", "d1", "e1", now); got != "" {
		t.Errorf("same id again: %q, want none", got)
	}
	if got := d.claim("s", "d1", "e2", now.Add(time.Minute)); got != "e1" {
		t.Errorf("another id: %q, want e1", got)
	}
	if got := d.claim("s", "d1", "e3", now.Add(recentDigestsTTL+time.Second)); got != "" {
		t.Errorf("after the TTL: %q, want none", got)
	}
	d.found("s", "d1", "e0")
	if got := d.claim("s", "d1", "e3", now.Add(recentDigestsTTL+2*time.Second)); got != "e0" {
		t.Errorf("after found: %q, want e0", got)
	}
	for i := range recentDigestsMax {
		d.claim("s", "x"+strconv.Itoa(i), "y", now)
	}
	if got := d.claim("s", "d1", "e9", now.Add(recentDigestsTTL+3*time.Second)); got != "" {
		t.Errorf("after %d newer digests: %q, want none (evicted)", recentDigestsMax, got)
	}
	if len(d.ids) > recentDigestsMax {
		t.Errorf("%d digests held, want at most %d", len(d.ids), recentDigestsMax)
	}
}
