package ingest

import (
	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
)

const requestIDHeader = "X-Request-Id"

// RequestIDMiddleware takes the request id from X-Request-Id when it is a
// sane token (at most 128 of [A-Za-z0-9._:-]) and generates one otherwise,
// and sets it on the response's X-Request-Id, where RequestID reads it.
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
		id = uuid.NewString()
	}
	h.Set(requestIDHeader, id)
	return id
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
