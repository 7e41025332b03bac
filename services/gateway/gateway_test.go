package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/imkube/imkube/api/protocol"
	"github.com/imkube/imkube/internal/auth"
	"github.com/imkube/imkube/internal/bus"
	"github.com/imkube/imkube/internal/imtest"
	"github.com/imkube/imkube/internal/messageapi"
	"github.com/imkube/imkube/internal/sessions"
	"github.com/imkube/imkube/services/gateway"
)

func TestMain(m *testing.M) {
	// The RocketMQ client (linked through Main) starts a cache janitor in a
	// package variable initialiser; it is not ours to stop.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/patrickmn/go-cache.(*janitor).Run"))
}

type fakeBackend struct{}

func (fakeBackend) State(context.Context, string) (int64, []protocol.ConvState, error) {
	return 0, nil, nil
}
func (fakeBackend) Sync(context.Context, string, int64, int, int) (*protocol.SyncResult, error) {
	return &protocol.SyncResult{T: protocol.TypeSyncResult}, nil
}
func (fakeBackend) Pull(context.Context, string, string, int64, int64, int, int) (*protocol.PullResult, error) {
	return nil, messageapi.ErrForbidden
}
func (fakeBackend) PullBefore(context.Context, string, string, int64, int, int) (*protocol.PullResult, error) {
	return nil, messageapi.ErrForbidden
}
func (fakeBackend) Read(context.Context, string, string, string, int64) error { return nil }
func (fakeBackend) Delivered(context.Context, string, string, int64) error    { return nil }
func (fakeBackend) Typing(context.Context, string, string) error              { return nil }
func (fakeBackend) Presence(context.Context, string, []string) ([]protocol.Presence, error) {
	return nil, nil
}

type env struct {
	url  string
	node *gateway.Node
	keys *auth.Keys
	bus  *bus.InProc
}

// newEnv runs a gateway node on an httptest server; everything stops at the
// end of the test (goleak checks it).
func newEnv(t *testing.T, cfg gateway.Config) *env {
	t.Helper()
	return newEnvWith(t, cfg, fakeBackend{})
}

// newEnvWith is newEnv with the given message service.
func newEnvWith(t *testing.T, cfg gateway.Config, backend messageapi.Backend) *env {
	t.Helper()
	keys, err := auth.NewKeys([]string{strings.Repeat("s", 40)}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b := bus.NewInProc(bus.InProcOptions{})
	if cfg.ID == "" {
		cfg.ID = "gw1"
	}
	node, err := gateway.New(cfg, gateway.Deps{
		Tokens: keys, Upstream: b, Push: b, Pushes: b, Backend: backend, Sessions: sessions.NewMemory(time.Now),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(node)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- node.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		srv.Close()
		// As the composition root does: drain after the listener stops.
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		if err := node.Shutdown(sctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		b.Close()
	})
	return &env{url: srv.URL, node: node, keys: keys, bus: b}
}

func (e *env) token(t *testing.T, user string) string {
	tok, _, err := e.keys.Issue(user)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (e *env) push(t *testing.T, frame string, targets ...messageapi.Target) {
	t.Helper()
	b, _ := json.Marshal(messageapi.Push{Frame: json.RawMessage(frame), Targets: targets})
	if err := e.bus.PublishPush(context.Background(), "gw1", bus.Message{Key: "gw1", Body: b}); err != nil {
		t.Fatal(err)
	}
}

func TestPushesReachTheTargetDevicesWithTheirInboxSeq(t *testing.T) {
	e := newEnv(t, gateway.Config{})
	a, _ := imtest.Connect(t, e.url, e.token(t, "1"), "phone")
	a2, _ := imtest.Connect(t, e.url, e.token(t, "1"), "laptop")
	e.push(t, `{"t":"msg","body":"x"}`, messageapi.Target{User: "1", Device: "phone", InboxSeq: 7})
	if m := a.Expect("msg"); m.Int("inboxSeq") != 7 || m.Str("body") != "x" {
		t.Fatalf("got %v", m)
	}
	a2.Quiet(100 * time.Millisecond)
}

func TestSlowConsumerIsDisconnectedWithoutBlockingOthers(t *testing.T) {
	e := newEnv(t, gateway.Config{SendQueueBytes: 64 << 10, WriteTimeout: 2 * time.Second})
	fast, _ := imtest.Connect(t, e.url, e.token(t, "2"), "d")
	// The slow client authenticates and then never reads.
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(e.url, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ws.WriteJSON(map[string]string{"t": "auth", "token": e.token(t, "1"), "device": "d"})
	deadline := time.Now().Add(10 * time.Second)
	for e.node.Connections() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	big := `{"t":"msg","body":"` + strings.Repeat("x", 16<<10) + `"}`
	for i := 0; i < 2000 && e.node.Connections() == 2; i++ {
		e.push(t, big, messageapi.Target{User: "1", Device: "d"})
		if i%100 == 0 {
			e.push(t, `{"t":"msg","body":"ok"}`, messageapi.Target{User: "2", Device: "d"})
			fast.Expect("msg")
		}
	}
	if e.node.Connections() != 1 {
		t.Fatalf("slow consumer still connected (%d connections)", e.node.Connections())
	}
	e.push(t, `{"t":"msg","body":"still fine"}`, messageapi.Target{User: "2", Device: "d"})
	if m := fast.Expect("msg"); m.Str("body") != "still fine" {
		t.Fatalf("fast client: %v", m)
	}
}

func TestOversizedFrameClosesTheConnectionWithTooLarge(t *testing.T) {
	e := newEnv(t, gateway.Config{MaxFrameBytes: 4096})
	c, _ := imtest.Connect(t, e.url, e.token(t, "1"), "d")
	c.SendRaw([]byte(`{"t":"ping","pad":"` + strings.Repeat("x", 5000) + `"}`))
	frames := c.ExpectClosed(5 * time.Second)
	if len(frames) != 0 || c.CloseCode() != websocket.CloseMessageTooBig {
		t.Fatalf("got frames %v, close code %d; want close 1009 (message too big)", frames, c.CloseCode())
	}
}

func TestIdleConnectionsAreClosed(t *testing.T) {
	e := newEnv(t, gateway.Config{IdleTimeout: 300 * time.Millisecond, PingInterval: time.Hour})
	c, _ := imtest.Connect(t, e.url, e.token(t, "1"), "d")
	// The test client answers pings automatically, so with pings disabled
	// the connection is idle and must be closed.
	c.ExpectClosed(5 * time.Second)
}

func TestShutdownAsksClientsToReconnect(t *testing.T) {
	e := newEnv(t, gateway.Config{})
	c, _ := imtest.Connect(t, e.url, e.token(t, "1"), "d")
	shut := make(chan error, 1)
	go func() { shut <- e.node.Shutdown(context.Background()) }()
	frames := c.ExpectClosed(5 * time.Second)
	if len(frames) != 1 || frames[0].T() != "reconnect" {
		t.Fatalf("got %v", frames)
	}
	if err := <-shut; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	resp, err := http.Get(e.url + "/ws")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("draining gateway answered %d", resp.StatusCode)
	}
}

func TestConnectionCapAnswers503BeforeUpgrade(t *testing.T) {
	e := newEnv(t, gateway.Config{MaxConnections: 1})
	imtest.Connect(t, e.url, e.token(t, "1"), "d")
	_, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(e.url, "http")+"/ws", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("over the cap: err %v resp %v", err, resp)
	}
}

func TestOnlyAllowedOriginsMayConnect(t *testing.T) {
	e := newEnv(t, gateway.Config{AllowedOrigins: []string{"https://chat.example", "http://localhost:*"}})
	tests := []struct {
		give string
		want bool
	}{
		{"https://chat.example", true},
		{"http://localhost:3000", true},
		{"http://localhost", false},
		{"http://localhost:3000.evil.example", false},
		{"https://evil.example", false},
		{"http://" + strings.TrimPrefix(e.url, "http://"), true}, // the gateway's own page
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			ws, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(e.url, "http")+"/ws", http.Header{"Origin": {tt.give}})
			if ws != nil {
				ws.Close()
			}
			if got := err == nil; got != tt.want {
				t.Fatalf("origin %q accepted=%v, want %v (resp %v)", tt.give, got, tt.want, resp)
			}
			if !tt.want && resp.StatusCode != http.StatusForbidden {
				t.Fatalf("refused with %d, want 403", resp.StatusCode)
			}
		})
	}
}

// stuckBackend does not answer State for user "stuck" until the
// connection's context ends; entered tells when such a call started.
type stuckBackend struct {
	fakeBackend
	entered chan struct{}
}

func (b stuckBackend) State(ctx context.Context, user string) (int64, []protocol.ConvState, error) {
	if user != "stuck" {
		return b.fakeBackend.State(ctx, user)
	}
	b.entered <- struct{}{}
	<-ctx.Done()
	return 0, nil, ctx.Err()
}

func TestShutdownPastItsDeadlineClosesConnectionsAndLeavesNoGoroutine(t *testing.T) {
	tests := []struct {
		name string
		give time.Duration // Shutdown's timeout
	}{
		{"an already expired context", 0},
		{"a short deadline", 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			entered := make(chan struct{}, 1)
			e := newEnvWith(t, gateway.Config{WriteTimeout: time.Minute}, stuckBackend{entered: entered})
			// Once a push went through, the node's own goroutines are all
			// running: what starts after the snapshot belongs to connections.
			e.push(t, `{"t":"msg"}`)
			for e.node.Stats().Pushes == 0 {
				time.Sleep(10 * time.Millisecond)
			}
			before := goleak.IgnoreCurrent()
			dial := func(user string) *websocket.Conn {
				ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(e.url, "http")+"/ws", nil)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { ws.Close() })
				if err := ws.WriteJSON(map[string]string{"t": "auth", "token": e.token(t, user), "device": "d"}); err != nil {
					t.Fatal(err)
				}
				return ws
			}
			// An authenticated client, and one whose auth waits on the message
			// service: asking it to reconnect does not end its connection.
			idle := dial("1")
			var ok protocol.AuthOK
			if err := idle.ReadJSON(&ok); err != nil || ok.T != protocol.TypeAuthOK {
				t.Fatalf("auth: %v %+v", err, ok)
			}
			stuck := dial("stuck")
			select {
			case <-entered:
			case <-time.After(10 * time.Second):
				t.Fatal("the stuck client never reached the message service")
			}

			ctx, cancel := context.WithTimeout(context.Background(), tt.give)
			defer cancel()
			shut := make(chan error, 1)
			go func() { shut <- e.node.Shutdown(ctx) }()
			select {
			case err := <-shut:
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Shutdown = %v, want %v", err, context.DeadlineExceeded)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Shutdown did not return after its context ended")
			}
			if n := e.node.Connections(); n != 0 {
				t.Fatalf("%d connections left after Shutdown", n)
			}
			for name, ws := range map[string]*websocket.Conn{"authenticated": idle, "stuck": stuck} {
				ws.SetReadDeadline(time.Now().Add(10 * time.Second))
				for {
					_, _, err := ws.ReadMessage()
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						t.Fatalf("the %s client's connection is still open", name)
					}
					if err != nil {
						break
					}
				}
			}
			if err := goleak.Find(before); err != nil {
				t.Fatalf("goroutines left after Shutdown: %v", err)
			}
		})
	}
}

func TestAPageOfARebindingDomainMayNotConnect(t *testing.T) {
	e := newEnv(t, gateway.Config{AllowedOrigins: []string{"https://chat.example", "http://localhost:*"}})
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(e.url, "http://"))
	tests := []struct {
		name string
		host string // the name the browser reached this address by
		want bool
	}{
		{name: "an attacker's domain resolved to this address", host: "rebind.evil.example:" + port, want: false},
		{name: "the loopback address", host: "127.0.0.1:" + port, want: true},
		{name: "localhost", host: "localhost:" + port, want: true},
		{name: "a host of the allowed origins", host: "chat.example", want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{"Origin": {"http://" + tt.host}, "Host": {tt.host}}
			ws, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(e.url, "http")+"/ws", h)
			if ws != nil {
				ws.Close()
			}
			if got := err == nil; got != tt.want {
				t.Fatalf("same-host page at %s accepted=%v, want %v (resp %v)", tt.host, got, tt.want, resp)
			}
		})
	}
}

// A draining gateway asks its clients to reconnect at DrainRate per second
// (DrainRate/10 per 100 ms tick, ticks driven by the test here), each with
// an afterMs below DrainJitter, and closes each connection after the frame.
func TestShutdownEvacuatesAtTheDrainRate(t *testing.T) {
	ticks := make(chan time.Time)
	e := newEnv(t, gateway.Config{DrainRate: 20, DrainJitter: 300 * time.Millisecond,
		DrainTicker: func() (<-chan time.Time, func()) { return ticks, func() {} }})
	const n = 5
	closed := make(chan []imtest.Frame, n)
	for i := range n {
		c, _ := imtest.Connect(t, e.url, e.token(t, strconv.Itoa(i+1)), "d")
		go func() { closed <- c.ExpectClosed(10 * time.Second) }()
	}
	shut := make(chan error, 1)
	go func() { shut <- e.node.Shutdown(context.Background()) }()
	expect := func(k int) {
		t.Helper()
		for range k {
			select {
			case frames := <-closed:
				if len(frames) != 1 || frames[0].T() != "reconnect" {
					t.Fatalf("an evacuated client got %v, want one reconnect", frames)
				}
				if after := frames[0].Int("afterMs"); after < 0 || after >= 300 {
					t.Fatalf("afterMs %d outside [0, 300)", after)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("an evacuated client was not closed")
			}
		}
		select {
		case frames := <-closed:
			t.Fatalf("a client was evacuated before its tick: %v", frames)
		case <-time.After(200 * time.Millisecond):
		}
	}
	expect(2) // 20 per second = 2 per tick; the first batch goes at once
	ticks <- time.Now()
	expect(2)
	ticks <- time.Now()
	expect(1)
	if err := <-shut; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

// A rate that is no multiple of the ticks per second is kept on average,
// one below a connection per tick too: 5 per second is one every other tick
// (not one per tick), 25 per second is 5 per two ticks (not 2 per tick).
func TestDrainRateIsKeptForAnyRate(t *testing.T) {
	for _, tt := range []struct{ rate, ticks, want int }{
		{5, 0, 1}, {5, 1, 1}, {5, 2, 2}, {5, 20, 11},
		{25, 0, 2}, {25, 1, 5}, {25, 39, 100},
		{1, 9, 1}, {1, 10, 2},
		{500, 0, 50}, {500, 9, 500},
	} {
		if got := gateway.DrainDue(tt.rate, tt.ticks); got != tt.want {
			t.Errorf("rate %d/s after %d ticks: %d asked, want %d", tt.rate, tt.ticks, got, tt.want)
		}
	}
}
