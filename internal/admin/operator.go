package admin

import (
	"net/http"
	"regexp"

	"github.com/gin-gonic/gin"
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
