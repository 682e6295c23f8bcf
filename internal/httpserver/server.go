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
	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	s := &Server{cfg: cfg, done: make(chan struct{})}
	r.GET("/readyz", s.ready)
	r.GET("/metrics", gin.WrapH(promhttp.Handler()))
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
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				status = http.StatusServiceUnavailable
				out[ch.Name] = err.Error()
				return
			}
			out[ch.Name] = "ok"
		}()
	}
	wg.Wait()
	if status != http.StatusOK {
		c.Header("Retry-After", "5")
	}
	c.JSON(status, out)
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
