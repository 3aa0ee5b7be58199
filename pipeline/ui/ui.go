// Package ui serves faultline's web UI: the incidents, each on a chart of
// its service's requests and errors by version with the deploys, the
// detection, the rollback and the resolution marked on it, the suspects
// ranked with their reasons, the DORA keys per environment and service
// with their bands and weekly trend, and each deploy's verdict.
//
// People look at this kind of answer rather than read it, so every page is
// a picture first; and since a picture is only trusted when it can be
// checked, every figure comes with the SQL that reproduces it, the values
// written in as literals for copying. The queries themselves run with
// server-bound parameters (sinks/clickhouse.Query) under readonly=2: the UI
// never builds SQL from input and never writes.
//
// Pages are server-rendered html/template; the charts are drawn by uPlot
// (MIT, assets/LICENSE.uPlot), which is embedded with the rest of the
// assets, so the UI works offline and from a single binary.
package ui

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/faultline-dev/faultline/sinks/clickhouse"
)

// Config is the UI part of faultline's settings (FAULTLINE_UI_*).
type Config struct {
	Listen string `envconfig:"LISTEN" default:"127.0.0.1:8080" desc:"listen address of the web UI (incidents, DORA, deploys); empty turns it off"`
	Token  string `envconfig:"TOKEN" desc:"when set, the web UI requires it as a bearer token or as the basic-auth password (any user name)"`
}

// Validate checks the settings.
func (c *Config) Validate() error {
	if c.Listen == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("FAULTLINE_UI_LISTEN: %q is not host:port: %w", c.Listen, err)
	}
	return nil
}

// BaseURL is the address people reach the UI at, given the address it is
// bound to: an unspecified host (":8080", "0.0.0.0:8080") is named by the
// machine's host name, so links in alerts point somewhere reachable.
func BaseURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
		if h, err := os.Hostname(); err == nil && h != "" {
			host = h
		}
	}
	return "http://" + net.JoinHostPort(host, port)
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// queryTimeout bounds the ClickHouse reads of one page.
const queryTimeout = 20 * time.Second

// Server is the UI's HTTP listener.
type Server struct {
	log    *slog.Logger
	reader *clickhouse.Reader
	pages  *pages
	token  string
	srv    *http.Server
	ln     net.Listener
	now    func() time.Time
}

// New returns a UI reading faultline's database through conn.
func New(cfg Config, conn driver.Conn, database string, log *slog.Logger) (*Server, error) {
	r, err := clickhouse.NewReader(conn, database)
	if err != nil {
		return nil, err
	}
	p, err := parsePages()
	if err != nil {
		return nil, err
	}
	s := &Server{log: log, reader: r, pages: p, token: cfg.Token, now: time.Now}
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 2 * queryTimeout}
	return s, nil
}

// Handler is the UI with its middleware, for tests and embedding.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	assets, _ := fs.Sub(assetFS, "assets")
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(assets)))
	mux.HandleFunc("GET /{$}", s.incidentsPage)
	mux.HandleFunc("GET /incidents/{id}", s.incidentPage)
	mux.HandleFunc("GET /deploys/{id}", s.deployPage)
	mux.HandleFunc("GET /dora", s.doraPage)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, http.StatusNotFound, fmt.Sprintf("nothing at %s", r.URL.Path))
	})
	return s.recoverer(s.guard(headers(mux)))
}

// Listen binds addr and serves until Shutdown.
func (s *Server) Listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("ui listen %s (FAULTLINE_UI_LISTEN): %w", addr, err)
	}
	s.ln = ln
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("ui", "err", err)
		}
	}()
	return nil
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Shutdown stops accepting requests and waits for those in flight.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// headers sets what every answer carries: no script, style or image from
// anywhere but the UI itself (the chart data travels as JSON in a
// non-executed script element), and no framing.
func headers(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}

// guard asks for the token, when one is set, as a bearer token or as the
// basic-auth password (any user name: browsers prompt for basic auth, curl
// and scripts send bearer tokens). Digests are compared in constant time,
// so neither the token's bytes nor its length leak through timing.
func (s *Server) guard(h http.Handler) http.Handler {
	if s.token == "" {
		return h
	}
	want := sha256.Sum256([]byte(s.token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := ""
		auth := r.Header.Get("Authorization")
		switch {
		case len(auth) > 7 && strings.EqualFold(auth[:7], "bearer "):
			got = strings.TrimSpace(auth[7:])
		case len(auth) > 6 && strings.EqualFold(auth[:6], "basic "):
			if b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(auth[6:])); err == nil {
				if _, pass, ok := strings.Cut(string(b), ":"); ok {
					got = pass
				}
			}
		}
		sum := sha256.Sum256([]byte(got))
		if got == "" || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="faultline", charset="UTF-8"`)
			http.Error(w, "faultline UI: missing or wrong token (FAULTLINE_UI_TOKEN), as a bearer token or the basic-auth password", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// recoverer turns a panic in a page into a 500 and a log line rather than
// a dropped connection.
func (s *Server) recoverer(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("ui page panicked", "path", r.URL.Path, "panic", fmt.Sprint(v))
				http.Error(w, "faultline UI: internal error", http.StatusInternalServerError)
			}
		}()
		h.ServeHTTP(w, r)
	})
}

// badRequest is a query parameter the page cannot take.
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }

// fail renders an error page: 400 and 404 say what was wrong; anything
// else is logged and shown as a failed read.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, code int, msg string) {
	if code >= 500 {
		s.log.Error("ui page failed", "path", r.URL.Path, "err", msg)
		msg = "Reading ClickHouse failed; the log has the details."
	}
	s.render(w, r, code, "error", errorView{Code: code, Status: http.StatusText(code), Message: msg})
}

// failErr maps a page's error to its answer.
func (s *Server) failErr(w http.ResponseWriter, r *http.Request, err error) {
	var bad *badRequest
	switch {
	case errors.As(err, &bad):
		s.fail(w, r, http.StatusBadRequest, bad.msg)
	case errors.Is(err, clickhouse.ErrNotFound):
		s.fail(w, r, http.StatusNotFound, err.Error())
	default:
		s.fail(w, r, http.StatusInternalServerError, err.Error())
	}
}

// checkParams refuses query parameters a page does not take, and values
// that cannot be names: it is easier to see a 400 than to wonder why a
// filter did nothing.
func checkParams(q url.Values, allowed ...string) error {
	for k, vs := range q {
		ok := false
		for _, a := range allowed {
			ok = ok || k == a
		}
		if !ok {
			takes := "no query parameters"
			if len(allowed) > 0 {
				takes = strings.Join(allowed, ", ")
			}
			return &badRequest{fmt.Sprintf("unknown query parameter %q: this page takes %s", k, takes)}
		}
		if len(vs) > 1 {
			return &badRequest{fmt.Sprintf("query parameter %q given %d times", k, len(vs))}
		}
	}
	return nil
}

// nameParam reads an environment or service name: at most 200 bytes of
// printable text (the value is bound as a parameter, never spliced, so
// this is about clear answers, not safety).
func nameParam(q url.Values, key string) (string, error) {
	v := q.Get(key)
	if len(v) > 200 {
		return "", &badRequest{fmt.Sprintf("%s: longer than 200 bytes", key)}
	}
	for _, c := range v {
		if c < 0x20 || c == 0x7f || c == '\uFFFD' {
			return "", &badRequest{fmt.Sprintf("%s %q: not a name (control or invalid characters)", key, v)}
		}
	}
	return v, nil
}
