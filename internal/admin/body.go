package admin

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5"
)

// Bounds of GET /admin/events/{source}/{event_id}/body's ?max_bytes=.
const (
	defaultBodyBytes = 64 << 10
	maxBodyBytes     = 1 << 20
)

// eventBody answers the body an event arrived with, byte for byte, as far
// as the events table keeps it: while the event is FAILED, DEAD or PARKED
// (a later run needs it). A PROCESSED event's body is only in
// hookstream.events, at the partition and offset its row names.
func (a *api) eventBody(c *gin.Context) {
	limit := defaultBodyBytes
	if v := c.Query("max_bytes"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxBodyBytes {
			fail(c, http.StatusBadRequest, "bad_request", "max_bytes must be between 1 and "+strconv.Itoa(maxBodyBytes))
			return
		}
		limit = n
	}
	var size *int
	var body []byte
	var status string
	err := a.cfg.Pool.QueryRow(c.Request.Context(), `SELECT status, length(payload), substring(payload FROM 1 FOR $3)
FROM events WHERE source = $1 AND event_id = $2`, c.Param("source"), c.Param("event_id"), limit).Scan(&status, &size, &body)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		fail(c, http.StatusNotFound, "not_found", "no such event")
		return
	case err != nil:
		fail(c, http.StatusServiceUnavailable, "unavailable", "database unavailable")
		return
	case size == nil:
		fail(c, http.StatusNotFound, "not_found", "the body of a "+status+" event is not kept; it is in hookstream.events at the event's partition and offset")
		return
	}
	truncated := *size > len(body)
	if truncated {
		body = trimPartialRune(body)
	}
	out := gin.H{"source": c.Param("source"), "event_id": c.Param("event_id"), "size": *size, "truncated": truncated}
	if utf8.Valid(body) {
		out["encoding"], out["body"] = "utf-8", string(body)
	} else {
		out["encoding"], out["body"] = "base64", base64.StdEncoding.EncodeToString(body)
	}
	c.JSON(http.StatusOK, out)
}

// trimPartialRune drops an incomplete UTF-8 sequence that a cut left at
// the end, so that a cut text body is still text.
func trimPartialRune(b []byte) []byte {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return b[:i]
			}
			break
		}
	}
	return b
}
