package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/imkube/imkube/api/protocol"
	"github.com/imkube/imkube/internal/bus"
	"github.com/imkube/imkube/internal/messageapi"
	"github.com/imkube/imkube/internal/telemetry"
)

// Signals at the edge: delivered receipts, typing and presence. Receipts and
// typing go to the message service, which pushes them to the recipients'
// gateways; presence is tracked here: each gateway records in the session
// store which users its connections watch, and a change of a user is pushed
// to the gateways that watch that user, which write it to their watchers.

// Clock runs the presence timers; tests replace it to move time by hand.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f after d unless the returned stop is called first.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// maxTypingConvs bounds the conversations a connection's typing gate keeps.
const maxTypingConvs = 64

// clientSignals is one connection's signal state. typing is used by the
// reading goroutine only; subs is guarded by the node's presence mutex.
type clientSignals struct {
	typing map[string]time.Time // conv -> last typing passed on
	subs   map[string]struct{}  // users this connection watches
}

// presence is the node's presence state: who watches whom on this gateway,
// and the pending "offline" announcements.
type presence struct {
	mu       sync.Mutex
	watchers map[string]map[*Client]int8 // watched user -> connection -> last state sent (0 none, 1 online, 2 offline)
	pending  map[string]func() bool      // user -> stop of the pending offline check
	stopped  bool
}

func newPresence() *presence {
	return &presence{watchers: map[string]map[*Client]int8{}, pending: map[string]func() bool{}}
}

func state(online bool) int8 {
	if online {
		return 1
	}
	return 2
}

// handleSignal handles delivered, typing, presence_sub and presence_unsub.
func (c *Client) handleSignal(ctx context.Context, in *protocol.Inbound) {
	n := c.node
	switch in.T {
	case protocol.TypeDelivered:
		if in.Conv == "" {
			return // delivered{inboxSeq}: accepted, nothing to tell anyone
		}
		if !c.reads.Allow() {
			return // automatic and coalesced anyway: excess is dropped
		}
		if err := n.deps.Backend.Delivered(ctx, c.user, in.Conv, *in.Seq); err != nil {
			c.reply(ctx, c.backendErr(in.ID, err))
		}
	case protocol.TypeTyping:
		if !c.allowTyping(in.Conv) || !c.reads.Allow() {
			return // at most one per conversation per interval, within the read allowance; excess dropped
		}
		if err := n.deps.Backend.Typing(ctx, c.user, in.Conv); err != nil {
			c.reply(ctx, c.backendErr(in.ID, err))
		}
	case protocol.TypePresenceSub:
		// Each one checks up to 200 users against the store: it takes from
		// the read allowance and is refused beyond it.
		if r := c.reads.Reserve(); r.Delay() > 0 {
			wait := r.Delay()
			r.Cancel()
			c.reply(ctx, encode(protocol.Error{T: protocol.TypeError, ID: in.ID, Code: protocol.CodeRateLimited, Retryable: true,
				Message: "presence_sub too fast; retry later", RetryAfterMs: max(wait.Milliseconds(), 1)}))
			return
		}
		c.presenceSub(ctx, in)
	case protocol.TypePresenceUnsub:
		n.presence.mu.Lock()
		users := in.Users
		if len(users) == 0 {
			for u := range c.sig.subs {
				users = append(users, u)
			}
		}
		var gone []string
		for _, u := range users {
			if n.unwatch(c, u) {
				gone = append(gone, u)
			}
		}
		n.presence.mu.Unlock()
		n.unwatchShared(ctx, gone)
		c.reply(ctx, encode(protocol.OK{T: protocol.TypeOK, ID: in.ID}))
	}
}

// allowTyping passes one typing frame per conversation per TypingInterval.
func (c *Client) allowTyping(conv string) bool {
	now := c.node.cfg.Clock.Now()
	if c.sig.typing == nil {
		c.sig.typing = map[string]time.Time{}
	}
	if t, ok := c.sig.typing[conv]; ok && now.Sub(t) < c.node.cfg.TypingInterval {
		return false
	}
	if len(c.sig.typing) >= maxTypingConvs {
		for k, t := range c.sig.typing {
			if now.Sub(t) >= c.node.cfg.TypingInterval {
				delete(c.sig.typing, k)
			}
		}
		if len(c.sig.typing) >= maxTypingConvs {
			return false
		}
	}
	c.sig.typing[conv] = now
	return true
}

// presenceSub checks and registers the subscriptions, answers ok, then the
// current state of each user. A change that arrives while the state is
// looked up is sent as it comes and wins over the older snapshot.
func (c *Client) presenceSub(ctx context.Context, in *protocol.Inbound) {
	n := c.node
	p := n.presence
	p.mu.Lock()
	var added []string
	for _, u := range in.Users {
		if _, ok := c.sig.subs[u]; !ok && !contains(added, u) {
			added = append(added, u)
		}
	}
	if len(c.sig.subs)+len(added) > n.cfg.MaxPresenceSubs {
		p.mu.Unlock()
		c.reply(ctx, errFrame(in.ID, "", protocol.CodeBadFrame, "presence_sub: a connection watches at most "+itoa(n.cfg.MaxPresenceSubs)+" users; unsubscribe some first"))
		return
	}
	var first []string // users no connection of this gateway watched before
	for _, u := range added {
		if n.watch(c, u) {
			first = append(first, u)
		}
	}
	p.mu.Unlock()
	if len(first) > 0 && n.deps.Presence != nil {
		if err := n.deps.Presence.Watch(ctx, n.cfg.ID, first, n.cfg.SessionTTL); err != nil {
			n.log.Warn("presence: record watchers", "err", err) // the next heartbeat records them
		}
	}

	items, err := n.deps.Backend.Presence(ctx, c.user, in.Users)
	if err != nil {
		var gone []string
		p.mu.Lock()
		for _, u := range added {
			if n.unwatch(c, u) {
				gone = append(gone, u)
			}
		}
		p.mu.Unlock()
		n.unwatchShared(ctx, gone)
		if errors.Is(err, messageapi.ErrForbidden) {
			c.reply(ctx, errFrame(in.ID, "", protocol.CodeForbidden, "presence_sub: you can watch only users you share a conversation with; nothing was subscribed"))
			return
		}
		c.reply(ctx, c.backendErr(in.ID, err))
		return
	}
	c.reply(ctx, encode(protocol.OK{T: protocol.TypeOK, ID: in.ID}))
	var frames [][]byte
	p.mu.Lock()
	for _, it := range items {
		w := p.watchers[it.User]
		if w == nil {
			continue
		}
		st, ok := w[c]
		if !ok || (st != 0 && contains(added, it.User)) {
			continue // unsubscribed meanwhile, or a newer change was already sent
		}
		w[c] = state(it.Online)
		it.T = protocol.TypePresence
		frames = append(frames, encode(it))
	}
	p.mu.Unlock()
	for _, f := range frames {
		c.reply(ctx, f)
	}
}

// watch and unwatch change c's subscriptions; called with presence.mu held.
// They report whether user's watchers on this gateway went from none to
// some (watch) or from some to none (unwatch).
func (n *Node) watch(c *Client, user string) bool {
	p := n.presence
	if c.sig.subs == nil {
		c.sig.subs = map[string]struct{}{}
	}
	c.sig.subs[user] = struct{}{}
	w := p.watchers[user]
	first := w == nil
	if first {
		w = map[*Client]int8{}
		p.watchers[user] = w
	}
	w[c] = 0
	return first
}

func (n *Node) unwatch(c *Client, user string) bool {
	p := n.presence
	delete(c.sig.subs, user)
	if w := p.watchers[user]; w != nil {
		delete(w, c)
		if len(w) == 0 {
			delete(p.watchers, user)
			return true
		}
	}
	return false
}

// unwatchShared removes this gateway's watcher entries of users.
func (n *Node) unwatchShared(ctx context.Context, users []string) {
	if len(users) == 0 || n.deps.Presence == nil {
		return
	}
	if err := n.deps.Presence.Unwatch(context.WithoutCancel(ctx), n.cfg.ID, users); err != nil {
		n.log.Warn("presence: remove watchers", "err", err) // they expire
	}
}

// presenceDrop removes a closed connection's subscriptions.
func (n *Node) presenceDrop(c *Client) {
	var gone []string
	n.presence.mu.Lock()
	for u := range c.sig.subs {
		if n.unwatch(c, u) {
			gone = append(gone, u)
		}
	}
	n.presence.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n.unwatchShared(ctx, gone)
}

// presenceHeartbeat refreshes this gateway's watcher entries (they expire
// after SessionTTL, like sessions, so a crashed gateway's entries go).
func (n *Node) presenceHeartbeat(ctx context.Context) {
	if n.deps.Presence == nil {
		return
	}
	n.presence.mu.Lock()
	users := make([]string, 0, len(n.presence.watchers))
	for u := range n.presence.watchers {
		users = append(users, u)
	}
	n.presence.mu.Unlock()
	if len(users) == 0 {
		return
	}
	if err := n.deps.Presence.Watch(ctx, n.cfg.ID, users, n.cfg.SessionTTL); err != nil && ctx.Err() == nil {
		n.log.Warn("presence: refresh watchers", "err", err)
	}
}

// presenceDeliver writes a presence frame to this gateway's connections
// that watch its user, unless they were last told the same state.
func (n *Node) presenceDeliver(frame []byte) {
	var pr protocol.Presence
	if err := json.Unmarshal(frame, &pr); err != nil || pr.User == "" {
		return
	}
	st := state(pr.Online)
	var to []*Client
	n.presence.mu.Lock()
	for c, last := range n.presence.watchers[pr.User] {
		if last != st {
			n.presence.watchers[pr.User][c] = st
			to = append(to, c)
		}
	}
	n.presence.mu.Unlock()
	for _, c := range to {
		c.push(frame)
	}
}

// presenceConnected runs after a connection of user authenticated. A
// reconnect within the grace period cancels the pending offline (nobody was
// told); otherwise, when this is the user's only device online, everyone
// watching the user hears "online".
func (n *Node) presenceConnected(ctx context.Context, user string) {
	p := n.presence
	p.mu.Lock()
	stop, pending := p.pending[user]
	delete(p.pending, user)
	p.mu.Unlock()
	if pending && stop() {
		return
	}
	live, err := n.deps.Sessions.Lookup(ctx, []string{user})
	if err != nil || len(live[user]) > 1 {
		return // already online on another device (or the lookup failed)
	}
	n.announce(ctx, protocol.Presence{T: protocol.TypePresence, User: user, Online: true, LastSeen: n.cfg.Clock.Now().UnixMilli()})
}

// presenceDisconnected runs after a connection of user ended and its session
// was removed. When the user has no device online any more, "offline" is
// announced after the grace period unless the user is back by then.
func (n *Node) presenceDisconnected(ctx context.Context, user string) {
	live, err := n.deps.Sessions.Lookup(ctx, []string{user})
	if err == nil && len(live[user]) > 0 {
		return
	}
	at := n.cfg.Clock.Now()
	p := n.presence
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.pending[user]; ok || p.stopped {
		return
	}
	if len(p.pending) >= n.cfg.MaxConnections {
		return // bounded like the connections; subscribers see the change on their next subscribe
	}
	p.pending[user] = n.cfg.Clock.AfterFunc(n.cfg.PresenceGrace, func() { n.presenceExpired(user, at) })
}

// presenceExpired announces user offline (last seen at) if no device of
// the user came back during the grace period.
func (n *Node) presenceExpired(user string, at time.Time) {
	p := n.presence
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	delete(p.pending, user)
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	live, err := n.deps.Sessions.Lookup(ctx, []string{user})
	if err != nil || len(live[user]) > 0 {
		return
	}
	if n.deps.Presence != nil {
		if err := n.deps.Presence.SetLastSeen(ctx, user, at.UnixMilli()); err != nil {
			n.log.Warn("record last seen", "err", err)
		}
	}
	n.announce(ctx, protocol.Presence{T: protocol.TypePresence, User: user, Online: false, LastSeen: at.UnixMilli()})
}

// announce tells the watchers of the user about a change: this gateway's
// directly, those of other gateways that watch the user over their push
// streams (a user nobody watches costs one lookup).
func (n *Node) announce(ctx context.Context, pr protocol.Presence) {
	frame := encode(pr)
	n.presenceDeliver(frame)
	n.presenceEvent(ctx, pr)
	if n.deps.Presence == nil {
		return
	}
	gws, err := n.deps.Presence.Watchers(ctx, pr.User)
	if err != nil {
		n.log.Warn("presence: look up watchers", "err", err)
		return
	}
	p := &messageapi.Push{Kind: messageapi.PushPresence, Frame: frame}
	for _, gw := range gws {
		if gw == n.cfg.ID {
			continue
		}
		if err := n.deps.Push.PublishPush(ctx, gw, bus.Message{Key: gw, Value: p}); err != nil {
			n.log.Warn("presence: push to gateway", "gateway", gw, "err", err)
		}
	}
}

// presenceStop cancels the pending offline checks (the node has drained).
func (n *Node) presenceStop() {
	p := n.presence
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	for u, stop := range p.pending {
		stop()
		delete(p.pending, u)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// presenceEvent hands an online/offline change to the message service's
// event hook through the upstream stream (keyed by the user: in order per
// user). Best effort: a failed publish is logged, presence itself is not
// affected.
func (n *Node) presenceEvent(ctx context.Context, pr protocol.Presence) {
	if n.cfg.PresenceEvents == nil || !n.cfg.PresenceEvents() {
		return
	}
	kind := messageapi.PresenceOffline
	if pr.Online {
		kind = messageapi.PresenceOnline
	}
	up := messageapi.Upstream{Gateway: n.cfg.ID, User: pr.User, CMID: "~presence", Conv: "p:" + pr.User, Kind: kind, TS: pr.LastSeen,
		UpstreamLifecycle: messageapi.UpstreamLifecycle{Op: messageapi.OpPresence}}
	msg := bus.Message{Key: up.Conv, Value: &up, Header: telemetry.Inject(ctx, nil)}
	pctx, cancel := context.WithTimeout(ctx, n.cfg.PublishTimeout)
	defer cancel()
	if err := n.deps.Upstream.PublishUpstream(pctx, msg); err != nil {
		n.log.Warn("presence event not published", "user", pr.User, "err", err)
	}
}
