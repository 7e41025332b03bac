package app_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/imkube/imkube/internal/app"
	"github.com/imkube/imkube/internal/auth"
	"github.com/imkube/imkube/internal/bus"
	"github.com/imkube/imkube/internal/config"
	"github.com/imkube/imkube/internal/flow"
	"github.com/imkube/imkube/internal/imtest"
	"github.com/imkube/imkube/internal/mysqltest"
	"github.com/imkube/imkube/internal/testenv"
	"github.com/imkube/imkube/services/sequence"
)

func token() string {
	b := make([]byte, 5)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// distributed returns a valid configuration of role on the real MySQL and
// Redis of hack/deps.sh, with a fresh database and key prefixes of its own.
func distributed(t *testing.T, role config.Role) config.Config {
	t.Helper()
	dsn := mysqltest.NewDatabase(t)
	c := config.Defaults(role, "test-"+token())
	c.Addr = "127.0.0.1:0"
	c.MySQL.DSN = dsn
	c.Redis.Addr = testenv.Require(t, "IMKUBE_REDIS_ADDR")
	c.Redis.Prefix = "apptest:" + token() + ":"
	c.Sequence.RedisPrefix = "apptest:seq:" + token() + ":"
	c.Sequence.Sections = 32
	c.RocketMQ.NameServers = "127.0.0.1:1" // roles under test here use the in-process bus
	key := filepath.Join(t.TempDir(), "jwt.key")
	if err := os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Auth.JWTKeyFile = key
	c.Flow.LogDir = t.TempDir()
	c.Message.SequenceURL = "http://127.0.0.1:1"
	c.Gateway.UserURL, c.Gateway.MessageURL = "http://127.0.0.1:1", "http://127.0.0.1:1"
	return c
}

// nopClose shares one in-process bus between two processes of a test (each
// closes its adapters; the bus is closed by the test).
type nopClose struct{ *bus.InProc }

func (nopClose) Close() error { return nil }

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func closeWithin(t *testing.T, s *app.Server) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("close: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the process did not stop within 30s")
	}
}

// The sequence role on real Redis and MySQL: it serves POST /v1/seq to
// callers with the internal token (and nothing to others), is
// ready, exports the imkube_sequence_* metrics the dashboards query, and
// stops cleanly.
func TestSequenceRoleServesExportsMetricsAndShutsDown(t *testing.T) {
	cfg := distributed(t, config.RoleSequence)
	s, err := app.Start(context.Background(), cfg, []config.Role{config.RoleSequence}, app.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Components(); !slices.Equal(got, []string{"sequence"}) {
		t.Fatalf("components %v, want [sequence]", got)
	}
	anon, err := sequence.NewClient(sequence.ClientConfig{URL: s.URL}, sequence.ClientDeps{})
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	if _, err := anon.Allocate(context.Background(), []sequence.Request{{Key: "c:run", Count: 1}}); err == nil || !strings.Contains(err.Error(), "refused the internal token") {
		t.Fatalf("a call without the internal token: err = %v, want refused", err)
	}
	keys, err := auth.LoadKeys(cfg.Auth.JWTKeyFile, 0)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := sequence.NewClient(sequence.ClientConfig{URL: s.URL, Token: keys.InternalToken()}, sequence.ClientDeps{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range 3 { // the refused call above allocated nothing: values start at 1
		got, err := cl.Allocate(context.Background(), []sequence.Request{{Key: "c:run", Count: 2}})
		if err != nil {
			t.Fatal(err)
		}
		if got[0].First != int64(2*i+1) {
			t.Fatalf("call %d got %+v, want first %d", i, got[0], 2*i+1)
		}
	}
	if code, body := get(t, s.URL+"/readyz"); code != 200 {
		t.Fatalf("readyz %d %s", code, body)
	}
	_, metrics := get(t, s.URL+"/metrics")
	for _, m := range []string{"imkube_sequence_allocations_total"} {
		if !strings.Contains(metrics, m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	closeWithin(t, s)
}

// The user role mounts the REST API behind flow control: a flow rule on the
// "rest" resource in the Sentinel rules file limits it (429 RATE_LIMITED
// with Retry-After), while health and metrics stay reachable.
func TestUserRoleGuardsREST(t *testing.T) {
	cfg := distributed(t, config.RoleUser)
	rules := filepath.Join(t.TempDir(), "sentinel-rules.json")
	r := flow.DefaultRules()
	var one []map[string]any
	json.Unmarshal([]byte(`[{"resource":"rest","tokenCalculateStrategy":0,"controlBehavior":0,"threshold":2,"statIntervalInMs":60000}]`), &one)
	b, _ := json.Marshal(r)
	var m map[string]any
	json.Unmarshal(b, &m)
	m["flow"] = append(m["flow"].([]any), one[0])
	b, _ = json.Marshal(m)
	os.WriteFile(rules, b, 0o600)
	cfg.Flow.RulesFile = rules
	s, err := app.Start(context.Background(), cfg, []config.Role{config.RoleUser}, app.Options{BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer closeWithin(t, s)
	defer flow.ClearRules()
	api := imtest.NewAPI(s.URL)
	var limited bool
	for i := range 6 {
		resp, err := http.Post(s.URL+"/api/v1/users", "application/json", strings.NewReader(`{"username":"u`+token()+`","password":"secret-password"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			if resp.Header.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
			limited = true
			break
		}
		if i > 3 {
			break
		}
	}
	if !limited {
		t.Fatal("REST requests were not guarded: no 429 past the flow rule's threshold")
	}
	if code, _ := get(t, s.URL+"/healthz"); code != 200 {
		t.Fatalf("healthz %d", code)
	}
	_ = api
}

// The message and gateway roles on real MySQL and Redis (bus in-process):
// the gateway proxies REST to the user and message services, the message
// service consumes and stores, /readyz names the dependency.
func TestMessageAndGatewayRolesRunWhatTheyShould(t *testing.T) {
	ucfg := distributed(t, config.RoleUser)
	users, err := app.Start(context.Background(), ucfg, []config.Role{config.RoleUser}, app.Options{BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer closeWithin(t, users)

	seqCfg := distributed(t, config.RoleSequence)
	seqCfg.MySQL.DSN = ucfg.MySQL.DSN
	seq, err := app.Start(context.Background(), seqCfg, []config.Role{config.RoleSequence}, app.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer closeWithin(t, seq)

	b := bus.NewInProc(bus.InProcOptions{})
	defer b.Close()
	mcfg := distributed(t, config.RoleMessage)
	mcfg.MySQL.DSN, mcfg.Auth.JWTKeyFile, mcfg.Message.SequenceURL = ucfg.MySQL.DSN, ucfg.Auth.JWTKeyFile, seq.URL
	msgs, err := app.Start(context.Background(), mcfg, []config.Role{config.RoleMessage},
		app.Options{Adapters: app.NewDistributed(mcfg, nil).WithBus(nopClose{b})})
	if err != nil {
		t.Fatal(err)
	}
	defer closeWithin(t, msgs)
	if got := msgs.Components(); !slices.Equal(got, []string{"message"}) {
		t.Fatalf("components %v", got)
	}

	gcfg := distributed(t, config.RoleGateway)
	gcfg.Redis.Prefix, gcfg.Auth.JWTKeyFile = mcfg.Redis.Prefix, ucfg.Auth.JWTKeyFile
	gcfg.Gateway.UserURL, gcfg.Gateway.MessageURL = users.URL, msgs.URL
	gcfg.Gateway.ID = "gw-" + token()
	gcfg.Gateway.PingInterval = 100 * time.Millisecond // the default would ping every 20 s
	gw, err := app.Start(context.Background(), gcfg, []config.Role{config.RoleGateway},
		app.Options{Adapters: app.NewDistributed(gcfg, nil).WithBus(nopClose{b})})
	if err != nil {
		t.Fatal(err)
	}
	defer closeWithin(t, gw)
	if code, body := get(t, gw.URL+"/readyz"); code != 200 {
		t.Fatalf("gateway readyz %d %s", code, body)
	}

	api := imtest.NewAPI(gw.URL)
	alice, bob := api.Register(t, "alice"), api.Register(t, "bob")
	a, _ := imtest.Connect(t, gw.URL, alice.Token, "a1")
	bc, _ := imtest.Connect(t, gw.URL, bob.Token, "b1")
	a.SendJSON(map[string]any{"t": "send", "cmid": "c1", "to": map[string]string{"user": bob.ID}, "kind": "text", "body": "hi"})
	a.Expect("ack")
	if m := bc.Expect("msg"); m["body"] != "hi" {
		t.Fatalf("bob got %v", m)
	}
	// The configured ping interval reaches the gateway: several pings
	// within seconds (bounded wait, not a timing assertion).
	for deadline := time.Now().Add(10 * time.Second); a.Pings() < 3; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d pings in 10 s with a ping interval of 100 ms", a.Pings())
		}
	}
	_, metrics := get(t, gw.URL+"/metrics")
	if !strings.Contains(metrics, "imkube_gateway_") {
		t.Error("gateway /metrics lacks imkube_gateway_*")
	}
	_, metrics = get(t, msgs.URL+"/metrics")
	if !strings.Contains(metrics, "imkube_message_") {
		t.Error("message /metrics lacks imkube_message_*")
	}
}

// A dependency that is down is named by /readyz.
func TestReadyzNamesTheDependency(t *testing.T) {
	cfg := distributed(t, config.RoleUser)
	s, err := app.Start(context.Background(), cfg, []config.Role{config.RoleUser}, app.Options{BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer closeWithin(t, s)
	s.Store.SQL().Close() // the pool is gone: pings fail
	code, body := get(t, s.URL+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "user: mysql:") {
		t.Fatalf("readyz %d %q, want 503 naming mysql", code, body)
	}
}

// A service whose database is not reachable yet does not exit: its port
// serves /healthz, /readyz answers 503 naming what it waits for, and once
// the database answers (here: a proxy to MariaDB that starts late) the role
// comes up without a restart.
func TestServiceWaitsForALateDependency(t *testing.T) {
	cfg := distributed(t, config.RoleUser)
	mc, err := mysql.ParseDSN(cfg.MySQL.DSN)
	if err != nil {
		t.Fatal(err)
	}
	real := mc.Addr
	hold, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	late := hold.Addr().String()
	hold.Close() // nothing listens there yet: connection refused
	mc.Addr = late
	cfg.MySQL.DSN = mc.FormatDSN()

	s, err := app.Start(context.Background(), cfg, []config.Role{config.RoleUser}, app.Options{BcryptCost: 4, WaitForDependencies: true})
	if err != nil {
		t.Fatalf("start with the database down: %v (want: wait for it)", err)
	}
	defer closeWithin(t, s)
	if code, _ := get(t, s.URL+"/healthz"); code != 200 {
		t.Fatalf("healthz %d while waiting", code)
	}
	code, body := get(t, s.URL+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "waiting for dependencies") || !strings.Contains(body, "mysql") {
		t.Fatalf("readyz %d %q, want 503 naming mysql", code, body)
	}

	ln, err := net.Listen("tcp", late)
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", real)
				if err != nil {
					return
				}
				defer u.Close()
				go io.Copy(u, c)
				io.Copy(c, u)
			}()
		}
	}()
	deadline := time.Now().Add(40 * time.Second)
	for {
		code, body = get(t, s.URL+"/readyz")
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still not ready 40s after the database came up: %d %q", code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	imtest.NewAPI(s.URL).Register(t, "late")
}
