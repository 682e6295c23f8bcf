package console

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

func (cs *console) loginPage(c *gin.Context) {
	if secret, _ := c.Cookie(cookieName); cs.sessions.lookup(secret) != nil {
		c.Redirect(http.StatusSeeOther, Base+"/events")
		return
	}
	render(c, http.StatusOK, "login", pageData{Title: "Log in"})
}

// login checks the token by asking the admin API (GET /admin/auth) on the
// browser's behalf: a wrong token is refused, logged, counted and
// throttled per client address exactly as a wrong bearer token is, by the
// same throttle, so the login form is no way around it. The token is read
// from the POSTed form only, never from the URL.
func (cs *console) login(c *gin.Context) {
	err := cs.api.call(c.Request, c.PostForm("token"), "", http.MethodGet, "/admin/auth", nil, http.StatusOK, nil)
	var e *apiError
	switch {
	case err == nil:
	case errors.As(err, &e) && e.Status == http.StatusUnauthorized:
		render(c, http.StatusUnauthorized, "login", pageData{Title: "Log in", Error: "That is not the admin token."})
		return
	case errors.As(err, &e) && e.Status == http.StatusTooManyRequests:
		c.Header("Retry-After", e.RetryAfter)
		render(c, http.StatusTooManyRequests, "login", pageData{Title: "Log in",
			Error: "Too many failed logins from your address: try again in " + e.RetryAfter + " s."})
		return
	default:
		render(c, http.StatusServiceUnavailable, "login", pageData{Title: "Log in", Error: "The admin API did not answer: " + err.Error()})
		return
	}
	if old, _ := c.Cookie(cookieName); old != "" {
		cs.sessions.end(old)
	}
	s, secret := cs.sessions.start()
	cs.setCookie(c, secret, s.expires)
	cs.cfg.Logger.Info("console: logged in", "session", s.id, "client", c.Request.RemoteAddr, "expires", s.expires.UTC().Format(time.RFC3339))
	c.Redirect(http.StatusSeeOther, Base+"/events")
}

func (cs *console) logout(c *gin.Context) {
	secret, _ := c.Cookie(cookieName)
	cs.sessions.end(secret)
	cs.setCookie(c, "", time.Time{})
	cs.cfg.Logger.Info("console: logged out", "session", sessionOf(c).id)
	c.Redirect(http.StatusSeeOther, Base+"/login")
}

// setCookie sets the session cookie (value "" deletes it): HttpOnly, so
// no script reads it; SameSite=Strict, so no other site's page sends it;
// Secure when the browser reached us over TLS (directly, or through a
// proxy that says so: a client that claims https falsely only keeps its
// own browser from sending the cookie back over plain HTTP); scoped to
// the console's path; expiring with the session.
func (cs *console) setCookie(c *gin.Context, value string, expires time.Time) {
	ck := &http.Cookie{Name: cookieName, Value: value, Path: Base, HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: c.Request.TLS != nil || strings.EqualFold(c.GetHeader("X-Forwarded-Proto"), "https")}
	if value == "" {
		ck.MaxAge = -1
	} else {
		ck.Expires = expires.UTC()
		ck.MaxAge = int(expires.Sub(cs.cfg.Now()).Seconds())
		if ck.MaxAge < 1 {
			ck.MaxAge = 1
		}
	}
	http.SetCookie(c.Writer, ck)
}
