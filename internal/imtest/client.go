// Package imtest is a test client for imkube: REST helpers and a WebSocket
// client that speaks protocol v1, with bounded waits everywhere.
package imtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Frame is a decoded server frame (generic).
type Frame map[string]any

// T returns the frame type.
func (f Frame) T() string { s, _ := f["t"].(string); return s }

// Str returns a string field.
func (f Frame) Str(k string) string { s, _ := f[k].(string); return s }

// Int returns a numeric field.
func (f Frame) Int(k string) int64 { n, _ := f[k].(float64); return int64(n) }

// Bool returns a boolean field.
func (f Frame) Bool(k string) bool { b, _ := f[k].(bool); return b }

// Items returns the items of a sync/pull result.
func (f Frame) Items() []Frame {
	raw, _ := f["items"].([]any)
	out := make([]Frame, len(raw))
	for i, r := range raw {
		m, _ := r.(map[string]any)
		out[i] = Frame(m)
	}
	return out
}

// API calls the REST API of a server.
type API struct {
	Base string // http://host:port
	HTTP *http.Client
}

// NewAPI returns an API client for base.
func NewAPI(base string) *API {
	return &API{Base: strings.TrimSuffix(base, "/"), HTTP: &http.Client{Timeout: 20 * time.Second}}
}

// Do performs a request with an optional JSON body and bearer token, decoding
// the JSON answer into out (if non-nil); it returns the status code.
func (a *API) Do(method, path, token string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.Base+path, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := a.HTTP.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode %s: %w", b, err)
		}
	}
	return resp.StatusCode, nil
}

// Account is a registered and logged-in user.
type Account struct {
	ID       string
	Username string
	Token    string
}

// Register creates username and logs in.
func (a *API) Register(t testing.TB, username string) Account {
	t.Helper()
	var u struct{ ID string }
	code, err := a.Do("POST", "/api/v1/users", "", map[string]string{"username": username, "password": "correct-horse-battery", "displayName": username}, &u)
	if err != nil || code != http.StatusCreated {
		t.Fatalf("register %s: status %d, err %v", username, code, err)
	}
	var s struct {
		Token  string
		UserID string
	}
	code, err = a.Do("POST", "/api/v1/sessions", "", map[string]string{"username": username, "password": "correct-horse-battery"}, &s)
	if err != nil || code != http.StatusOK || s.Token == "" {
		t.Fatalf("login %s: status %d, err %v", username, code, err)
	}
	return Account{ID: u.ID, Username: username, Token: s.Token}
}

// ReceivedAt is the key of a reconnect frame's arrival time (time.Time),
// taken by the reading goroutine.
const ReceivedAt = "_receivedAt"

// Conn is a WebSocket client. Frames are read by a background goroutine
// into a buffer; Next and Expect wait for them with a deadline.
type Conn struct {
	t    testing.TB
	ws   *websocket.Conn
	wmu  sync.Mutex // one writer at a time
	mu   sync.Mutex
	cond *sync.Cond
	buf  []Frame
	err  error
	done chan struct{}
	// onReconnect is called (on the reading goroutine) for each reconnect
	// frame, whether or not anyone reads it later.
	onReconnect atomic.Pointer[func(at time.Time, afterMs int64)]
	// pings counts the server's WebSocket pings (each answered by a pong).
	pings atomic.Int64
}

// OnReconnect sets a function called with the arrival time and afterMs of
// every reconnect frame the connection receives (it must not block on
// anything that waits for this connection).
func (c *Conn) OnReconnect(f func(at time.Time, afterMs int64)) { c.onReconnect.Store(&f) }

// Dial opens a WebSocket to base (http://...) /ws without authenticating.
func Dial(t testing.TB, base string) *Conn {
	t.Helper()
	c, err := DialErr(base)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.t = t
	t.Cleanup(func() { c.Close() })
	return c
}

// DialErr is Dial returning the error.
func DialErr(base string) (*Conn, error) {
	url := "ws" + strings.TrimPrefix(base, "http") + "/ws"
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	ws, _, err := d.Dial(url, nil)
	if err != nil {
		return nil, err
	}
	c := &Conn{ws: ws, done: make(chan struct{})}
	c.cond = sync.NewCond(&c.mu)
	ws.SetPingHandler(func(data string) error {
		c.pings.Add(1)
		c.wmu.Lock()
		defer c.wmu.Unlock()
		err := ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		return err
	})
	go c.readLoop()
	return c, nil
}

func (c *Conn) readLoop() {
	defer close(c.done)
	for {
		_, data, err := c.ws.ReadMessage()
		c.mu.Lock()
		if err != nil {
			c.err = err
			c.cond.Broadcast()
			c.mu.Unlock()
			return
		}
		var f Frame
		if jerr := json.Unmarshal(data, &f); jerr != nil {
			f = Frame{"t": "_invalid", "raw": string(data)}
		}
		var at time.Time
		if f.T() == "reconnect" {
			at = time.Now() // the drain's pace, as clients see it
			f[ReceivedAt] = at
		}
		c.buf = append(c.buf, f)
		c.cond.Broadcast()
		c.mu.Unlock()
		if h := c.onReconnect.Load(); h != nil && !at.IsZero() {
			(*h)(at, f.Int("afterMs"))
		}
	}
}

// Connect dials and authenticates; it fails the test unless auth_ok arrives.
func Connect(t testing.TB, base, token, device string) (*Conn, Frame) {
	t.Helper()
	c := Dial(t, base)
	c.SendJSON(map[string]any{"t": "auth", "token": token, "device": device})
	ok := c.Expect("auth_ok")
	return c, ok
}

// SendJSON writes v as a text frame.
func (c *Conn) SendJSON(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatalf("encode: %v", err)
	}
	c.SendRaw(b)
}

// SendRaw writes b as a text frame.
func (c *Conn) SendRaw(b []byte) {
	if err := c.write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// TrySendRaw writes b as a text frame and returns the error instead of
// failing the test (for frames the server may refuse by closing first).
func (c *Conn) TrySendRaw(b []byte) error { return c.write(b) }

// write sends one text frame; safe for concurrent use.
func (c *Conn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return c.ws.WriteMessage(websocket.TextMessage, b)
}

// Pings is how many WebSocket pings the server has sent so far.
func (c *Conn) Pings() int64 { return c.pings.Load() }

// WS returns the underlying connection.
func (c *Conn) WS() *websocket.Conn { return c.ws }

// Timeout is how long Next waits for a frame.
var Timeout = 20 * time.Second

// Next returns the next frame, failing the test after Timeout.
func (c *Conn) Next() Frame {
	c.t.Helper()
	f, err := c.NextErr(Timeout)
	if err != nil {
		c.t.Fatalf("waiting for a frame: %v", err)
	}
	return f
}

// NextErr returns the next frame or an error (closed, timeout).
func (c *Conn) NextErr(d time.Duration) (Frame, error) {
	deadline := time.Now().Add(d)
	timer := time.AfterFunc(d, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer timer.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.buf) == 0 {
		if c.err != nil {
			return nil, fmt.Errorf("connection closed: %w", c.err)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no frame within %v", d)
		}
		c.cond.Wait()
	}
	f := c.buf[0]
	c.buf = c.buf[1:]
	return f, nil
}

// Expect returns the next frame of type typ, failing on any other frame
// except those of the types in skip.
func (c *Conn) Expect(typ string, skip ...string) Frame {
	c.t.Helper()
	for {
		f := c.Next()
		if f.T() == typ {
			return f
		}
		skipped := false
		for _, s := range skip {
			if f.T() == s {
				skipped = true
			}
		}
		if !skipped {
			c.t.Fatalf("want frame %q, got %v", typ, f)
		}
	}
}

// ExpectClosed waits for the server to close the connection; it returns the
// frames received before.
func (c *Conn) ExpectClosed(d time.Duration) []Frame {
	c.t.Helper()
	var got []Frame
	for {
		f, err := c.NextErr(d)
		if err != nil {
			if strings.Contains(err.Error(), "connection closed") {
				return got
			}
			c.t.Fatalf("connection not closed: %v (frames %v)", err, got)
		}
		got = append(got, f)
	}
}

// Quiet asserts that no frame arrives within d.
func (c *Conn) Quiet(d time.Duration) {
	c.t.Helper()
	if f, err := c.NextErr(d); err == nil {
		c.t.Fatalf("unexpected frame %v", f)
	}
}

// Close closes the connection and waits for the reader.
func (c *Conn) Close() {
	c.ws.Close()
	<-c.done
}

// CloseCode returns the WebSocket close code the server sent (0 if none).
func (c *Conn) CloseCode() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ce *websocket.CloseError
	if errors.As(c.err, &ce) {
		return ce.Code
	}
	return 0
}

// CloseReason returns the reason of the WebSocket close frame the server sent ("" if none).
func (c *Conn) CloseReason() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ce *websocket.CloseError
	if errors.As(c.err, &ce) {
		return ce.Text
	}
	return ""
}

// From returns an API client whose connections come from the local address
// ip (any 127.x.y.z on Linux), so tests can act as several clients.
func (a *API) From(ip string) *API {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &API{Base: a.Base, HTTP: &http.Client{Timeout: a.HTTP.Timeout, Transport: &http.Transport{DialContext: d.DialContext}}}
}
