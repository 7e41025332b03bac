package rocketmq

import (
	"context"
	"net"
	"strings"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
)

// dnsResolver turns host:port name server addresses into ip:port ones. The
// RocketMQ client accepts only IP addresses ("IP addr error"), while in
// Kubernetes name servers are Service names. It resolves on every call, so
// the client's periodic refresh follows a name server that moved.
type dnsResolver struct {
	addrs  []string
	lookup func(ctx context.Context, host string) ([]string, error)
}

var _ primitive.NsResolver = (*dnsResolver)(nil)

func newDNSResolver(addrs []string) *dnsResolver {
	return &dnsResolver{addrs: addrs, lookup: net.DefaultResolver.LookupHost}
}

// Resolve returns ip:port for every address that resolves; an empty result
// makes the client report "no name server addr found".
func (r *dnsResolver) Resolve() []string {
	var out []string
	for _, a := range r.addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			continue
		}
		if net.ParseIP(host) != nil {
			out = append(out, a)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ips, err := r.lookup(ctx, host)
		cancel()
		if err != nil {
			continue
		}
		for _, ip := range ips {
			out = append(out, net.JoinHostPort(ip, port))
		}
	}
	return out
}

func (r *dnsResolver) Description() string {
	return "DNS resolver of " + strings.Join(r.addrs, ";")
}
