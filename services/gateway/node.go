// Package gateway is the WebSocket edge: it authenticates connections,
// validates and publishes client sends to the upstream stream, answers sync,
// pull and read through the message service, and writes the pushes of its
// own push stream to local connections.
//
// Structure (after centrifuge): Node is process-wide, hub the sharded
// connection registry, client one connection with one reader and one writer
// goroutine and a byte-bounded outgoing queue.
package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/sync/errgroup"

	"github.com/imkube/imkube/api/protocol"
	"github.com/imkube/imkube/internal/auth"
	"github.com/imkube/imkube/internal/bus"
	"github.com/imkube/imkube/internal/flow"
	"github.com/imkube/imkube/internal/messageapi"
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
	// that falls further behind is disconnected (slow_consumer).
	SendQueueBytes int
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

	// DropDelivery, when set, is asked before each push frame is written to a
	// connection; true drops it (tests simulate lost deliveries with it).
	DropDelivery func(user, device string, frame []byte) bool
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
	if c.SendQueueBytes <= 0 {
		c.SendQueueBytes = 1 << 20
	}
	if c.MaxConnections <= 0 {
		c.MaxConnections = 100000
	}
	if c.MaxBadFrames <= 0 {
		c.MaxBadFrames = 20
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

	wg       sync.WaitGroup // connection goroutines
	all      sync.Map       // *client -> struct{}: every open connection, authenticated or not
	draining atomic.Bool
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
	n := &Node{cfg: cfg, deps: deps, log: deps.Log.With("gateway", cfg.ID), hub: newHub()}
	n.upgrader = websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   4096,
		WriteBufferSize:  4096,
		CheckOrigin:      n.checkOrigin,
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
	host := origin
	if i := strings.Index(host, "://"); i >= 0 {
		host = host[i+3:]
	}
	if strings.EqualFold(host, r.Host) {
		return true // the page this gateway served
	}
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

// ServeHTTP upgrades /ws requests and runs the connection.
func (n *Node) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if n.draining.Load() {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "gateway is draining; reconnect to another one", http.StatusServiceUnavailable)
		return
	}
	if n.hub.len() >= n.cfg.MaxConnections {
		w.Header().Set("Retry-After", "5")
		http.Error(w, "gateway is at its connection limit", http.StatusServiceUnavailable)
		return
	}
	ip, _, _ := net.SplitHostPort(r.RemoteAddr)
	if n.deps.Connects != nil && !n.deps.Connects.AllowConnect(ip) {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "too many connections from your address; retry later", http.StatusTooManyRequests)
		return
	}
	conn, err := n.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered
	}
	c := newClient(n, conn, ip)
	n.metrics.connects.Add(1)
	n.wg.Add(1)
	defer n.wg.Done()
	n.all.Store(c, struct{}{})
	defer n.all.Delete(c)
	if n.draining.Load() {
		conn.Close()
		return
	}
	go c.writeLoop()
	reason := n.readLoop(r.Context(), c)
	c.close(reason, nil)
	<-c.done
	if c.user != "" {
		n.deps.Metrics.Disconnected(c.closeReason())
	}
	if c.user != "" && n.hub.remove(c) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 2*time.Second)
		if err := n.deps.Sessions.Unregister(ctx, sessions.Session{User: c.user, Device: c.device, Gateway: n.cfg.ID}); err != nil {
			n.log.Warn("unregister session", "err", err)
		}
		cancel()
	}
	n.log.Debug("connection closed", "user", c.user, "device", c.device, "reason", c.closeReason())
}

func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("gateway: encode %T: %v", v, err)) // our own frame types always encode
	}
	return b
}

func errFrame(id, cmid, code, msg string) []byte {
	return encode(protocol.Error{T: protocol.TypeError, ID: id, CMID: cmid, Code: code, Message: msg, Retryable: protocol.Retryable(code)})
}

// readLoop authenticates the connection and handles frames until it ends;
// it returns the disconnect reason.
func (n *Node) readLoop(ctx context.Context, c *client) string {
	c.conn.SetReadLimit(int64(n.cfg.MaxFrameBytes))
	c.conn.SetReadDeadline(time.Now().Add(n.cfg.AuthTimeout))
	if reason := n.authenticate(ctx, c); reason != "" {
		return reason
	}
	c.conn.SetPongHandler(func(string) error {
		c.conn.SetReadDeadline(time.Now().Add(n.cfg.IdleTimeout))
		return nil
	})
	bad := 0
	for {
		c.conn.SetReadDeadline(time.Now().Add(n.cfg.IdleTimeout))
		typ, data, err := c.conn.ReadMessage()
		if err != nil {
			return n.readErrReason(c, err)
		}
		n.metrics.framesIn.Add(1)
		if typ != websocket.TextMessage {
			c.send(errFrame("", "", protocol.CodeBadFrame, "frames must be JSON text frames"), false)
			bad++
		} else if ok := n.handle(ctx, c, data); !ok {
			bad++
		} else {
			bad = 0
		}
		if bad >= n.cfg.MaxBadFrames {
			c.close(ReasonAbuse, errFrame("", "", protocol.CodeBadFrame, "too many invalid frames; closing"))
			return ReasonAbuse
		}
	}
}

func (n *Node) readErrReason(c *client, err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, websocket.ErrReadLimit):
		// gorilla has already sent close 1009 (message too big).
		return ReasonTooLarge
	case errors.As(err, &ne) && ne.Timeout():
		return ReasonIdle
	case websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseNoStatusReceived):
		return ReasonClientClosed
	}
	return ReasonReadError
}

// authenticate reads the auth frame; it returns a disconnect reason on failure.
func (n *Node) authenticate(ctx context.Context, c *client) string {
	typ, data, err := c.conn.ReadMessage()
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.close(ReasonAuthTimeout, errFrame("", "", protocol.CodeUnauthenticated, "no auth frame within "+n.cfg.AuthTimeout.String()))
			return ReasonAuthTimeout
		}
		return n.readErrReason(c, err)
	}
	if typ != websocket.TextMessage {
		c.close(ReasonAuthFailed, errFrame("", "", protocol.CodeUnauthenticated, "the first frame must be a JSON auth frame"))
		return ReasonAuthFailed
	}
	in, ferr := protocol.Decode(data, n.cfg.MaxBodyBytes())
	if in == nil || in.T != protocol.TypeAuth {
		c.close(ReasonAuthFailed, errFrame("", "", protocol.CodeUnauthenticated, "the first frame must be {\"t\":\"auth\",\"token\":..,\"device\":..}"))
		return ReasonAuthFailed
	}
	if ferr != nil {
		c.close(ReasonAuthFailed, errFrame("", "", ferr.Code, ferr.Message))
		return ReasonAuthFailed
	}
	claims, err := n.deps.Tokens.Verify(in.Token)
	if err != nil {
		c.close(ReasonAuthFailed, errFrame("", "", protocol.CodeUnauthenticated, "invalid or expired token: log in again"))
		return ReasonAuthFailed
	}
	c.user, c.device = claims.UserID, in.Device

	if old := n.hub.add(c); old != nil {
		old.close(ReasonReplaced, encode(protocol.Kicked{T: protocol.TypeKicked, Reason: ReasonReplaced}))
	}
	sess := sessions.Session{User: c.user, Device: c.device, Gateway: n.cfg.ID}
	n.kickElsewhere(ctx, sess)
	if err := n.deps.Sessions.Register(ctx, sess, n.cfg.SessionTTL); err != nil {
		// Not fatal: the next heartbeat registers it; until then the user
		// still gets everything by sync.
		n.log.Warn("register session", "err", err)
	}
	inboxSeq, convs, err := n.deps.Backend.State(ctx, c.user)
	if err != nil {
		c.close(ReasonShutdown, errFrame("", "", protocol.CodeUnavailable, "cannot load your inbox state; reconnect"))
		return ReasonShutdown
	}
	c.send(encode(protocol.AuthOK{T: protocol.TypeAuthOK, User: c.user, Device: c.device, InboxSeq: inboxSeq, Protocol: protocol.Version, Convs: convs}), false)
	c.markReady()
	n.deps.Metrics.Connected()
	return ""
}

// kickElsewhere tells another gateway holding the same user and device to
// close that older connection.
func (n *Node) kickElsewhere(ctx context.Context, s sessions.Session) {
	live, err := n.deps.Sessions.Lookup(ctx, []string{s.User})
	if err != nil {
		return
	}
	for _, o := range live[s.User] {
		if o.Device != s.Device || o.Gateway == s.Gateway {
			continue
		}
		p := messageapi.Push{Kind: messageapi.PushKick, Frame: encode(protocol.Kicked{T: protocol.TypeKicked, Reason: ReasonReplaced}), Targets: []messageapi.Target{{User: s.User, Device: s.Device}}}
		if err := n.deps.Push.PublishPush(ctx, o.Gateway, bus.Message{Key: o.Gateway, Body: encode(p)}); err != nil {
			n.log.Warn("kick on other gateway", "gateway", o.Gateway, "err", err)
		}
	}
}

// handle processes one frame; false means it was invalid.
func (n *Node) handle(ctx context.Context, c *client, data []byte) bool {
	in, ferr := protocol.Decode(data, n.cfg.MaxBodyBytes())
	if ferr != nil {
		n.deps.Metrics.FrameIn("invalid")
		id, cmid := "", ""
		if in != nil {
			id, cmid = in.ID, in.CMID
		}
		c.send(errFrame(id, cmid, ferr.Code, ferr.Message), false)
		return false
	}
	n.deps.Metrics.FrameIn(in.T)
	switch in.T {
	case protocol.TypePing:
		c.send(encode(protocol.Simple{T: protocol.TypePong}), false)
	case protocol.TypeAuth:
		c.send(errFrame(in.ID, "", protocol.CodeBadFrame, "already authenticated"), false)
		return false
	case protocol.TypeSend:
		n.handleSend(ctx, c, in)
	case protocol.TypeSync:
		res, err := n.deps.Backend.Sync(ctx, c.user, *in.After, in.Limit)
		if err != nil {
			c.send(n.backendErr(in.ID, err), false)
			return true
		}
		res.ID = in.ID
		c.send(encode(res), false)
	case protocol.TypePull:
		var to int64
		if in.ToSeq != nil {
			to = *in.ToSeq
		}
		res, err := n.deps.Backend.Pull(ctx, c.user, in.Conv, *in.From, to, in.Limit)
		if err != nil {
			c.send(n.backendErr(in.ID, err), false)
			return !errors.Is(err, messageapi.ErrBadRequest)
		}
		res.ID = in.ID
		c.send(encode(res), false)
	case protocol.TypeRead:
		if err := n.deps.Backend.Read(ctx, c.user, in.Conv, *in.Seq); err != nil {
			c.send(n.backendErr(in.ID, err), false)
		}
	case protocol.TypeDelivered:
		// Accepted; delivery receipts are not tracked server-side in v1.
	}
	return true
}

func (n *Node) backendErr(id string, err error) []byte {
	switch {
	case errors.Is(err, messageapi.ErrForbidden):
		return errFrame(id, "", protocol.CodeForbidden, "you are not a member of this conversation")
	case errors.Is(err, messageapi.ErrBadRequest):
		return errFrame(id, "", protocol.CodeBadFrame, err.Error())
	case errors.Is(err, messageapi.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return errFrame(id, "", protocol.CodeUnavailable, "temporarily unavailable; retry")
	}
	n.log.Error("backend call failed", "err", err)
	return errFrame(id, "", protocol.CodeInternal, "internal error; retry later")
}

func (n *Node) handleSend(ctx context.Context, c *client, in *protocol.Inbound) {
	if n.deps.Limiter != nil {
		if ok, wait := n.deps.Limiter.AllowSend(c.user); !ok {
			f := protocol.Error{T: protocol.TypeError, CMID: in.CMID, Code: protocol.CodeRateLimited, Message: "sending too fast; retry later", Retryable: true, RetryAfterMs: max(wait.Milliseconds(), 1)}
			c.send(encode(f), false)
			return
		}
	}
	conv := protocol.GroupConv(in.To.Group)
	if in.To.User != "" {
		conv = protocol.DirectConv(c.user, in.To.User)
	}
	up := messageapi.Upstream{Gateway: n.cfg.ID, User: c.user, Device: c.device, CMID: in.CMID, Conv: conv, To: *in.To, Kind: in.Kind, Body: *in.Body, TS: time.Now().UnixMilli()}
	ctx, span := n.deps.Tracer.Start(ctx, "gateway.send", trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("im.conv", conv), attribute.String("im.cmid", in.CMID)))
	defer span.End()
	pctx, cancel := context.WithTimeout(ctx, n.cfg.PublishTimeout)
	defer cancel()
	msg := bus.Message{Key: conv, Body: encode(up), Header: telemetry.Inject(ctx, nil)}
	publish := func() error { return n.deps.Upstream.PublishUpstream(pctx, msg) }
	var err error
	if n.deps.PublishGuard != nil {
		err = n.deps.PublishGuard(publish)
	} else {
		err = publish()
	}
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		n.log.Warn("publish upstream", "err", err)
		f := protocol.Error{T: protocol.TypeError, CMID: in.CMID, Code: protocol.CodeUnavailable, Retryable: true,
			Message: "message not accepted (messaging backend unavailable); retry with the same cmid"}
		if wait := flow.RetryAfter(err); wait > 0 {
			f.RetryAfterMs = max(wait.Milliseconds(), 1)
		}
		c.send(encode(f), false)
		return
	}
	n.metrics.sends.Add(1)
}

// HandlePush writes one push record to its target connections.
func (n *Node) HandlePush(ctx context.Context, m bus.Message) error {
	var p messageapi.Push
	if err := json.Unmarshal(m.Body, &p); err != nil {
		n.log.Error("dropping malformed push", "err", err)
		return nil
	}
	n.metrics.pushes.Add(1)
	n.deps.Metrics.Pushed()
	_, span := n.deps.Tracer.Start(telemetry.Extract(ctx, m.Header), "gateway.push",
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attribute.Int("im.targets", len(p.Targets))))
	defer span.End()
	now := time.Now()
	for _, t := range p.Targets {
		c := n.hub.lookup(t.User, t.Device)
		if c == nil {
			continue // gone: the client syncs when it reconnects
		}
		frame := messageapi.FrameFor(p.Frame, t.InboxSeq)
		if n.cfg.DropDelivery != nil && n.cfg.DropDelivery(t.User, t.Device, frame) {
			continue
		}
		if p.Kind == messageapi.PushKick {
			if n.hub.remove(c) {
				c.close(ReasonReplaced, frame)
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
		c.send(frame, true)
	}
	return nil
}

// Run consumes this gateway's push stream and keeps its sessions alive until
// ctx ends; then it drains connections (reconnect frames) and waits for them.
func (n *Node) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return n.deps.Pushes.ConsumePush(gctx, n.cfg.ID, n.HandlePush) })
	g.Go(func() error { return n.heartbeat(gctx) })
	err := g.Wait()
	n.Drain()
	return err
}

func (n *Node) heartbeat(ctx context.Context) error {
	t := time.NewTicker(n.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		var live []sessions.Session
		n.hub.each(func(c *client) {
			live = append(live, sessions.Session{User: c.user, Device: c.device, Gateway: n.cfg.ID})
		})
		hctx, cancel := context.WithTimeout(ctx, n.cfg.HeartbeatInterval)
		if err := n.deps.Sessions.Heartbeat(hctx, n.cfg.ID, live, n.cfg.SessionTTL); err != nil && ctx.Err() == nil {
			n.log.Warn("session heartbeat failed", "err", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Drain refuses new connections, asks every client to reconnect elsewhere
// after a random delay (to spread the reconnect storm), and waits for the
// connections to end.
func (n *Node) Drain() {
	n.draining.Store(true)
	n.all.Range(func(k, _ any) bool {
		k.(*client).close(ReasonShutdown, encode(protocol.Reconnect{T: protocol.TypeReconnect, AfterMs: rand.Int64N(2000)}))
		return true
	})
	n.wg.Wait()
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

var _ = strconv.Itoa
