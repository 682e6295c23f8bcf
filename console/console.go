package console

import (
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/gin-gonic/gin"
)

// Config configures the console.
type Config struct {
	// Token is the admin token. Empty: the console is not mounted, like the
	// admin API.
	Token string
	// API serves the admin API's routes (/admin/…): the router the admin
	// API is mounted on. The console calls it in-process for everything it
	// shows and does. Required with Token.
	API http.Handler
	// SessionTTL is how long a login lasts. Default 8h.
	SessionTTL time.Duration
	// MaxSessions bounds the sessions kept; past it a login ends the
	// oldest. Default 1000.
	MaxSessions int
	// Logger receives logins and logouts. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock of session expiry. Default time.Now.
	Now func() time.Time
	// TailDuration is how long one audit stream of the live tail lasts
	// before the browser reconnects (resuming where it was). Default 60s.
	TailDuration time.Duration
}

func (cfg Config) withDefaults() Config {
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 8 * time.Hour
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = 1000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.TailDuration <= 0 {
		cfg.TailDuration = time.Minute
	}
	return cfg
}

// Base is the path the console is served under.
const Base = "/console"

const (
	cookieName = "hookstream_console"
	csrfField  = "csrf"
	csrfHeader = "X-CSRF-Token"
)

// Register mounts the console under /console when a token is configured.
func Register(cfg Config) func(gin.IRouter) {
	return func(r gin.IRouter) {
		if cfg.Token == "" {
			return
		}
		if cfg.API == nil {
			panic("console: Config.API is required")
		}
		cfg = cfg.withDefaults()
		c := &console{cfg: cfg, api: &apiClient{h: cfg.API, token: cfg.Token},
			sessions: newSessions(cfg.SessionTTL, cfg.MaxSessions, cfg.Now)}
		g := r.Group(Base, securityHeaders)
		g.GET("/static/:file", serveStatic)
		g.HEAD("/static/:file", serveStatic)
		g.GET("", redirectTo(Base+"/events"))
		g.GET("/", redirectTo(Base+"/events"))
		g.GET("/login", c.loginPage)
		g.POST("/login", sameOrigin, limitForm, c.login)

		in := g.Group("", c.requireSession)
		in.GET("/events", c.eventsPage)
		in.GET("/events/:source/:event_id", c.eventPage)
		in.GET("/customers", c.customersPage)
		in.GET("/customers/skip", c.skipPage)
		in.GET("/replay", c.replayPage)
		in.GET("/replay/batches/:id", c.batchPage)
		in.GET("/tail", c.tailPage)
		in.GET("/overview", c.overviewPage)
		in.GET("/tail/stream", c.tailStream)

		act := in.Group("", sameOrigin, limitForm, c.requireCSRF)
		act.POST("/logout", c.logout)
		act.POST("/customers/unpark", c.unpark)
		act.POST("/events/replay", c.replay)
		act.POST("/replay", c.bulkReplay)
	}
}

type console struct {
	cfg      Config
	api      *apiClient
	sessions *sessions
}

// securityHeaders: the console's pages load only what this server serves
// (the CSP says so to the browser as well), cannot be framed, and are
// not cached (they show event bodies). Referrer-Policy same-origin, not
// no-referrer: under no-referrer a browser sends "Origin: null" with a
// form's POST, which sameOrigin must refuse.
func securityHeaders(c *gin.Context) {
	h := c.Writer.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	if c.Request.Method != http.MethodGet || !isStatic(c.Request.URL.Path) {
		h.Set("Cache-Control", "no-store")
	}
}

func isStatic(path string) bool {
	return len(path) > len(Base+"/static/") && path[:len(Base+"/static/")] == Base+"/static/"
}

func redirectTo(path string) gin.HandlerFunc {
	return func(c *gin.Context) { c.Redirect(http.StatusSeeOther, path) }
}

// sameOrigin refuses a POST another site's page sent: its Origin (or, when
// a browser sends none, its Sec-Fetch-Site) must be this host. A request
// with neither comes from no browser (curl, a script), which CSRF cannot
// use; it still needs the session and its CSRF token. This is what
// protects the login form, which has no session yet.
func sameOrigin(c *gin.Context) {
	if origin := c.GetHeader("Origin"); origin != "" {
		u, err := url.Parse(origin)
		if err != nil || u.Host == "" || u.Host != c.Request.Host {
			refuse(c, http.StatusForbidden, "This request came from another site's page ("+origin+"), so it was refused.")
			return
		}
		return
	}
	if site := c.GetHeader("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		refuse(c, http.StatusForbidden, "This request came from another site's page, so it was refused.")
	}
}

// maxFormBytes bounds a POST's body: the console's forms are a token, or
// a few ids, times and a CSRF token.
const maxFormBytes = 64 << 10

// limitForm reads a POST's form, urlencoded or multipart, from at most
// maxFormBytes of its body: larger is 413. Without it the login, which
// anyone reaches and which a POST without a token passes uncounted by the
// throttle, held up to 10 MB of an urlencoded form in memory (net/http's
// own bound) and a multipart form's file parts whatever their size
// (gin's 32 MiB in memory, the rest in temporary files).
func limitForm(c *gin.Context) {
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, maxFormBytes)
	// ParseForm first: ParseMultipartForm answers ErrNotMultipart for an
	// urlencoded form, not the error of reading it.
	err := c.Request.ParseForm()
	if err == nil {
		err = c.Request.ParseMultipartForm(maxFormBytes)
	}
	var tooLarge *http.MaxBytesError
	switch {
	case err == nil, errors.Is(err, http.ErrNotMultipart):
	case errors.As(err, &tooLarge):
		refuse(c, http.StatusRequestEntityTooLarge, "This form is larger than any of the console's, so it was refused.")
	default:
		refuse(c, http.StatusBadRequest, "This form could not be read: "+err.Error())
	}
}

// requireSession lets through requests with a live session, which it
// puts in the context. Without one a page is sent to the login (an htmx
// request is told to go there) and an action is refused.
func (cs *console) requireSession(c *gin.Context) {
	secret, _ := c.Cookie(cookieName)
	s := cs.sessions.lookup(secret)
	if s != nil {
		c.Set(sessionKey, s)
		return
	}
	if c.Request.Method == http.MethodGet && c.GetHeader("HX-Request") == "" {
		c.Redirect(http.StatusSeeOther, Base+"/login")
		c.Abort()
		return
	}
	c.Header("HX-Redirect", Base+"/login")
	refuse(c, http.StatusUnauthorized, "You are not logged in, or your session has ended. Log in again.")
}

// requireCSRF refuses a state-changing request without its session's
// CSRF token, in the form field csrf or the header X-CSRF-Token.
func (cs *console) requireCSRF(c *gin.Context) {
	token := c.GetHeader(csrfHeader)
	if token == "" {
		token = c.PostForm(csrfField)
	}
	if !sessionOf(c).csrfMatches(token) {
		refuse(c, http.StatusForbidden, "This form is missing its CSRF token or carries another session's, so it was refused. Reload the page and try again.")
	}
}

const sessionKey = "console.session"

func sessionOf(c *gin.Context) *session {
	s, _ := c.Get(sessionKey)
	ses, _ := s.(*session)
	return ses
}

// operator is the session as the admin API's audit records name it.
func operator(s *session) string { return "console session " + s.id }

// refuse answers a plain error page.
func refuse(c *gin.Context, status int, msg string) {
	c.Abort()
	render(c, status, "error", pageData{Title: http.StatusText(status), Error: msg})
}

// failed shows an admin API failure as an error page.
func failed(c *gin.Context, err error) {
	var e *apiError
	if errors.As(err, &e) {
		render(c, e.Status, "error", pageData{Title: http.StatusText(e.Status), Session: sessionOf(c), Error: e.Message + " (" + e.Code + ")"})
		return
	}
	render(c, http.StatusBadGateway, "error", pageData{Title: "Error", Session: sessionOf(c), Error: err.Error()})
}

// pageData is what every page's template gets.
type pageData struct {
	Title string
	Nav   string // which tab is current
	// NoBoost: links and forms load whole pages (htmx's boost is off).
	NoBoost bool
	Session *session
	Flash   string
	Error   string
	Data    any
}

func (p pageData) CSRF() string {
	if p.Session == nil {
		return ""
	}
	return p.Session.csrf
}

func (p pageData) Operator() string {
	if p.Session == nil {
		return ""
	}
	return operator(p.Session)
}

func render(c *gin.Context, status int, page string, data pageData) {
	t := pages[page]
	c.Status(status)
	c.Header("Content-Type", "text/html; charset=utf-8")
	if err := t.ExecuteTemplate(c.Writer, "layout", data); err != nil {
		_ = c.Error(err)
	}
}
