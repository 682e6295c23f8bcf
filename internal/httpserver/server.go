// Package httpserver runs hookstream's HTTP listener: the routes components
// register, plus /healthz, /readyz, /metrics and the API documentation
// (/openapi.json, /docs: internal/apidocs), with a draining shutdown.
package httpserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hookstream/hookstream/ingest"
	"github.com/hookstream/hookstream/internal/apidocs"
	"github.com/hookstream/hookstream/internal/redact"
)

// Check is one readiness dependency.
type Check struct {
	Name  string
	Check func(ctx context.Context) error
}

// Config configures a Server.
type Config struct {
	// Addr to listen on. Default ":8080".
	Addr string
	// Routes registers component routes (for example ingest.Receiver.Register).
	Routes []func(gin.IRouter)
	// Ready lists what /readyz checks; each check gets ReadyTimeout.
	Ready []Check
	// ReadyTimeout bounds each readiness check. Default 2s.
	ReadyTimeout time.Duration
	// ReadyDetail makes /readyz show a failing check's error text
	// (redacted); without it a failing check shows only "unavailable",
	// and its error is logged. Default false: the raw error of a
	// dependency (host names, ports, driver messages) is for operators,
	// so only a listener for them (the admin listener) sets it.
	ReadyDetail bool
	// NoMetrics leaves out /metrics, for a public listener whose metrics
	// are served on the admin listener. Default false.
	NoMetrics bool
	// MaxHeaderBytes bounds request headers; larger requests get 431.
	// Default 64 KiB.
	MaxHeaderBytes int
	Logger         *slog.Logger
}

// Server is the HTTP listener.
type Server struct {
	cfg     Config
	srv     *http.Server
	ln      net.Listener
	done    chan struct{}
	serveMu sync.Mutex
	err     error

	readyMu   sync.Mutex
	lastReady map[string]string // per check: its last error, "" when ok
}

// New builds the router.
func New(cfg Config) *Server {
	if cfg.Addr == "" {
		cfg.Addr = ":8080"
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 2 * time.Second
	}
	if cfg.MaxHeaderBytes == 0 {
		cfg.MaxHeaderBytes = 64 << 10
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(gin.CustomRecoveryWithWriter(nil, func(c *gin.Context, err any) {
		cfg.Logger.Error("panic in handler", "path", c.FullPath(), "panic", fmt.Sprint(err))
		c.AbortWithStatusJSON(http.StatusInternalServerError, ingest.ErrorBody{Error: ingest.ErrorDetail{Code: "internal", Message: "internal error"}})
	}))
	r.Use(ingest.RequestIDMiddleware())
	r.NoRoute(func(c *gin.Context) {
		c.JSON(http.StatusNotFound, ingest.ErrorBody{Error: ingest.ErrorDetail{Code: "not_found", Message: "no route " + c.Request.Method + " " + c.Request.URL.Path}})
	})
	r.HandleMethodNotAllowed = true
	r.NoMethod(func(c *gin.Context) {
		c.JSON(http.StatusMethodNotAllowed, ingest.ErrorBody{Error: ingest.ErrorDetail{Code: "method_not_allowed", Message: c.Request.Method + " is not allowed on " + c.Request.URL.Path}})
	})
	// Ids may hold any character, "/" included, so the admin API's
	// /admin/events/{source}/{event_id} takes them percent-encoded (%2F):
	// routes match the path as sent and parameters are unescaped after.
	r.UseRawPath = true
	r.UnescapePathValues = true
	healthz := func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) }
	s := &Server{cfg: cfg, done: make(chan struct{}), lastReady: map[string]string{}}
	// HEAD as well as GET: probes and monitors that ask with HEAD get
	// the status without the body.
	r.GET("/healthz", healthz)
	r.HEAD("/healthz", healthz)
	r.GET("/readyz", s.ready)
	r.HEAD("/readyz", s.ready)
	if !cfg.NoMetrics {
		r.GET("/metrics", gin.WrapH(promhttp.Handler()))
	}
	apidocs.Register(r)
	for _, reg := range cfg.Routes {
		reg(r)
	}
	s.srv = &http.Server{
		Handler:           r,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	return s
}

func (s *Server) ready(c *gin.Context) {
	status := http.StatusOK
	out := gin.H{}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, ch := range s.cfg.Ready {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(c.Request.Context(), s.cfg.ReadyTimeout)
			defer cancel()
			err := ch.Check(ctx)
			s.noteReady(ch.Name, err)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				out[ch.Name] = "ok"
			case s.cfg.ReadyDetail:
				status = http.StatusServiceUnavailable
				out[ch.Name] = redact.Text(err.Error())
			default:
				status = http.StatusServiceUnavailable
				out[ch.Name] = "unavailable"
			}
		}()
	}
	wg.Wait()
	if status != http.StatusOK {
		c.Header("Retry-After", "5")
	}
	c.JSON(status, out)
}

// noteReady logs a check's failure, or its recovery, when its state
// changes: the public /readyz does not show the error, and a probe every
// few seconds would otherwise log the same error again and again.
func (s *Server) noteReady(name string, err error) {
	msg := ""
	if err != nil {
		msg = redact.Text(err.Error())
	}
	s.readyMu.Lock()
	last, seen := s.lastReady[name]
	s.lastReady[name] = msg
	s.readyMu.Unlock()
	switch {
	case msg == last && (seen || msg == ""):
	case msg != "":
		s.cfg.Logger.Warn("readiness check failed", "check", name, "error", msg)
	default:
		s.cfg.Logger.Info("readiness check passes again", "check", name)
	}
}

// Start listens and serves in the background; it returns once the listener
// is bound, so Addr is known.
func (s *Server) Start(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("http: listen on %s: %w", s.cfg.Addr, err)
	}
	s.ln = ln
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.serveMu.Lock()
			s.err = err
			s.serveMu.Unlock()
			s.cfg.Logger.Error("http server stopped", "error", err)
		}
	}()
	return nil
}

// Addr is the bound address (useful with port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Handler is the router, for in-process tests.
func (s *Server) Handler() http.Handler { return s.srv.Handler }

// Stop stops accepting connections and waits, until ctx ends, for in-flight
// requests to finish — each of which waits for its produce — so that every
// request that got in gets its true answer.
func (s *Server) Stop(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if s.ln != nil {
		<-s.done
	}
	return err
}

// Stopped is closed when the server has stopped serving.
func (s *Server) Stopped() <-chan struct{} { return s.done }
