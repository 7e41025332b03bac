package gateway_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/imkube/imkube/internal/rest"
	"github.com/imkube/imkube/services/gateway"
)

// The user service throttles logins per client address: behind a trusted
// load balancer the gateway forwards the real client's address, and never
// what a client wrote into X-Forwarded-For itself.
func TestProxyForwardsTheClientAddressTheGatewayDetermined(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Header.Get("X-Forwarded-For"))
	}))
	defer upstream.Close()
	trusted, err := rest.ParseTrustedProxies([]string{"10.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	noGuard := func(_ string, rt http.RoundTripper) http.RoundTripper { return rt }
	if err := gateway.ProxyRoutes(mux, upstream.URL, upstream.URL, trusted, slog.New(slog.DiscardHandler), noGuard); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ peer, xff, want string }{
		{"203.0.113.5:1000", "", "203.0.113.5"},
		{"203.0.113.5:1000", "6.6.6.6", "203.0.113.5"},             // a client's own header is dropped
		{"10.1.1.1:1000", "6.6.6.6, 198.51.100.9", "198.51.100.9"}, // the load balancer's entry
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", "/api/v1/users/me", nil)
		r.RemoteAddr = tt.peer
		if tt.xff != "" {
			r.Header.Set("X-Forwarded-For", tt.xff)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		if got := w.Body.String(); got != tt.want {
			t.Errorf("peer %s, X-Forwarded-For %q: upstream saw %q, want %q", tt.peer, tt.xff, got, tt.want)
		}
	}
}

// Every public REST path reaches the service that serves it.
func TestProxySendsEachAPIPathToItsService(t *testing.T) {
	user := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "user") }))
	defer user.Close()
	msg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "message") }))
	defer msg.Close()
	mux := http.NewServeMux()
	noGuard := func(_ string, rt http.RoundTripper) http.RoundTripper { return rt }
	if err := gateway.ProxyRoutes(mux, user.URL, msg.URL, nil, slog.New(slog.DiscardHandler), noGuard); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ give, want string }{
		{"POST /api/v1/friends/requests", "user"},
		{"POST /api/v1/friends/requests/1/accept", "user"},
		{"GET /api/v1/friends", "user"},
		{"DELETE /api/v1/friends/7", "user"},
		{"PUT /api/v1/blocks/7", "user"},
		{"GET /api/v1/blocks", "user"},
		{"POST /api/v1/sessions/logout", "user"},
		{"DELETE /api/v1/sessions/abc", "user"},
		{"POST /api/v1/users/me/password", "user"},
		{"GET /api/v1/conversations", "message"},
	}
	for _, tt := range tests {
		method, path, _ := strings.Cut(tt.give, " ")
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest(method, path, nil))
		if got := w.Body.String(); got != tt.want {
			t.Errorf("%s went to %q, want %q", tt.give, got, tt.want)
		}
	}
}
