// Package gateway is the WebSocket edge: it authenticates connections,
// validates and publishes client sends to the upstream stream, answers sync,
// pull and read through the message service, and writes the pushes of its
// own push stream to local connections.
//
// Structure (after centrifuge): Node is process-wide (config,
// collaborators, the connection registry, push consumption, heartbeat,
// shutdown); hub is the sharded registry of authenticated connections;
// Client is one connection and its protocol, with one reader and one writer
// goroutine; writer is its outgoing queue, bounded in bytes; Disconnect says
// why a connection ended.
package gateway

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/sync/errgroup"

	"github.com/imkube/imkube/api/protocol"
	"github.com/imkube/imkube/internal/auth"
	"github.com/imkube/imkube/internal/bus"
	"github.com/imkube/imkube/internal/messageapi"
	"github.com/imkube/imkube/internal/rest"
	"github.com/imkube/imkube/internal/sessions"
	"github.com/imkube/imkube/internal/telemetry"
)

// Config configures a gateway node. Zero values take the defaults below.
type Config struct {
	// ID names this gateway (its push stream); the pod name in Kubernetes.
	ID string
	// MaxFrameBytes bounds an inbound frame (default 64 KiB); bigger frames
	// close the connection.
	MaxFrameBytes int
	// MaxBodyBytes returns the current limit for send bodies (default 16 KiB).
	MaxBodyBytes func() int
	// AuthTimeout is how long a new connection has to send auth (10 s).
	AuthTimeout time.Duration
	// IdleTimeout closes connections that send nothing, not even pongs (60 s).
	IdleTimeout time.Duration
	// PingInterval is how often the server pings (IdleTimeout / 3).
	PingInterval time.Duration
	// WriteTimeout bounds one frame write (10 s).
	WriteTimeout time.Duration
	// SendQueueBytes bounds a connection's outgoing queue (1 MiB); a client
	// that falls further behind with pushes is disconnected (slow_consumer).
	// Replies to its own requests wait for room instead.
	SendQueueBytes int
	// MaxPageBytes bounds one sync or pull reply, encoded (SendQueueBytes /
	// 4, at most SendQueueBytes / 2): a page always leaves room in the
	// queue for pushes.
	MaxPageBytes int
	// PublishTimeout bounds the upstream publish of one send (5 s); past it the
	// client gets UNAVAILABLE, retryable.
	PublishTimeout time.Duration
	// HeartbeatInterval refreshes sessions and gateway liveness (10 s);
	// SessionTTL is how long they live without refresh (3 intervals).
	HeartbeatInterval time.Duration
	SessionTTL        time.Duration
	// MaxConnections per node; new connections over it get 503 (0: 100,000).
	MaxConnections int
	// AllowedOrigins lists Origin headers accepted from browsers besides the
	// gateway's own host (always accepted): exact origins, "scheme://host:*"
	// for any port, or "*" for any origin.
	AllowedOrigins []string
	// MaxBadFrames closes a connection after that many consecutive invalid
	// frames (protocol abuse; default 20).
	MaxBadFrames int
	// ReadRate and ReadBurst bound the read frames of one connection (10 per
	// second, bursts of 50); past them the frame is answered RATE_LIMITED and
	// not applied.
	ReadRate  float64
	ReadBurst int
	// ReauthBefore is how long before its token expires a connection gets
	// reauth and is closed (1 min, at most a quarter of the token's
	// lifetime), so the client can still refresh the token it holds.
	ReauthBefore time.Duration
	// DrainRate is how many connections per second a stopping gateway asks
	// to reconnect elsewhere (500: 10,000 connections in 20 s), so the
	// remaining gateways are not stampeded; DrainJitter spreads each
	// client's reconnect{afterMs} over [0, DrainJitter) (1 s) on top.
	DrainRate   int
	DrainJitter time.Duration
	// DrainTicker paces the evacuation (nil: a ticker of 100 ms, each tick
	// asking DrainRate/10 connections); tests drive it by hand.
	DrainTicker func() (ticks <-chan time.Time, stop func())

	// TrustedProxies are the load balancers whose X-Forwarded-For names the
	// client (per-IP connect limits key on it); empty: the peer address.
	TrustedProxies rest.TrustedProxies
	// PresenceGrace is how long a user whose last device disconnected may
	// reconnect before subscribers hear "offline" (10 s).
	PresenceGrace time.Duration
	// MaxPresenceSubs bounds the users one connection watches (1,000).
	MaxPresenceSubs int
	// TypingInterval drops a connection's typing frames for a conversation
	// within this time of the previous one (2 s).
	TypingInterval time.Duration
	// NotifyInterval coalesces read-diffusion notify frames: a connection
	// gets at most one per conversation per interval, carrying the latest
	// seq, and the last one always within the interval (notify.go). 0: 50
	// ms; negative: every notify is sent as it comes.
	NotifyInterval time.Duration
	// Clock, if set, replaces the presence and notify timers (tests).
	Clock Clock

	// DropDelivery, when set, is asked before each push frame is written to a
	// connection; true drops it (tests simulate lost deliveries with it).
	DropDelivery func(user, device string, frame []byte) bool
	// PresenceEvents, when set and true, makes every online/offline
	// change also an upstream record (messageapi.OpPresence) for the
	// message service's event hook (user.online / user.offline).
	PresenceEvents func() bool
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.MaxFrameBytes <= 0 {
		c.MaxFrameBytes = 64 << 10
	}
	if c.MaxBodyBytes == nil {
		c.MaxBodyBytes = func() int { return 16 << 10 }
	}
	def(&c.AuthTimeout, 10*time.Second)
	def(&c.IdleTimeout, 60*time.Second)
	def(&c.PingInterval, c.IdleTimeout/3)
	def(&c.WriteTimeout, 10*time.Second)
	def(&c.PublishTimeout, 5*time.Second)
	def(&c.HeartbeatInterval, 10*time.Second)
	def(&c.SessionTTL, 3*c.HeartbeatInterval)
	def(&c.ReauthBefore, time.Minute)
	def(&c.PresenceGrace, 10*time.Second)
	def(&c.TypingInterval, 2*time.Second)
	if c.NotifyInterval == 0 {
		c.NotifyInterval = 50 * time.Millisecond
	}
	if c.MaxPresenceSubs <= 0 {
		c.MaxPresenceSubs = 1000
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	def(&c.DrainJitter, time.Second)
	if c.DrainRate <= 0 {
		c.DrainRate = 500
	}
	if c.SendQueueBytes <= 0 {
		c.SendQueueBytes = 1 << 20
	}
	if c.MaxPageBytes <= 0 || c.MaxPageBytes > c.SendQueueBytes/2 {
		c.MaxPageBytes = c.SendQueueBytes / 4
	}
	if c.MaxConnections <= 0 {
		c.MaxConnections = 100000
	}
	if c.MaxBadFrames <= 0 {
		c.MaxBadFrames = 20
	}
	if c.ReadRate <= 0 {
		c.ReadRate = 10
	}
	if c.ReadBurst <= 0 {
		c.ReadBurst = 50
	}
}

// Validate names the first bad field.
func (c *Config) Validate() error {
	switch {
	case c.ID == "" || strings.ContainsAny(c.ID, " :/"):
		return errors.New("gateway config: gateway id (IMKUBE_GATEWAY_ID) must be set and contain no spaces, ':' or '/'")
	case c.MaxFrameBytes < 1024:
		return errors.New("gateway config: max frame bytes must be >= 1024")
	}
	return nil
}

// Deps are the gateway's collaborators.
type Deps struct {
	Tokens   httpVerifier
	Upstream bus.UpstreamPublisher
	Push     bus.PushPublisher
	Pushes   bus.PushConsumer
	Backend  messageapi.Backend
	Sessions sessions.Store
	// Presence, if set, records which gateways watch whom and last-seen
	// times (nil: Sessions when it implements sessions.Presence, else
	// presence changes reach only this gateway's watchers).
	Presence sessions.Presence
	// Limiter, if set, rate-limits sends per user.
	Limiter SendLimiter
	// Connects, if set, rate-limits new connections per client IP.
	Connects ConnectLimiter
	// PublishGuard, if set, wraps each upstream publish (flow rule and
	// circuit breaker); an error from it answers UNAVAILABLE.
	PublishGuard func(fn func() error) error
	// Metrics (nil: none) and Tracer (nil: no spans).
	Metrics *telemetry.Gateway
	Tracer  trace.Tracer
	Log     *slog.Logger
}

// ConnectLimiter decides whether a client IP may open a connection now.
type ConnectLimiter interface {
	AllowConnect(ip string) bool
}

type httpVerifier interface {
	Verify(token string) (auth.Claims, error)
}

// SendLimiter decides whether a user may send now; when not, it returns how
// long to wait.
type SendLimiter interface {
	AllowSend(user string) (ok bool, retryAfter time.Duration)
}

type counters struct {
	connects, framesIn, framesOut, pushes, sends atomic.Int64
}

// Node is one gateway process.
type Node struct {
	cfg      Config
	deps     Deps
	log      *slog.Logger
	hub      *hub
	upgrader websocket.Upgrader
	metrics  counters
	presence *presence

	mu       sync.Mutex
	conns    map[*Client]struct{} // every open connection, authenticated or not
	draining bool                 // Shutdown has started: no new connections
	drained  chan struct{}        // closed when draining and conns is empty
	pingStop chan struct{}        // closes to stop the pinger; nil when none runs
	pingDone chan struct{}        // closed when that pinger has returned
}

// New returns a gateway node.
func New(cfg Config, deps Deps) (*Node, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Tracer == nil {
		deps.Tracer = tracenoop.NewTracerProvider().Tracer("")
	}
	if deps.Presence == nil {
		deps.Presence, _ = deps.Sessions.(sessions.Presence)
	}
	n := &Node{cfg: cfg, deps: deps, log: deps.Log.With("gateway", cfg.ID), hub: newHub(),
		conns: map[*Client]struct{}{}, drained: make(chan struct{}), presence: newPresence()}
	n.upgrader = websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		// Small read buffers (frames larger than the buffer are read past
		// it); data frames are written from frameBufs, so gorilla's write
		// buffer comes from a pool and only for control frames.
		ReadBufferSize:  1024,
		WriteBufferPool: &sync.Pool{},
		CheckOrigin:     n.checkOrigin,
	}
	return n, nil
}

// ID returns the gateway id.
func (n *Node) ID() string { return n.cfg.ID }

// Connections returns the number of authenticated connections.
func (n *Node) Connections() int { return n.hub.len() }

func (n *Node) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true // not a browser
	}
	if n.originAllowed(origin) {
		return true
	}
	host := origin
	if i := strings.Index(host, "://"); i >= 0 {
		host = host[i+3:]
	}
	// The page this gateway served, unless the name it was reached by is
	// not one of ours: a page of an attacker's domain that resolves to this
	// address (DNS rebinding) is same-host too.
	return strings.EqualFold(host, r.Host) && n.HostAllowed(r.Host)
}

// originAllowed reports whether origin is on the AllowedOrigins list.
func (n *Node) originAllowed(origin string) bool {
	for _, o := range n.cfg.AllowedOrigins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
		// "http://localhost:*" allows any port of that scheme and host.
		if prefix, ok := strings.CutSuffix(o, ":*"); ok {
			if rest, ok := strings.CutPrefix(strings.ToLower(origin), strings.ToLower(prefix)+":"); ok && rest != "" && strings.Trim(rest, "0123456789") == "" {
				return true
			}
		}
	}
	return false
}

// HostAllowed reports whether a request's Host (host[:port]) names this
// gateway: an IP address, localhost, or the host of an AllowedOrigins entry
// (any host for "*"; any port for "scheme://host:*"). Other names can be an
// attacker's domain resolved to this address (DNS rebinding).
func (n *Node) HostAllowed(hostport string) bool {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = strings.Trim(hostport, "[]"), ""
	}
	if net.ParseIP(host) != nil || strings.EqualFold(host, "localhost") {
		return true
	}
	for _, o := range n.cfg.AllowedOrigins {
		if o == "*" {
			return true
		}
		_, oh, ok := strings.Cut(o, "://")
		if !ok {
			continue
		}
		ohost, oport, err := net.SplitHostPort(oh)
		if err != nil {
			ohost, oport = oh, ""
		}
		if strings.EqualFold(ohost, host) && (oport == "*" || oport == port || oport == "" || port == "") {
			return true
		}
	}
	return false
}

// ServeHTTP upgrades /ws requests and runs the connection.
func (n *Node) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if n.isDraining() {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "gateway is draining; reconnect to another one", http.StatusServiceUnavailable)
		return
	}
	if n.hub.len() >= n.cfg.MaxConnections {
		w.Header().Set("Retry-After", "5")
		http.Error(w, "gateway is at its connection limit", http.StatusServiceUnavailable)
		return
	}
	ip := n.cfg.TrustedProxies.ClientIP(r)
	if n.deps.Connects != nil && !n.deps.Connects.AllowConnect(ip) {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "too many connections from your address; retry later", http.StatusTooManyRequests)
		return
	}
	conn, err := n.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered
	}
	// The connection outlives this handler: see below.
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	c := newClient(n, conn, ip, cancel)
	n.metrics.connects.Add(1)
	if !n.register(c) {
		cancel()
		conn.Close() // Shutdown started during the upgrade
		return
	}
	if err := c.open(ctx); err != nil {
		c.end(ctx, err)
		n.unregister(c)
		cancel()
		return
	}
	// The read loop runs on a fresh goroutine and this handler returns: the
	// handler's stack (grown by authentication's calls), net/http's state
	// of the connection and its read buffer are freed instead of being held
	// by every idle connection. Shutdown waits for it through unregister.
	go func() {
		defer cancel()
		defer n.unregister(c)
		c.end(ctx, c.readLoop(ctx))
	}()
}

// register adds c to the open connections unless the node is shutting down.
func (n *Node) register(c *Client) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.draining {
		return false
	}
	n.conns[c] = struct{}{}
	if n.pingStop == nil {
		n.pingStop, n.pingDone = make(chan struct{}), make(chan struct{})
		go n.pinger(n.pingStop, n.pingDone)
	}
	return true
}

// pinger asks every open connection for a ping each PingInterval (within a
// quarter of it): one ticker for the node instead of one per connection.
// It runs while there are connections (register starts it, unregister of
// the last one stops it).
func (n *Node) pinger(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(max(n.cfg.PingInterval/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			n.mu.Lock()
			for c := range n.conns {
				c.writer.ping(now, n.cfg.PingInterval)
			}
			n.mu.Unlock()
		}
	}
}

// unregister removes c once its goroutines are done; after the last
// connection it stops the pinger and waits for it.
func (n *Node) unregister(c *Client) {
	n.mu.Lock()
	delete(n.conns, c)
	var pingDone chan struct{}
	if len(n.conns) == 0 && n.pingStop != nil {
		close(n.pingStop)
		n.pingStop, pingDone = nil, n.pingDone
	}
	drained := n.draining && len(n.conns) == 0
	n.mu.Unlock()
	if pingDone != nil {
		<-pingDone // outside n.mu: a tick in progress takes it
	}
	if drained {
		close(n.drained) // after the pinger: Shutdown leaves no goroutine behind
	}
}

func (n *Node) isDraining() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.draining
}

// clients returns the open connections.
func (n *Node) clients() []*Client {
	n.mu.Lock()
	defer n.mu.Unlock()
	list := make([]*Client, 0, len(n.conns))
	for c := range n.conns {
		list = append(list, c)
	}
	return list
}

// HandlePush writes one push record to its target connections.
func (n *Node) HandlePush(ctx context.Context, m bus.Message) error {
	p, err := bus.Decode[messageapi.Push](m)
	if err != nil {
		n.log.Error("dropping malformed push", "err", err)
		return nil
	}
	if p.Kind == messageapi.PushBatch { // the pushes of one batch of the message service, in order
		for i := range p.Batch {
			if p.Batch[i].Kind != messageapi.PushBatch {
				n.handlePush(ctx, m, &p.Batch[i])
			}
		}
		return nil
	}
	n.handlePush(ctx, m, p)
	return nil
}

// handlePush writes one decoded push to its target connections.
func (n *Node) handlePush(ctx context.Context, m bus.Message, p *messageapi.Push) {
	n.metrics.pushes.Add(1)
	n.deps.Metrics.Pushed()
	if p.Kind == messageapi.PushPresence {
		n.presenceDeliver(p.Frame)
		return
	}
	if p.Kind == messageapi.PushBroadcast {
		n.hub.each(func(c *Client) { c.push(p.Frame) })
		return
	}
	_, span := n.deps.Tracer.Start(telemetry.Extract(ctx, m.Header), "gateway.push",
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attribute.Int("im.targets", len(p.Targets))))
	defer span.End()
	now := time.Now()
	conv, seq, isNotify := notifyOf(p.Frame) // read diffusion: coalesced per connection
	for _, t := range p.Targets {
		c := n.hub.lookup(t.User, t.Device)
		if c == nil {
			continue // gone: the client syncs when it reconnects
		}
		frame := messageapi.FrameForTarget(p.Frame, t)
		if n.cfg.DropDelivery != nil && n.cfg.DropDelivery(t.User, t.Device, frame) {
			continue
		}
		if p.Kind == messageapi.PushKick {
			if n.hub.remove(c) {
				c.close(DisconnectKicked, frame)
			}
			continue
		}
		// Recorded before the frame is queued, so anyone who saw the frame
		// also sees the measurement.
		switch {
		case p.Kind == messageapi.PushAck && p.TS > 0:
			n.deps.Metrics.SendAcked(now.Sub(time.UnixMilli(p.TS)))
		case p.TS > 0:
			n.deps.Metrics.Delivered(now.Sub(time.UnixMilli(p.TS)))
		}
		if isNotify && p.Kind == messageapi.PushFrame {
			c.pushNotify(conv, seq, frame)
			continue
		}
		c.push(frame)
	}
}

// Run consumes this gateway's push stream and keeps its sessions alive until
// ctx ends. It does not touch the connections: Shutdown drains them.
func (n *Node) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return n.deps.Pushes.ConsumePush(gctx, n.cfg.ID, n.HandlePush) })
	g.Go(func() error { return n.heartbeat(gctx) })
	if rc, ok := n.deps.Tokens.(revocationChecker); ok {
		g.Go(func() error { return n.watchRevocations(gctx, rc) })
	}
	return g.Wait()
}

func (n *Node) heartbeat(ctx context.Context) error {
	t := time.NewTicker(n.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		var live []sessions.Session
		n.hub.each(func(c *Client) {
			live = append(live, sessions.Session{User: c.user, Device: c.device, Gateway: n.cfg.ID})
		})
		hctx, cancel := context.WithTimeout(ctx, n.cfg.HeartbeatInterval)
		if err := n.deps.Sessions.Heartbeat(hctx, n.cfg.ID, live, n.cfg.SessionTTL); err != nil && ctx.Err() == nil {
			n.log.Warn("session heartbeat failed", "err", err)
		}
		n.presenceHeartbeat(hctx)
		cancel()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Shutdown drains the node; it is the one owner of that. It refuses new
// connections, asks every client to reconnect (to another gateway) after a
// random delay that spreads the reconnect storm, and waits for the
// connections to end. If ctx ends first, it closes the remaining connections
// at once, waits for their goroutines, and returns ctx's error. Call it after
// the HTTP listener has stopped; later calls wait the same way.
func (n *Node) Shutdown(ctx context.Context) error {
	start := time.Now()
	n.mu.Lock()
	if !n.draining {
		n.draining = true
		if len(n.conns) == 0 {
			close(n.drained)
		}
	}
	n.mu.Unlock()
	defer func() { n.deps.Metrics.Drained(time.Since(start)) }()
	n.evacuate(ctx)
	select {
	case <-n.drained:
		n.presenceStop()
		return nil
	case <-ctx.Done():
	}
	for _, c := range n.clients() {
		c.forceClose(DisconnectShutdown)
	}
	<-n.drained
	n.presenceStop()
	return ctx.Err()
}

// drainTick is the period of the evacuation: each tick asks DrainRate/10
// connections to reconnect.
const drainTick = 100 * time.Millisecond

func (n *Node) drainTicker() (<-chan time.Time, func()) {
	if n.cfg.DrainTicker != nil {
		return n.cfg.DrainTicker()
	}
	t := time.NewTicker(drainTick)
	return t.C, t.Stop
}

// evacuate asks the node's connections to reconnect elsewhere at
// cfg.DrainRate per second, each with reconnect{afterMs} drawn from
// [0, DrainJitter), until all were asked or ctx ends (the rest are then
// closed by Shutdown). A client that ignores reconnect is closed by the
// server anyway: close sends the frame, then closes the socket.
func (n *Node) evacuate(ctx context.Context) {
	clients := n.clients()
	ticks, stop := n.drainTicker()
	defer stop()
	for i, k := 0, 0; i < len(clients); k++ {
		if k > 0 {
			select {
			case <-ticks:
			case <-ctx.Done():
				return
			}
		}
		for ; i < min(drainDue(n.cfg.DrainRate, k), len(clients)); i++ {
			after := rand.Int64N(max(1, n.cfg.DrainJitter.Milliseconds()))
			clients[i].close(DisconnectShutdown, encode(protocol.Reconnect{T: protocol.TypeReconnect, AfterMs: after}))
			n.deps.Metrics.Evacuated()
		}
	}
}

// drainDue is how many connections an evacuation at rate per second has
// asked by tick k (k = 0 at the start): rate x elapsed time, counted
// exactly (a rate that is no multiple of ticks per second, or below one per
// tick, is kept on average), and the first one at once.
func drainDue(rate, k int) int {
	perSecond := int(time.Second / drainTick)
	return max(1+k*rate/perSecond, (k+1)*rate/perSecond)
}

// Stats is a snapshot of the node's counters.
type Stats struct {
	Connections int
	Connects    int64
	FramesIn    int64
	FramesOut   int64
	Pushes      int64
	Sends       int64
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats {
	return Stats{Connections: n.hub.len(), Connects: n.metrics.connects.Load(), FramesIn: n.metrics.framesIn.Load(),
		FramesOut: n.metrics.framesOut.Load(), Pushes: n.metrics.pushes.Load(), Sends: n.metrics.sends.Load()}
}
