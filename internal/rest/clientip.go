package rest

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// TrustedProxies are the networks whose X-Forwarded-For is believed: the
// load balancers or ingress controllers in front of the gateways.
type TrustedProxies []netip.Prefix

// ParseTrustedProxies parses CIDRs (a bare address is a /32 or /128).
func ParseTrustedProxies(cidrs []string) (TrustedProxies, error) {
	var out TrustedProxies
	for _, c := range cidrs {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		if !strings.Contains(c, "/") {
			a, err := netip.ParseAddr(c)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q: not an address or CIDR", c)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: %v", c, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func (t TrustedProxies) trusts(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range t {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ClientIP is the address of the client that sent r. The peer address,
// unless the peer is a trusted proxy: then X-Forwarded-For is read from the
// right, skipping trusted proxies, and the first other address is the
// client (entries left of it are the client's to forge and never used). A
// malformed entry stops the walk at the last trusted hop.
func (t TrustedProxies) ClientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if len(t) == 0 { // the common case: no proxy to believe
		return host
	}
	peer, err := netip.ParseAddr(host)
	if err != nil || !t.trusts(peer) {
		return host
	}
	client := peer
	hops := r.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		parts := strings.Split(hops[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return client.Unmap().String()
			}
			client = a
			if !t.trusts(a) {
				return a.Unmap().String()
			}
		}
	}
	return client.Unmap().String()
}
