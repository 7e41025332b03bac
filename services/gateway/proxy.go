package gateway

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/imkube/imkube/api/protocol"
	"github.com/imkube/imkube/internal/rest"
)

// ProxyRoutes registers the public REST API on mux by reverse-proxying to the
// user and message services (distributed mode; in dev mode the services'
// handlers are mounted directly).
// guard wraps each proxy's transport with the circuit breaker of the named
// dependency (nil: none).
func ProxyRoutes(mux *http.ServeMux, userURL, messageURL string, trusted rest.TrustedProxies, log *slog.Logger, guard func(resource string, rt http.RoundTripper) http.RoundTripper) error {
	user, err := newProxy(userURL, trusted, log, guard, "dep.user")
	if err != nil {
		return fmt.Errorf("user service url: %w", err)
	}
	msg, err := newProxy(messageURL, trusted, log, guard, "dep.message")
	if err != nil {
		return fmt.Errorf("message service url: %w", err)
	}
	for _, p := range []string{"/api/v1/users", "/api/v1/users/", "/api/v1/sessions", "/api/v1/sessions/", "/api/v1/groups", "/api/v1/groups/",
		"/api/v1/friends", "/api/v1/friends/", "/api/v1/blocks", "/api/v1/blocks/"} {
		mux.Handle(p, user)
	}
	for _, p := range []string{"/api/v1/conversations", "/api/v1/conversations/", "/api/v1/uploads", "/api/v1/media/", "/api/v1/presence", "/api/v1/devices/"} {
		mux.Handle(p, msg)
	}
	return nil
}

// newProxy forwards to raw. The upstream gets exactly one X-Forwarded-For
// entry, the client address as the gateway determined it (trusted proxies'
// headers resolved, anything a client put there dropped): the user
// service's per-IP login throttle keys on it.
func newProxy(raw string, trusted rest.TrustedProxies, log *slog.Logger, guard func(string, http.RoundTripper) http.RoundTripper, resource string) (http.Handler, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("%q is not an absolute http(s) URL", raw)
	}
	p := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(u)
		pr.Out.Host = pr.In.Host
		pr.Out.Header.Set("X-Forwarded-For", trusted.ClientIP(pr.In))
	}}
	p.Transport = &http.Transport{
		Proxy:                 nil,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
	}
	p.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		log.Warn("REST upstream unavailable", "upstream", u.Host, "err", err)
		rest.WriteError(w, rest.Errorf(http.StatusServiceUnavailable, protocol.CodeUnavailable, "service temporarily unavailable; retry"))
	}
	return p, nil
}
