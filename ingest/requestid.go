package ingest

import (
	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
)

const requestIDHeader = "X-Request-Id"

// RequestIDMiddleware takes the request id from X-Request-Id when it is a
// sane token (at most 128 of [A-Za-z0-9._:-]) and generates one (a UUIDv7)
// otherwise, and sets it on the response's X-Request-Id, where RequestID
// reads it. It is the id of the request's log lines; the receiver's audit
// records use requestIDs, which never take the client's.
func RequestIDMiddleware() gin.HandlerFunc {
	return func(c *gin.Context) {
		RequestID(c)
		c.Next()
	}
}

// RequestID returns the request's id: the one already on the response, or a
// new one (from X-Request-Id when valid), which it puts there.
func RequestID(c *gin.Context) string {
	h := c.Writer.Header()
	if id := h.Get(requestIDHeader); id != "" {
		return id
	}
	id := c.GetHeader(requestIDHeader)
	if !validRequestID(id) {
		id = newID()
	}
	h.Set(requestIDHeader, id)
	return id
}

// requestIDs returns the receiver's id for the request, always one the
// server generated, and the client's X-Request-Id when it sent one the
// response echoes ("" otherwise). A client's id is recorded and echoed,
// never the request id of an audit record or part of a key: anyone can
// send any id (docs/design.md, "The receiver's decisions"). When the
// client sent none, the id on the response is the server's, and so the
// request id.
func requestIDs(c *gin.Context) (id, client string) {
	echoed := RequestID(c)
	if sent := c.GetHeader(requestIDHeader); sent == "" || sent != echoed {
		return echoed, ""
	}
	return newID(), echoed
}

// newID is a UUIDv7: unique, and in the order of creation.
func newID() string {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return id.String()
}

func validRequestID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		switch {
		case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9', b == '.', b == '_', b == ':', b == '-':
		default:
			return false
		}
	}
	return true
}
