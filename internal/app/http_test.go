package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imkube/imkube/internal/config"
)

func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	c, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(c)
	return certFile, keyFile, pool
}

func TestServesTLSWithHealthEndpoints(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t, t.TempDir())
	ln, err := ListenTLS("127.0.0.1:0", certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	srv := newHTTPServer(mux, slog.New(slog.NewTextHandler(io.Discard, nil)), config.Defaults(config.RoleGateway, "gw").HTTP)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 5 * time.Second}
	resp, err := client.Get("https://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatalf("https: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil {
		t.Fatalf("status %d, tls %v", resp.StatusCode, resp.TLS != nil)
	}
	// Plain HTTP to the TLS port never reaches the handler.
	if resp, err := http.Get("http://" + ln.Addr().String() + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP was served on the TLS port")
		}
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if err := <-done; err != http.ErrServerClosed {
		t.Fatalf("serve: %v", err)
	}
	if _, err := ListenTLS("127.0.0.1:0", filepath.Join(t.TempDir(), "missing.crt"), keyFile); err == nil {
		t.Fatal("a missing certificate was accepted")
	}
}

func TestDevMetricsAreServedToLoopbackClientsOnly(t *testing.T) {
	s, err := StartDev(context.Background(), "0.0.0.0:0", t.TempDir(), Options{BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(s.URL, "http://"))
	get := func(host string) int {
		resp, err := http.Get("http://" + net.JoinHostPort(host, port) + "/metrics")
		if err != nil {
			t.Fatalf("GET /metrics via %s: %v", host, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("127.0.0.1"); code != http.StatusOK {
		t.Fatalf("/metrics from loopback: %d, want 200", code)
	}
	// From another address of this machine the request arrives from that
	// address, as from another machine.
	external := ""
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
			external = ipn.IP.String()
			break
		}
	}
	if external != "" {
		if code := get(external); code != http.StatusNotFound {
			t.Fatalf("/metrics from %s: %d, want 404", external, code)
		}
	}
	// And the handler itself, whatever this machine's interfaces.
	for _, tt := range []struct {
		give string
		want int
	}{
		{give: "127.0.0.1:5000", want: http.StatusOK},
		{give: "[::1]:5000", want: http.StatusOK},
		{give: "203.0.113.7:5000", want: http.StatusNotFound},
		{give: "[2001:db8::1]:5000", want: http.StatusNotFound},
		{give: "garbage", want: http.StatusNotFound},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/metrics", nil)
		req.RemoteAddr = tt.give
		loopbackOnly(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {})).ServeHTTP(rec, req)
		if rec.Code != tt.want {
			t.Errorf("client %s: %d, want %d", tt.give, rec.Code, tt.want)
		}
	}
}
