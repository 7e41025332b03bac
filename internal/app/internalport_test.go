package app_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/imkube/imkube/internal/app"
	"github.com/imkube/imkube/internal/config"
)

// With an internal port, /metrics, /healthz, /readyz and /debug/pprof are
// served there and nowhere on the client port, which keeps the demo page,
// the SDK, the REST API and /ws.
func TestInternalPortTakesTheProbesAndMetricsOffTheClientPort(t *testing.T) {
	s := startCfg(t, func(c *config.Config) { c.InternalAddr, c.PProf = "127.0.0.1:0", true }, app.Options{})
	if s.InternalURL == s.URL {
		t.Fatalf("internal URL %s is the client port's", s.InternalURL)
	}
	for _, path := range []string{"/metrics", "/healthz", "/readyz", "/debug/pprof/"} {
		if code, _ := get(t, s.URL+path); code != http.StatusNotFound {
			t.Errorf("client port %s: %d, want 404", path, code)
		}
		if code, body := get(t, s.InternalURL+path); code != http.StatusOK {
			t.Errorf("internal port %s: %d %s, want 200", path, code, body)
		}
	}
	if _, body := get(t, s.InternalURL+"/metrics"); !strings.Contains(body, "imkube_") {
		t.Errorf("internal /metrics has no imkube metric:\n%.500s", body)
	}
	if code, _ := get(t, s.URL+"/sdk/imkube.js"); code != http.StatusOK {
		t.Errorf("client port /sdk/imkube.js: %d", code)
	}
	if code, _ := get(t, s.URL+"/api/v1/users/me"); code != http.StatusUnauthorized {
		t.Errorf("client port REST without a token: %d, want 401", code)
	}
}

// pprof is off unless asked for; without an internal port it is served to
// loopback clients of the client port only (the same guard as dev metrics).
func TestPProfOnlyWhenEnabled(t *testing.T) {
	s := startCfg(t, func(c *config.Config) { c.InternalAddr = "127.0.0.1:0" }, app.Options{})
	if code, _ := get(t, s.InternalURL+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("pprof without --pprof: %d, want 404", code)
	}
	d := startCfg(t, func(c *config.Config) { c.PProf = true }, app.Options{})
	if d.InternalURL != d.URL {
		t.Fatalf("no internal port: InternalURL %s, want %s", d.InternalURL, d.URL)
	}
	if code, _ := get(t, d.URL+"/debug/pprof/"); code != http.StatusOK {
		t.Errorf("pprof on the client port from loopback: %d, want 200", code)
	}
}

func TestInternalAddrMustDifferFromAddr(t *testing.T) {
	cfg := config.Defaults(config.RoleGateway, "gateway")
	cfg.Addr, cfg.InternalAddr = ":8080", ":8080"
	if err := cfg.Validate(config.RoleGateway); err == nil || !strings.Contains(err.Error(), "internal-addr (IMKUBE_INTERNAL_ADDR)") {
		t.Fatalf("same address: %v", err)
	}
	cfg.InternalAddr = "nowhere"
	if err := cfg.Validate(config.RoleGateway); err == nil || !strings.Contains(err.Error(), "internal-addr") {
		t.Fatalf("bad address: %v", err)
	}
}
