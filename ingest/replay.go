package ingest

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/hookstream/hookstream/ingest/signature"
)

// detailSignedDigest is the key, in the detail of an ACCEPTED or
// RETRY_ACCEPTED record, of the SHA-256 (hex) of what the source's
// signature covers, for sources whose event id it does not cover. The
// index of migration 6 (audit_log_signed_idx) is on it: renaming it is a
// migration.
const detailSignedDigest = "signed_sha256"

// guardsReplays reports whether a source needs the signed-digest check: its
// scheme signs the body alone (no timestamp, no id) and its event id comes
// from a header, so a captured delivery verifies under any id.
// standard-webhooks signs its id and a timestamp, Stripe a timestamp and
// (by default) a body that holds the id.
func guardsReplays(scheme string, eventID locator) bool {
	switch scheme {
	case signature.SchemeGitHub, signature.SchemeShopify, signature.SchemeHMACSHA256:
		return eventID.header != ""
	}
	return false
}

// signedDigest is the digest of what guardsReplays's schemes sign: the body.
func signedDigest(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

// replayed answers a request whose signed body was accepted before as
// another event: a duplicate, whatever the state of the event its id
// names, so that a captured delivery sent again under a fresh id is
// neither processed again nor re-drives a FAILED or DEAD event.
func (r *Receiver) replayed(req *request, replayOf string) {
	code := req.src.cfg.DuplicateStatus
	if r.duplicate(req, "replayed_body", code, map[string]any{"replay_of": replayOf}) {
		reply(req.c, code, Reply{EventID: req.eventID, Status: "duplicate"})
		duplicatesTotal.WithLabelValues(req.sourceName, "replayed_body").Inc()
		observe(req, code)
	}
}
