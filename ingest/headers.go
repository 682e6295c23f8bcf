package ingest

import (
	"net/http"
	"strings"
)

// checkContentEncoding reports why the request's Content-Encoding is
// refused, or "". Only identity is accepted: the body is kept and signed
// byte for byte as sent, and a compressed one would fail its signature
// (a 401) or its JSON (a 400), both misleading.
func checkContentEncoding(h http.Header) string {
	for _, v := range h.Values("Content-Encoding") {
		for tok := range strings.SplitSeq(v, ",") {
			if tok = strings.Trim(tok, " \t"); tok != "" && !strings.EqualFold(tok, "identity") {
				return "Content-Encoding " + quoteName(tok) + " is not supported; send the body uncompressed"
			}
		}
	}
	return ""
}
