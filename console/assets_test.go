package console

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// TestHtmxIsThePinnedCopy: the htmx the binary embeds is the one
// web/build.sh copied from the version web/package.json pins (its
// SHA-256 recorded in web/htmx.sha256), not a copy edited or swapped
// by hand.
func TestHtmxIsThePinnedCopy(t *testing.T) {
	t.Parallel()
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	raw, err := os.ReadFile("web/package.json")
	if err != nil || json.Unmarshal(raw, &pkg) != nil {
		t.Fatalf("web/package.json: %v", err)
	}
	rec, err := os.ReadFile("web/htmx.sha256")
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(rec))
	if len(fields) != 2 {
		t.Fatalf("web/htmx.sha256: %q", rec)
	}
	if fields[0] != pkg.Dependencies["htmx.org"] {
		t.Errorf("web/htmx.sha256 is of htmx.org %s, package.json pins %s: run go generate ./console", fields[0], pkg.Dependencies["htmx.org"])
	}
	sum := sha256.Sum256(assets["htmx.min.js"].body)
	if got := hex.EncodeToString(sum[:]); got != fields[1] {
		t.Errorf("the embedded htmx.min.js has sha256 %s, web/htmx.sha256 says %s: run go generate ./console", got, fields[1])
	}
}
