package gateway

import (
	"bytes"
	"encoding/json"
	"sync"
	"time"

	"github.com/imkube/imkube/api/protocol"
)

// Notify coalescing (read diffusion). A member of a busy large group would
// get one notify per message, and answer each with a pull; the frame only
// says "conv has news up to seq", so one per conversation per
// NotifyInterval carrying the latest seq says the same. Per connection and
// conversation:
//
//   - a notify that comes when none was queued in the last interval is
//     queued at once (a quiet group loses no latency);
//   - a notify within the interval of the previous one is held back, and a
//     later one replaces it when its seq is higher (the frame of the highest
//     seq wins, with its own "muted" flag);
//   - when the interval since the last one queued has passed, the held-back
//     notify is queued: the last notify is never dropped, so within one
//     interval of the newest message the client has been told its seq.
//
// The frames themselves are unchanged (PROTOCOL.md: conv, seq, muted).

// notifyGate is one connection's coalescing state, guarded by mu.
type notifyGate struct {
	mu      sync.Mutex
	last    map[string]time.Time // conv -> when its last notify was queued
	sent    map[string]int64     // conv -> the seq it carried
	held    map[string]heldNotify
	stop    func() bool // of the pending flush, nil when none is armed
	due     time.Time   // when it fires
	closing bool        // the connection ended: drop, arm nothing
}

type heldNotify struct {
	seq   int64
	frame []byte
}

// maxNotifyConvs bounds the conversations a connection remembers notify
// times of; past it, entries older than the interval are swept (they no
// longer hold anything back).
const maxNotifyConvs = 1024

// notifyOf returns the conv and seq of a notify frame (ok false for any other
// frame). Called once per push, not per recipient.
func notifyOf(frame []byte) (conv string, seq int64, ok bool) {
	if !bytes.HasPrefix(frame, []byte(`{"t":"notify"`)) {
		return "", 0, false
	}
	var n protocol.Notify
	if err := json.Unmarshal(frame, &n); err != nil || n.Conv == "" {
		return "", 0, false
	}
	return n.Conv, n.Seq, true
}

// pushNotify queues the notify frame of conv up to seq, or holds it back for
// the rest of the interval (see above).
func (c *Client) pushNotify(conv string, seq int64, frame []byte) {
	every := c.node.cfg.NotifyInterval
	if every <= 0 {
		c.push(frame)
		return
	}
	clock := c.node.cfg.Clock
	g := &c.notify
	g.mu.Lock()
	if g.closing {
		g.mu.Unlock()
		return
	}
	now := clock.Now()
	if h, ok := g.held[conv]; ok { // a flush is armed: keep the newest only
		if seq > h.seq {
			g.held[conv] = heldNotify{seq, frame}
		}
		g.mu.Unlock()
		return
	}
	if seq <= g.sent[conv] { // no news: an older notify overtaken by a newer one
		g.mu.Unlock()
		return
	}
	if t, ok := g.last[conv]; !ok || now.Sub(t) >= every {
		if g.last == nil {
			g.last, g.sent = map[string]time.Time{}, map[string]int64{}
		}
		if len(g.last) >= maxNotifyConvs {
			for k, t := range g.last {
				if now.Sub(t) >= every {
					delete(g.last, k)
					delete(g.sent, k)
				}
			}
		}
		g.last[conv], g.sent[conv] = now, seq
		c.push(frame) // under mu: a flush cannot slip an older frame in after it
		g.mu.Unlock()
		return
	}
	if g.held == nil {
		g.held = map[string]heldNotify{}
	}
	g.held[conv] = heldNotify{seq, frame}
	// One flush per connection, due when the first held conversation's
	// interval ends; it reschedules itself for the others.
	if due := g.last[conv].Add(every); g.stop == nil || due.Before(g.due) {
		if g.stop != nil {
			g.stop()
		}
		g.due, g.stop = due, clock.AfterFunc(due.Sub(now), c.flushNotifies)
	}
	g.mu.Unlock()
}

// flushNotifies queues the held-back notifies whose interval has passed and
// arms the next flush for the rest.
func (c *Client) flushNotifies() {
	every := c.node.cfg.NotifyInterval
	clock := c.node.cfg.Clock
	g := &c.notify
	g.mu.Lock()
	g.stop = nil
	if g.closing {
		g.mu.Unlock()
		return
	}
	now := clock.Now()
	var due [][]byte
	next := time.Duration(-1)
	for conv, h := range g.held {
		if wait := every - now.Sub(g.last[conv]); wait > 0 {
			if next < 0 || wait < next {
				next = wait
			}
			continue
		}
		due = append(due, h.frame)
		delete(g.held, conv)
		g.last[conv], g.sent[conv] = now, h.seq
	}
	if next >= 0 {
		g.due, g.stop = now.Add(next), clock.AfterFunc(next, c.flushNotifies)
	}
	// Queued under mu so that a notify arriving now for the same conv (not
	// held: last was just set, so it is held for the next interval) cannot
	// overtake this one.
	for _, f := range due {
		c.push(f)
	}
	g.mu.Unlock()
}

// stopNotifies drops what is held back when the connection ends (the client
// learns the seqs from auth_ok.convs when it reconnects).
func (c *Client) stopNotifies() {
	g := &c.notify
	g.mu.Lock()
	g.closing = true
	if g.stop != nil {
		g.stop()
		g.stop = nil
	}
	g.held = nil
	g.mu.Unlock()
}
