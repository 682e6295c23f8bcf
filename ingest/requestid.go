package ingest

import (
	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
)

const requestIDKey = "hookstream.request_id"

// RequestIDMiddleware takes the request id from X-Request-Id when it is a
// sane token (at most 128 of [A-Za-z0-9._:-]) and generates one otherwise,
// and echoes it in the response's X-Request-Id.
func RequestIDMiddleware() gin.HandlerFunc {
	return func(c *gin.Context) {
		id := c.GetHeader("X-Request-Id")
		if !validRequestID(id) {
			id = uuid.NewString()
		}
		c.Set(requestIDKey, id)
		c.Header("X-Request-Id", id)
		c.Next()
	}
}

// RequestID returns the request's id, generating one when the middleware did
// not run.
func RequestID(c *gin.Context) string {
	if v, ok := c.Get(requestIDKey); ok {
		return v.(string)
	}
	id := c.GetHeader("X-Request-Id")
	if !validRequestID(id) {
		id = uuid.NewString()
	}
	c.Header("X-Request-Id", id)
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
