package imtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Session is a resilient client of one user's device, as an app built on
// the protocol behaves: it reconnects (to any of several gateways), syncs
// from its inbox cursor after every (re)connect and on every inboxSeq gap,
// drops duplicates, and resends unacked messages with the same cmid. It
// records what the app would see, so tests can assert "exactly once, in
// order" across faults.
type Session struct {
	Account Account
	Device  string
	URLs    []string // gateways to try, in turn

	mu          sync.Mutex
	conn        *Conn
	next        int     // next URL to try
	cursor      int64   // highest inboxSeq processed
	Got         []Frame // messages in inboxSeq order, each once
	Dups        int     // wire duplicates dropped
	acks        map[string]Frame
	pending     map[string]map[string]any // cmid -> send frame, not yet acked
	order       []string                  // cmids in send order
	Errors      map[string]int            // error codes seen
	rmu         sync.Mutex                // reconnects, reconnectAt (set on a connection's reading goroutine)
	reconnects  []time.Time               // arrival times of reconnect frames
	reconnectAt time.Time                 // not before: the last reconnect frame's afterMs
}

// Reconnects returns the arrival times of the reconnect frames this session
// received (a draining gateway asking it to move), read or not. The session
// waits each frame's afterMs before it reconnects.
func (s *Session) Reconnects() []time.Time {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	return append([]time.Time(nil), s.reconnects...)
}

func (s *Session) reconnected(at time.Time, afterMs int64) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	s.reconnects = append(s.reconnects, at)
	s.reconnectAt = at.Add(time.Duration(afterMs) * time.Millisecond)
}

// NewSession returns a session (not connected).
func NewSession(acc Account, device string, urls ...string) *Session {
	return &Session{Account: acc, Device: device, URLs: urls, acks: map[string]Frame{}, pending: map[string]map[string]any{}, Errors: map[string]int{}}
}

// Connect (re)connects, trying each URL until one authenticates within d,
// then syncs everything after the cursor and resends unacked messages.
func (s *Session) Connect(d time.Duration) error {
	deadline := time.Now().Add(d)
	var last error
	for attempt := 0; time.Now().Before(deadline); attempt++ {
		url := s.URLs[s.next%len(s.URLs)]
		c, err := DialErr(url)
		if err == nil {
			c.OnReconnect(s.reconnected)
			if err = s.auth(c); err == nil {
				s.mu.Lock()
				if s.conn != nil {
					s.conn.Close()
				}
				s.conn = c
				s.mu.Unlock()
				if err = s.syncAll(); err == nil {
					return s.resend()
				}
			}
			c.Close()
		}
		last = err
		s.next++
		time.Sleep(time.Duration(min(100*(attempt+1), 1000)) * time.Millisecond)
	}
	return fmt.Errorf("connect %s: %w", s.Account.Username, last)
}

func (s *Session) auth(c *Conn) error {
	if err := c.send(map[string]any{"t": "auth", "token": s.Account.Token, "device": s.Device}); err != nil {
		return err
	}
	f, err := c.NextErr(10 * time.Second)
	if err != nil {
		return err
	}
	if f.T() != "auth_ok" {
		return fmt.Errorf("auth: %v", f)
	}
	return nil
}

func (c *Conn) send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.write(b)
}

// Kill drops the connection without a close handshake (as a crash would).
func (s *Session) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
}

// Send sends a message to user (or group when group is true) and remembers
// it until acked.
func (s *Session) Send(cmid, to string, group bool, body string) error {
	target := map[string]string{"user": to}
	if group {
		target = map[string]string{"group": to}
	}
	f := map[string]any{"t": "send", "cmid": cmid, "to": target, "kind": "text", "body": body}
	s.mu.Lock()
	s.pending[cmid] = f
	s.order = append(s.order, cmid)
	c := s.conn
	s.mu.Unlock()
	if c == nil {
		return errors.New("not connected")
	}
	return c.send(f)
}

func (s *Session) resend() error {
	s.mu.Lock()
	c := s.conn
	var frames []map[string]any
	for _, cmid := range s.order {
		if f, ok := s.pending[cmid]; ok {
			frames = append(frames, f)
		}
	}
	s.mu.Unlock()
	if c == nil {
		return nil // not connected: Connect resends them
	}
	for _, f := range frames {
		if err := c.send(f); err != nil {
			return err
		}
	}
	return nil
}

// Unacked returns how many sends are not acked yet.
func (s *Session) Unacked() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// Acks returns the acks by cmid.
func (s *Session) Acks() map[string]Frame {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Frame, len(s.acks))
	for k, v := range s.acks {
		out[k] = v
	}
	return out
}

// syncAll pages through the inbox after the cursor.
func (s *Session) syncAll() error {
	for range 1000 {
		s.mu.Lock()
		c, after := s.conn, s.cursor
		s.mu.Unlock()
		if err := c.send(map[string]any{"t": "sync", "id": "sync", "after": after, "limit": 200}); err != nil {
			return err
		}
		for {
			f, err := c.NextErr(20 * time.Second)
			if err != nil {
				return err
			}
			if f.T() != "sync_result" {
				s.handle(f)
				continue
			}
			for _, it := range f.Items() {
				s.accept(it)
			}
			s.mu.Lock()
			s.cursor = max(s.cursor, f.Int("inboxSeq"))
			s.mu.Unlock()
			if !f.Bool("more") {
				return nil
			}
			break
		}
	}
	return errors.New("sync does not end")
}

// accept records an inbox message once, in inboxSeq order.
func (s *Session) accept(m Frame) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m.Int("inboxSeq") <= s.cursor {
		s.Dups++
		return
	}
	s.cursor = m.Int("inboxSeq")
	if m.T() == "read_sync" {
		return // a read record of another device: a place in the inbox, not a message
	}
	s.Got = append(s.Got, m)
}

func (s *Session) handle(f Frame) (gap bool) {
	switch f.T() {
	case "ack":
		s.mu.Lock()
		delete(s.pending, f.Str("cmid"))
		s.acks[f.Str("cmid")] = f
		s.mu.Unlock()
	case "msg", "read_sync":
		if f.T() == "read_sync" && f.Int("inboxSeq") == 0 {
			return false // read diffusion: no place in the inbox
		}
		s.mu.Lock()
		next := s.cursor + 1
		s.mu.Unlock()
		if f.Int("inboxSeq") > next {
			return true
		}
		s.accept(f)
	case "error":
		s.mu.Lock()
		s.Errors[f.Str("code")]++
		s.mu.Unlock()
	}
	return false
}

// Pump reads frames until done() or d passes; on a gap it syncs; on a lost
// connection it reconnects (within the remaining time). Unacked sends are
// resent every resendEvery (0: only on reconnect).
func (s *Session) Pump(d time.Duration, resendEvery time.Duration, done func() bool) error {
	deadline := time.Now().Add(d)
	lastResend := time.Now()
	for !done() {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not done within %v (got %d, unacked %d, errors %v)", s.Account.Username, d, len(s.Got), s.Unacked(), s.Errors)
		}
		s.mu.Lock()
		c := s.conn
		s.mu.Unlock()
		if c == nil {
			s.rmu.Lock()
			wait := time.Until(s.reconnectAt)
			s.rmu.Unlock()
			if wait > 0 {
				time.Sleep(min(wait, time.Until(deadline)))
			}
			if err := s.Connect(time.Until(deadline)); err != nil {
				return err
			}
			continue
		}
		f, err := c.NextErr(200 * time.Millisecond)
		if err != nil {
			if c.closed() {
				s.Kill()
			}
			if resendEvery > 0 && time.Since(lastResend) > resendEvery && s.Unacked() > 0 {
				lastResend = time.Now()
				s.resend()
			}
			continue
		}
		if s.handle(f) {
			if err := s.syncAll(); err != nil {
				s.Kill()
			}
		}
	}
	return nil
}

func (c *Conn) closed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err != nil
}

// Bodies returns the bodies of the received messages in order.
func (s *Session) Bodies() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.Got))
	for i, m := range s.Got {
		out[i] = m.Str("body")
	}
	return out
}

// Close closes the connection.
func (s *Session) Close() { s.Kill() }
