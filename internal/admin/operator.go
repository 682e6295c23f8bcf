package admin

import (
	"context"
	"errors"
	"net/http"
	"regexp"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5"
)

// OperatorHeader names who acts, on the routes that change state (replay,
// unpark): the audit record's reason becomes "admin API: <operator>"
// instead of "admin API". The console sends "console session <id>"; a
// script may send its own name. It is a label the token's holder gives,
// not an authentication: whoever has the token may act as anyone.
const OperatorHeader = "X-Hookstream-Operator"

var operatorPattern = regexp.MustCompile(`^[A-Za-z0-9 ._:@/-]{1,64}$`)

// operatorReason is the reason the audit record of a state change gives;
// a malformed OperatorHeader is answered 400 and reports false.
func operatorReason(c *gin.Context) (string, bool) {
	v, sent := c.Request.Header[http.CanonicalHeaderKey(OperatorHeader)]
	if !sent {
		return "admin API", true
	}
	if len(v) != 1 || !operatorPattern.MatchString(v[0]) {
		fail(c, http.StatusBadRequest, "bad_request", OperatorHeader+" must be 1 to 64 of letters, digits, space and ._:@/-")
		return "", false
	}
	return "admin API: " + v[0], true
}

// checkAuth answers a request the authenticator let through: a script, or
// the console's login, learns whether a token is the admin token, with
// failures counted and throttled as on every admin route.
func checkAuth(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"authenticated": true}) }

// blockerIsStill checks unpark's ?blocker=, the blocking event the caller
// saw (the console names it in its confirmation): when the customer is
// now blocked by another event it answers 409 blocker_changed, so that
// skipping never skips an event the operator was not shown. The check is
// made just before the unpark's own transaction, not inside it: it
// narrows the window from a person's reading time to milliseconds, and
// the audit record names the event actually skipped.
func (a *api) blockerIsStill(c *gin.Context) bool {
	want, asked := c.GetQuery("blocker")
	if !asked {
		return true
	}
	got, err := currentBlocker(c.Request.Context(), a, c.Query("source"), c.Param("customer_id"))
	switch {
	case errors.Is(err, errNoSingleBlock):
		return true // the unpark itself says why: not_parked or ambiguous_customer
	case err != nil:
		fail(c, http.StatusServiceUnavailable, "unavailable", "database unavailable")
		return false
	case got != want:
		fail(c, http.StatusConflict, "blocker_changed", "the customer is now blocked by "+quoteOrNone(got)+", not "+quoteOrNone(want))
		return false
	}
	return true
}

var errNoSingleBlock = errors.New("no single block")

func currentBlocker(ctx context.Context, a *api, source, customer string) (string, error) {
	rows, err := a.cfg.Pool.Query(ctx, `SELECT coalesce(blocking_event_id, '') FROM customer_blocks
WHERE customer_id = $1 AND ($2 = '' OR source = $2) LIMIT 2`, customer, source)
	if err != nil {
		return "", err
	}
	blockers, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", err
	}
	if len(blockers) != 1 {
		return "", errNoSingleBlock
	}
	return blockers[0], nil
}

func quoteOrNone(id string) string {
	if id == "" {
		return "no event (it is draining)"
	}
	return `"` + id + `"`
}
