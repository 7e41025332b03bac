package rest

import (
	"net/http/httptest"
	"testing"
)

func TestClientIPBelievesOnlyTrustedProxies(t *testing.T) {
	trusted, err := ParseTrustedProxies([]string{"10.0.0.0/8", "192.0.2.7"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"no proxy", "203.0.113.5:4000", nil, "203.0.113.5"},
		{"an untrusted peer's header is ignored", "203.0.113.5:4000", []string{"198.51.100.1"}, "203.0.113.5"},
		{"behind a trusted load balancer", "10.1.2.3:4000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"forged entries left of the real client are ignored", "10.1.2.3:4000", []string{"6.6.6.6, 198.51.100.1"}, "198.51.100.1"},
		{"two trusted hops", "10.1.2.3:4000", []string{"198.51.100.1, 192.0.2.7"}, "198.51.100.1"},
		{"several header lines", "10.1.2.3:4000", []string{"6.6.6.6", "198.51.100.1"}, "198.51.100.1"},
		{"all hops trusted", "10.1.2.3:4000", []string{"10.9.9.9"}, "10.9.9.9"},
		{"a malformed entry stops at the last trusted hop", "10.1.2.3:4000", []string{"198.51.100.1, bogus"}, "10.1.2.3"},
		{"trusted peer without header", "10.1.2.3:4000", nil, "10.1.2.3"},
		{"IPv6 client", "10.1.2.3:4000", []string{"2001:db8::1"}, "2001:db8::1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/ws", nil)
			r.RemoteAddr = tt.peer
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := trusted.ClientIP(r); got != tt.want {
				t.Errorf("ClientIP = %q, want %q", got, tt.want)
			}
			if got := TrustedProxies(nil).ClientIP(r); got != r.RemoteAddr[:len(r.RemoteAddr)-5] {
				t.Errorf("without trusted proxies ClientIP = %q, want the peer", got)
			}
		})
	}
	if _, err := ParseTrustedProxies([]string{"10.0.0.0/33"}); err == nil {
		t.Error("a bad CIDR must be an error")
	}
	if _, err := ParseTrustedProxies([]string{"example.com"}); err == nil {
		t.Error("a host name must be an error")
	}
}
