package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Connecting many clients: `imkube bench conns -conns 100000` and the
// 10,000-member fan-out. The generator spreads the source addresses of its
// connections over 127.0.0.0/8 (127.1.0.1, 127.1.0.2, ...: -per-addr
// connections each), so it is not bound by the ~28,000 ephemeral ports of one
// source address towards the server's address and port, dials at a bounded
// rate with a bounded number of handshakes in flight, and raises
// RLIMIT_NOFILE for itself and the servers it starts (they inherit it).

// dialFlags are the connection flags of the side-by-side scenarios.
type dialFlags struct {
	rate        int // connections per second (0: as fast as the handshakes go)
	concurrency int // handshakes in flight
	perAddr     int // connections per source address
}

func (f *dialFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&f.rate, "dial-rate", 2000, "connections opened per second at most (0: no bound)")
	fs.IntVar(&f.concurrency, "dial-concurrency", 32, "connection handshakes in flight at most")
	fs.IntVar(&f.perAddr, "per-addr", 20000, "connections per source address (127.1.0.1, 127.1.0.2, ... on loopback); at most the ephemeral port range")
}

func (f *dialFlags) validate() error {
	if f.rate < 0 || f.concurrency < 1 || f.perAddr < 1 {
		return fmt.Errorf("bench: -dial-rate (%d) must be >= 0, -dial-concurrency (%d) and -per-addr (%d) >= 1", f.rate, f.concurrency, f.perAddr)
	}
	if lo, hi, err := ephemeralPorts(); err == nil && f.perAddr > hi-lo+1 {
		return fmt.Errorf("bench: -per-addr %d exceeds the %d ephemeral ports of net.ipv4.ip_local_port_range (%d-%d)", f.perAddr, hi-lo+1, lo, hi)
	}
	return nil
}

// ephemeralPorts reads net.ipv4.ip_local_port_range.
func ephemeralPorts() (lo, hi int, err error) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, errors.New("bench: malformed ip_local_port_range")
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, err
	}
	return lo, hi, nil
}

// sourceAddrs hands out WebSocket dialers bound to loopback source
// addresses, perAddr connections each. One per run: a run never reuses an
// address, so connections of a previous system still in TIME_WAIT never
// collide with new ones.
type sourceAddrs struct {
	perAddr int
	n       atomic.Int64
	mu      sync.Mutex
	dialers map[int64]*websocket.Dialer
}

func newSourceAddrs(perAddr int) *sourceAddrs {
	return &sourceAddrs{perAddr: perAddr, dialers: map[int64]*websocket.Dialer{}}
}

// addr returns the i-th source address: 127.1.0.1, 127.1.0.2, ...
func sourceAddr(i int64) net.IP {
	a := i + 1
	return net.IPv4(127, byte(1+a>>16), byte(a>>8), byte(a))
}

// next returns the dialer of the next connection.
func (s *sourceAddrs) next() *websocket.Dialer {
	a := (s.n.Add(1) - 1) / int64(s.perAddr)
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.dialers[a]
	if d == nil {
		nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: sourceAddr(a)}, Timeout: 30 * time.Second}
		d = &websocket.Dialer{HandshakeTimeout: 30 * time.Second, ReadBufferSize: 1024, WriteBufferSize: 1024, NetDialContext: nd.DialContext}
		s.dialers[a] = d
	}
	return d
}

// addrsUsed is the number of source addresses handed out so far.
func (s *sourceAddrs) addrsUsed() int64 {
	n := s.n.Load()
	return (n + int64(s.perAddr) - 1) / int64(s.perAddr)
}

// dialAll connects every user of users to s, at most f.concurrency
// handshakes in flight and f.rate per second. onPayload(i) is the payload
// handler of user i's connection. conns[i] is nil where the dial failed;
// failed counts them and firstErr is the first failure.
func dialAll(ctx context.Context, env *runEnv, sys system, s *server, users []string,
	onPayload func(i int) func([]byte)) (conns []*benchConn, failed int, firstErr error) {
	f := env.dial
	conns = make([]*benchConn, len(users))
	var mu sync.Mutex
	sem := make(chan struct{}, f.concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for i, u := range users {
		if f.rate > 0 {
			if wait := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(f.rate))); wait > 0 {
				time.Sleep(wait)
			}
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return conns, failed + len(users) - i, ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := sys.dial(ctx, env.addrs.next(), s, u, onPayload(i))
			if err != nil {
				mu.Lock()
				failed++
				if firstErr == nil {
					firstErr = fmt.Errorf("connection %d of %d: %w", i+1, len(users), err)
				}
				mu.Unlock()
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	return conns, failed, firstErr
}

// closeAll closes the connections dialAll opened, a few at a time.
func closeAll(conns []*benchConn) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for _, c := range conns {
		if c == nil {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() { defer func() { <-sem; wg.Done() }(); c.close() }()
	}
	wg.Wait()
}

// systemLimits describes the limits that bound how many connections this
// machine takes: open files, ephemeral ports, accept backlog, conntrack.
func systemLimits() string {
	read := func(name string) string {
		b, err := os.ReadFile("/proc/sys/" + name)
		if err != nil {
			return "-"
		}
		return strings.Join(strings.Fields(string(b)), "-")
	}
	return fmt.Sprintf("RLIMIT_NOFILE %s, fs.nr_open %s, net.ipv4.ip_local_port_range %s, net.core.somaxconn %s, nf_conntrack %s of %s",
		noFileLimit(), read("fs/nr_open"), read("net/ipv4/ip_local_port_range"), read("net/core/somaxconn"),
		read("net/netfilter/nf_conntrack_count"), read("net/netfilter/nf_conntrack_max"))
}
