package ingest

import (
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"
)

// Error codes in {"error":{"code":…}} and the reason of REJECTED audit
// records. They are part of the HTTP contract: clients may branch on them.
const (
	CodeUnknownSource = "unknown_source"
	CodeRateLimited   = "rate_limited"
	// CodeAddressLimited: the client's address ran out of its budget of
	// requests failing before authentication (429).
	CodeAddressLimited = "address_limited"
	// CodeOverloaded: the bodies not verified yet fill their memory
	// budget (503).
	CodeOverloaded           = "overloaded"
	CodeUnsupportedMediaType = "unsupported_media_type"
	// CodeUnsupportedEncoding: a Content-Encoding other than identity
	// (415).
	CodeUnsupportedEncoding = "unsupported_encoding"
	CodeBodyTooLarge        = "body_too_large"
	CodeSignatureInvalid    = "signature_invalid"
	CodeMalformedJSON       = "malformed_json"
	// CodeAmbiguousJSON: a key twice in one object, or one differing only
	// in case from an id\'s key (400; ambiguous.go).
	CodeAmbiguousJSON   = "ambiguous_json"
	CodeInvalidEncoding = "invalid_encoding"
	CodeSchemaViolation = "schema_violation"
	CodeMissingID       = "missing_id"
	CodeInvalidID       = "invalid_id"
	CodeUnavailable     = "unavailable"
	CodeBadRequest      = "bad_request"
)

// ErrorBody is the JSON body of every 4xx and 5xx.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail says what was wrong. Details lists individual problems (one per
// schema violation or missing id); it is empty for signature failures, which
// say nothing that would help a forger.
type ErrorDetail struct {
	Code    string   `json:"code"`
	Message string   `json:"message"`
	Details []string `json:"details,omitempty"`
}

// rejection is a request the receiver refuses with a 4xx or 5xx.
type rejection struct {
	status     int
	code       string
	message    string
	details    []string
	retryAfter int // seconds; 0 = no Retry-After header
	// challenge is the WWW-Authenticate of a 401, which HTTP requires:
	// the source's scheme, and its name as the realm.
	challenge string
}

func (r *rejection) write(c *gin.Context) {
	if r.retryAfter > 0 {
		c.Header("Retry-After", strconv.Itoa(r.retryAfter))
	}
	if r.challenge != "" {
		c.Header("WWW-Authenticate", r.challenge)
	}
	c.JSON(r.status, ErrorBody{Error: ErrorDetail{Code: r.code, Message: r.message, Details: r.details}})
}

func reject(status int, code, message string, details ...string) *rejection {
	return &rejection{status: status, code: code, message: message, details: details}
}

func unavailable(message string, retryAfter int) *rejection {
	return &rejection{status: http.StatusServiceUnavailable, code: CodeUnavailable, message: message, retryAfter: retryAfter}
}
