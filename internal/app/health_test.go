package app_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/imkube/imkube/internal/app"
	"github.com/imkube/imkube/internal/bus"
	"github.com/imkube/imkube/internal/config"
	"github.com/imkube/imkube/internal/telemetry/telemetrytest"
)

// gaugeValues scrapes s's /metrics and returns the values of the gauge
// family name by the value of label ("" for a family without it).
func gaugeValues(t *testing.T, s *app.Server, name, label string) map[string]float64 {
	t.Helper()
	fams, err := telemetrytest.Scrape(s.Metrics())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, m := range fams[name].GetMetric() {
		key := ""
		for _, l := range m.GetLabel() {
			if l.GetName() == label {
				key = l.GetValue()
			}
		}
		out[key] = m.GetGauge().GetValue()
	}
	return out
}

// waitGauges polls until want is a subset of the gauge's values (the health
// loop records at start, then every app.HealthInterval).
func waitGauges(t *testing.T, s *app.Server, name, label string, want map[string]float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := gaugeValues(t, s, name, label)
		ok := true
		for k, v := range want {
			if g, found := got[k]; !found || g != v {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s by %s = %v, want %v", name, label, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A distributed sequence process publishes imkube_process_ready 1 and
// imkube_dependency_up 1 for the MySQL and Redis it uses (the series the
// chart's alerts read), and no RocketMQ series on the in-process bus.
func TestHealthMetricsOfAReadyProcess(t *testing.T) {
	cfg := distributed(t, config.RoleSequence)
	b := bus.NewInProc(bus.InProcOptions{})
	t.Cleanup(func() { b.Close() })
	s, err := app.Start(context.Background(), cfg, []config.Role{config.RoleSequence},
		app.Options{BcryptCost: 4, Adapters: app.NewDistributed(cfg, nil).WithBus(nopClose{b})})
	if err != nil {
		t.Fatal(err)
	}
	defer closeWithin(t, s)
	waitGauges(t, s, "imkube_process_ready", "", map[string]float64{"": 1})
	waitGauges(t, s, "imkube_dependency_up", "dependency", map[string]float64{"mysql": 1, "redis": 1})
	if got := gaugeValues(t, s, "imkube_dependency_up", "dependency"); len(got) != 2 {
		t.Errorf("dependencies %v, want mysql and redis only", got)
	}
}

// A process that waits for MySQL publishes imkube_process_ready 0; once
// running, a MySQL that goes away shows in its dependency checks.
func TestHealthMetricsOfAProcessWithoutItsDatabase(t *testing.T) {
	cfg := distributed(t, config.RoleUser)
	mc, err := mysql.ParseDSN(cfg.MySQL.DSN)
	if err != nil {
		t.Fatal(err)
	}
	hold, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := hold.Addr().String()
	hold.Close() // connection refused
	waiting := cfg
	wc := *mc
	wc.Addr = down
	waiting.MySQL.DSN = wc.FormatDSN()
	w, err := app.Start(context.Background(), waiting, []config.Role{config.RoleUser}, app.Options{BcryptCost: 4, WaitForDependencies: true})
	if err != nil {
		t.Fatalf("start with the database down: %v", err)
	}
	defer closeWithin(t, w)
	waitGauges(t, w, "imkube_process_ready", "", map[string]float64{"": 0})

	// A running user process behind a proxy to MySQL that is then cut.
	p := newCuttableProxy(t, mc.Addr)
	cfg.MySQL.DSN = func() string { c := *mc; c.Addr = p.addr; return c.FormatDSN() }()
	s, err := app.Start(context.Background(), cfg, []config.Role{config.RoleUser}, app.Options{BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer closeWithin(t, s)
	waitGauges(t, s, "imkube_dependency_up", "dependency", map[string]float64{"mysql": 1})
	if st := s.DependencyStatus(t.Context()); len(st) != 1 || st["mysql"] != nil {
		t.Fatalf("dependency status %v, want mysql reachable only", st)
	}
	p.cut()
	if st := s.DependencyStatus(t.Context()); st["mysql"] == nil {
		t.Fatalf("dependency status %v with MySQL cut off, want an error for mysql", st)
	}
}

// cuttableProxy forwards TCP to a backend until cut, then refuses and
// closes every connection.
type cuttableProxy struct {
	addr  string
	ln    net.Listener
	conns chan net.Conn
}

func newCuttableProxy(t *testing.T, backend string) *cuttableProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cuttableProxy{addr: ln.Addr().String(), ln: ln, conns: make(chan net.Conn, 1024)}
	t.Cleanup(p.cut)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", backend)
			if err != nil {
				c.Close()
				continue
			}
			p.conns <- c
			p.conns <- u
			go func() { defer u.Close(); copyAndClose(u, c) }()
			go func() { defer c.Close(); copyAndClose(c, u) }()
		}
	}()
	return p
}

func copyAndClose(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *cuttableProxy) cut() {
	p.ln.Close()
	for {
		select {
		case c := <-p.conns:
			c.Close()
		default:
			return
		}
	}
}
