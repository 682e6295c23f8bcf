package ingest

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"sync"
	"time"

	"github.com/hookstream/hookstream/ingest/signature"
)

// detailSignedDigest is the key, in the detail of an ACCEPTED or
// RETRY_ACCEPTED record, of the SHA-256 (hex) of what the source's
// signature covers, for sources whose event id it does not cover. The
// index of migration 6 (audit_log_signed_idx) is on it: renaming it is a
// migration.
const detailSignedDigest = "signed_sha256"

// guardsReplays reports whether a source needs the signed-digest check:
// its event id comes from a header the signature does not cover, so a
// captured delivery verifies under any id — forever where the scheme signs
// the body alone (github, shopify, hmac-sha256), within its tolerance
// where it signs a timestamp too (stripe, or standard-webhooks whose id is
// read from another header than its signed webhook-id). An id in the body
// is signed with it; a source of scheme none verifies nothing at all.
func guardsReplays(scheme string, eventID locator) bool {
	switch {
	case eventID.header == "", scheme == signature.SchemeNone:
		return false
	case scheme == signature.SchemeStandardWebhooks:
		signed, _, _ := signature.NaturalEventID(scheme)
		return eventID.header != http.CanonicalHeaderKey(signed)
	}
	return true
}

// signedDigest is the digest of what guardsReplays's schemes sign: the body.
func signedDigest(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

// found records that source's digest belongs to eventID, which the
// database knew when this receiver did not: its claim by a replay is
// undone.
func (d *recentDigests) found(source, digest, eventID string) {
	key := digestKey(source, digest)
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.ids[key]; ok {
		e.eventID = eventID
		d.ids[key] = e
	}
}

// digestKey is a digest's key in recentDigests: per source, as the
// database's look-up is, since two sources may be sent the same body (a
// repository's and an organization's GitHub hook get the same event),
// each a delivery of its own.
func digestKey(source, digest string) string { return source + "\x00" + digest }

// replayed answers a request whose signed body was accepted before as
// another event: a duplicate, whatever the state of the event its id
// names, so that a captured delivery sent again under a fresh id is
// neither processed again nor re-drives a FAILED or DEAD event.
func (r *Receiver) replayed(req *request, replayOf string) {
	// A provider does not send one body under two ids (but for the rare
	// unchanged update): a replay is charged to its address as a failure
	// is, so that one captured delivery buys a stranger no more than the
	// pre-auth budget of duplicate records and look-ups.
	req.src.addresses.failed(req.addr, req.receivedAt)
	code := req.src.cfg.DuplicateStatus
	if r.duplicate(req, "replayed_body", code, map[string]any{"replay_of": replayOf}) {
		reply(req.c, code, Reply{EventID: req.eventID, Status: "duplicate"})
		duplicatesTotal.WithLabelValues(req.sourceName, "replayed_body").Inc()
		observe(req, code)
	}
}

// recentDigests bridges the time between a delivery's acceptance and the
// consumer writing its ACCEPTED record, which the database look-up needs:
// the last recentDigestsMax signed digests this receiver saw, each for
// recentDigestsTTL, with the event id that first claimed it. A digest is
// claimed when its request is checked, not when it is stored, so that
// replays sent at once do not all pass; a claim whose event then fails
// (503) stays, which refuses nothing the provider sends (its retry has
// the same id).
type recentDigests struct {
	mu    sync.Mutex
	ids   map[string]recentDigest
	order []string // ring of the digests in ids, oldest at next
	next  int
}

type recentDigest struct {
	eventID string
	at      time.Time
	slot    int // in order
}

const (
	recentDigestsMax = 16384
	recentDigestsTTL = 10 * time.Minute
)

// claim returns the event id that claimed source's digest before within
// the TTL if it is not eventID; otherwise it claims the digest for eventID
// and returns "".
func (d *recentDigests) claim(source, digest, eventID string, now time.Time) string {
	digest = digestKey(source, digest)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ids == nil {
		d.ids = make(map[string]recentDigest)
		d.order = make([]string, recentDigestsMax)
	}
	if e, ok := d.ids[digest]; ok && now.Sub(e.at) < recentDigestsTTL {
		if e.eventID != eventID {
			return e.eventID
		}
		return ""
	} else if ok {
		delete(d.ids, digest) // expired: its ring slot is overwritten in time
	}
	if old := d.order[d.next]; old != "" {
		if e, ok := d.ids[old]; ok && e.slot == d.next {
			delete(d.ids, old)
		}
	}
	d.order[d.next] = digest
	d.ids[digest] = recentDigest{eventID: eventID, at: now, slot: d.next}
	d.next = (d.next + 1) % len(d.order)
	return ""
}
