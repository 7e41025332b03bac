package app

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/imkube/imkube/api/protocol"
	"github.com/imkube/imkube/internal/config"
	"github.com/imkube/imkube/internal/media"
	"github.com/imkube/imkube/internal/rest"
)

// Listen opens a TCP listener on addr.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}

// newHTTPServer returns the server of a process's HTTP port: headers within
// 10 s, the whole request (headers and body) within cfg.ReadTimeout, bodies
// of at most cfg.MaxBodyBytes. A WebSocket is no longer an HTTP request once
// upgraded: the gateway replaces the read deadline ReadTimeout set on the
// hijacked connection with its own (auth timeout, then idle timeout) before
// its first read.
func newHTTPServer(h http.Handler, log *slog.Logger, cfg config.HTTP) *http.Server {
	return &http.Server{
		Handler:           limitBody(h, int64(cfg.MaxBodyBytes)),
		ReadHeaderTimeout: min(10*time.Second, cfg.ReadTimeout),
		ReadTimeout:       cfg.ReadTimeout,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// limitBody refuses a declared body over limit with 413 before reading it
// and cuts an undeclared (chunked) one at limit: handlers and the gateway's
// REST proxy then see a read error.
// Uploads to the dev process's media store (media.LocalPrefix) are bounded
// by the size their signed URL names instead.
func limitBody(next http.Handler, limit int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, media.LocalPrefix) {
			next.ServeHTTP(w, r)
			return
		}
		if r.ContentLength > limit {
			w.Header().Set("Connection", "close")
			rest.WriteError(w, rest.Errorf(http.StatusRequestEntityTooLarge, protocol.CodeTooLarge, "request body is over %d bytes", limit))
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, limit)
		}
		next.ServeHTTP(w, r)
	})
}

// ListenTLS is Listen with TLS from a PEM certificate and key file (TLS 1.2+).
// The files are read again when they change, so a rotated certificate (a
// renewed Kubernetes Secret) is used without a restart.
func ListenTLS(addr, certFile, keyFile string) (net.Listener, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("tls: both the certificate and the key file are required")
	}
	r := &certReloader{certFile: certFile, keyFile: keyFile}
	if _, err := r.get(nil); err != nil {
		return nil, err
	}
	ln, err := Listen(addr)
	if err != nil {
		return nil, err
	}
	return tls.NewListener(ln, &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.get}), nil
}

type certReloader struct {
	certFile, keyFile string
	mu                sync.Mutex
	cert              *tls.Certificate
	mod               time.Time
}

func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	st, err := os.Stat(r.certFile)
	if err != nil {
		return nil, fmt.Errorf("tls certificate: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cert != nil && st.ModTime().Equal(r.mod) {
		return r.cert, nil
	}
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		if r.cert != nil {
			return r.cert, nil // keep serving the old one while files are half-written
		}
		return nil, fmt.Errorf("tls: load key pair: %w", err)
	}
	r.cert, r.mod = &c, st.ModTime()
	return r.cert, nil
}
