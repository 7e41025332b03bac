package bench

import (
	"context"
	"net"
	"strings"
	"testing"
)

// The generator's connections come from a new loopback source address every
// perAddr connections.
func TestSourceAddrsSpreadConnections(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	remotes := make(chan string, 5)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			remotes <- c.RemoteAddr().(*net.TCPAddr).IP.String()
			c.Close()
		}
	}()
	s := newSourceAddrs(2)
	want := []string{"127.1.0.1", "127.1.0.1", "127.1.0.2", "127.1.0.2", "127.1.0.3"}
	for i, w := range want {
		c, err := s.next().NetDialContext(context.Background(), "tcp", l.Addr().String())
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		c.Close()
		if got := <-remotes; got != w {
			t.Errorf("connection %d came from %s, want %s", i, got, w)
		}
	}
	if n := s.addrsUsed(); n != 3 {
		t.Errorf("addrsUsed = %d, want 3", n)
	}
	if got := sourceAddr(255).String(); got != "127.1.1.0" {
		t.Errorf("sourceAddr(255) = %s, want 127.1.1.0", got)
	}
}

func TestDialFlagsValidate(t *testing.T) {
	ok := dialFlags{rate: 2000, concurrency: 32, perAddr: 20000}
	if lo, hi, err := ephemeralPorts(); err == nil && hi-lo+1 < ok.perAddr {
		ok.perAddr = hi - lo + 1
	}
	if err := ok.validate(); err != nil {
		t.Errorf("validate(%+v) = %v", ok, err)
	}
	for _, bad := range []dialFlags{{rate: -1, concurrency: 1, perAddr: 1}, {rate: 0, concurrency: 0, perAddr: 1}, {rate: 0, concurrency: 1, perAddr: 0}} {
		if err := bad.validate(); err == nil {
			t.Errorf("validate(%+v) accepted it", bad)
		}
	}
	if lo, hi, err := ephemeralPorts(); err == nil {
		err := (&dialFlags{concurrency: 1, perAddr: hi - lo + 2}).validate()
		if err == nil || !strings.Contains(err.Error(), "ip_local_port_range") {
			t.Errorf("-per-addr over the ephemeral range: %v", err)
		}
	}
}

func TestFanoutModes(t *testing.T) {
	for in, want := range map[string]string{"write": "write", "read": "read", "both": "write,read"} {
		got, err := fanoutModes(in)
		if err != nil || strings.Join(got, ",") != want {
			t.Errorf("fanoutModes(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	if _, err := fanoutModes("push"); err == nil {
		t.Error("fanoutModes accepted an unknown mode")
	}
}
