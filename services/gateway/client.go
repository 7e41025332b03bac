package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"

	"github.com/imkube/imkube/api/protocol"
	"github.com/imkube/imkube/internal/auth"
	"github.com/imkube/imkube/internal/bus"
	"github.com/imkube/imkube/internal/flow"
	"github.com/imkube/imkube/internal/messageapi"
	"github.com/imkube/imkube/internal/sessions"
	"github.com/imkube/imkube/internal/telemetry"
)

// Client is one WebSocket connection and its protocol: authentication, then
// send, sync, pull and read frames. Its HTTP handler goroutine reads; one
// writer goroutine writes from a queue bounded in bytes.
type Client struct {
	node   *Node
	conn   *websocket.Conn
	ip     string
	cancel context.CancelFunc // ends the context of the connection's calls
	writer *writer
	done   chan struct{} // closed when the writer goroutine has exited
	reads  *rate.Limiter // read frames (used by the reading goroutine only)
	sig    clientSignals // typing gate and presence subscriptions (signals.go)
	notify notifyGate    // read-diffusion notify coalescing (notify.go)

	// Set once by authenticate, before the client is added to the hub.
	user, device string
	token        auth.Claims // of the token the connection authenticated with

	mu           sync.Mutex
	ready        bool     // auth_ok queued: pushes may be queued too
	pending      [][]byte // pushes held back until auth_ok is queued
	pendingBytes int
	disconnect   *Disconnect // why the connection ends; the first reason wins
}

func newClient(n *Node, conn *websocket.Conn, ip string, cancel context.CancelFunc) *Client {
	c := &Client{node: n, conn: conn, ip: ip, cancel: cancel,
		reads: rate.NewLimiter(rate.Limit(n.cfg.ReadRate), n.cfg.ReadBurst)}
	c.writer = newWriter(writerConfig{
		WriteFn:      func(f []byte) error { return c.writeFrames(f) },
		WriteManyFn:  c.writeFrames,
		MaxQueueSize: n.cfg.SendQueueBytes,
		PingFn:       c.writePing,
		OnDone:       c.writerDone,
	})
	c.done = c.writer.done
	return c
}

// open authenticates the connection (from the HTTP handler's goroutine);
// an error means it ended (pass it to end).
func (c *Client) open(ctx context.Context) error {
	cfg := &c.node.cfg
	c.writer.start()
	c.conn.SetReadLimit(int64(cfg.MaxFrameBytes))
	c.conn.SetReadDeadline(time.Now().Add(cfg.AuthTimeout))
	return c.authenticate(ctx)
}

// end closes the connection because of err (a Disconnect, or a read error)
// and unregisters its session.
func (c *Client) end(ctx context.Context, err error) {
	n := c.node
	var d Disconnect
	if !errors.As(err, &d) {
		d = DisconnectReadError
	}
	c.close(d, nil)
	c.stopNotifies()
	<-c.done
	n.presenceDrop(c)
	d = c.reason()
	if c.user != "" {
		n.deps.Metrics.Disconnected(d.Reason)
	}
	if c.user != "" && n.hub.remove(c) {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		if err := n.deps.Sessions.Unregister(uctx, sessions.Session{User: c.user, Device: c.device, Gateway: n.cfg.ID}); err != nil {
			n.log.Warn("unregister session", "err", err)
		}
		n.presenceDisconnected(uctx, c.user)
		cancel()
	}
	n.log.Debug("connection closed", "user", c.user, "device", c.device, "reason", d.Reason)
}

// send queues a frame; a client too far behind is disconnected.
func (c *Client) send(frame []byte) {
	if !c.writer.enqueue(frame) {
		c.close(DisconnectSlowConsumer, nil)
	}
}

// reply queues a frame that answers the client's own request. A full queue
// does not disconnect the client: the reply waits for room (and the reader
// with it), so a client that asks faster than it reads is slowed down, and
// no reply can trip the slow-consumer rule on its own.
func (c *Client) reply(ctx context.Context, frame []byte) {
	_ = c.writer.enqueueWait(ctx, frame) // an error means the connection is ending
}

// pageBytes is the encoded size a sync or pull page may take besides the
// echoed request id (which JSON may escape to six times its length).
func (c *Client) pageBytes(id string) int {
	return max(c.node.cfg.MaxPageBytes-6*len(id), 1024)
}

// push queues a push frame. Until auth_ok is queued, pushes are held back
// (within the same byte bound) so that auth_ok is always the first frame.
func (c *Client) push(frame []byte) {
	c.mu.Lock()
	if !c.ready {
		if c.pendingBytes+len(frame) > c.node.cfg.SendQueueBytes {
			c.mu.Unlock()
			c.close(DisconnectSlowConsumer, nil)
			return
		}
		c.pendingBytes += len(frame)
		c.pending = append(c.pending, frame)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.send(frame)
}

// markReady queues the held-back pushes behind the frames already queued.
func (c *Client) markReady() {
	c.mu.Lock()
	c.ready = true
	pending := c.pending
	c.pending, c.pendingBytes = nil, 0
	for _, f := range pending {
		if !c.writer.enqueue(f) {
			c.mu.Unlock()
			c.close(DisconnectSlowConsumer, nil)
			return
		}
	}
	c.mu.Unlock()
}

// close ends the connection: final (if any) is written after what is already
// queued (dropped for a slow consumer), then the socket closes with d's code
// and reason. The first reason wins.
func (c *Client) close(d Disconnect, final []byte) {
	c.mu.Lock()
	if c.disconnect != nil {
		c.mu.Unlock()
		return
	}
	c.disconnect = &d
	c.mu.Unlock()
	c.writer.close(d != DisconnectSlowConsumer, final)
}

// fail closes the connection with d and final and returns d.
func (c *Client) fail(d Disconnect, final []byte) error {
	c.close(d, final)
	return d
}

// forceClose ends the connection now: its calls are cancelled and the socket
// is closed under the reader and the writer, whatever they are waiting for.
func (c *Client) forceClose(d Disconnect) {
	c.close(d, nil)
	c.cancel()
	c.conn.Close()
}

func (c *Client) reason() Disconnect {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.disconnect == nil {
		return Disconnect{}
	}
	return *c.disconnect
}

// writerDone runs when the writer has finished: after a failed write it
// closes the connection; otherwise it sends the close frame first.
func (c *Client) writerDone(err error) {
	defer c.conn.Close()
	if err != nil {
		c.close(DisconnectWriteError, nil)
		return
	}
	d := c.reason()
	c.conn.SetWriteDeadline(time.Now().Add(time.Second))
	_ = c.conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(d.Code, d.Reason))
}

// maxCoalesce bounds the bytes of frames coalesced into one socket write.
const maxCoalesce = 32 << 10

// frameBufs holds the buffers frames are coalesced in; an idle connection
// holds none (gorilla's write buffer is not used for data frames either).
var frameBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// writeFrames writes frames as WebSocket text frames (server frames are not
// masked, and no extension is negotiated), coalesced into as few socket
// writes as possible: queued pushes cost one syscall, not one each. Control
// frames (ping, close, and the pongs gorilla answers from the reading
// goroutine) go through gorilla; each socket write is atomic, so frames do
// not interleave.
func (c *Client) writeFrames(frames ...[]byte) error {
	nc := c.conn.NetConn()
	if err := nc.SetWriteDeadline(time.Now().Add(c.node.cfg.WriteTimeout)); err != nil {
		return err
	}
	bp := frameBufs.Get().(*[]byte)
	buf := (*bp)[:0]
	defer func() {
		if cap(buf) <= 2*maxCoalesce {
			*bp = buf[:0]
			frameBufs.Put(bp)
		}
	}()
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		_, err := nc.Write(buf)
		buf = buf[:0]
		return err
	}
	for _, f := range frames {
		if len(buf) > 0 && len(buf)+len(f)+10 > maxCoalesce {
			if err := flush(); err != nil {
				return err
			}
		}
		if len(f) > maxCoalesce { // large: header and frame in one writev, without a copy
			var hdr [10]byte
			bufs := net.Buffers{appendFrameHeader(hdr[:0], len(f)), f}
			if _, err := bufs.WriteTo(nc); err != nil {
				return err
			}
			continue
		}
		buf = append(appendFrameHeader(buf, len(f)), f...)
	}
	if err := flush(); err != nil {
		return err
	}
	c.node.metrics.framesOut.Add(int64(len(frames)))
	for _, f := range frames {
		c.node.deps.Metrics.FrameOut(frameType(f), len(f))
	}
	return nil
}

// appendFrameHeader appends the header of an unmasked, final text frame of
// n payload bytes (RFC 6455 5.2).
func appendFrameHeader(b []byte, n int) []byte {
	const finText = 0x81
	switch {
	case n < 126:
		return append(b, finText, byte(n))
	case n <= 0xffff:
		return append(b, finText, 126, byte(n>>8), byte(n))
	}
	return append(b, finText, 127, byte(n>>56), byte(n>>48), byte(n>>40), byte(n>>32), byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

func (c *Client) writePing() error {
	c.conn.SetWriteDeadline(time.Now().Add(c.node.cfg.WriteTimeout))
	return c.conn.WriteMessage(websocket.PingMessage, nil)
}

// readLoop handles the frames of an authenticated connection until it ends;
// it returns why, as a Disconnect.
func (c *Client) readLoop(ctx context.Context) error {
	cfg := &c.node.cfg
	defer c.reauthAt(c.token).Stop()
	c.conn.SetPongHandler(func(string) error {
		c.conn.SetReadDeadline(time.Now().Add(cfg.IdleTimeout))
		return nil
	})
	bad := 0
	for {
		c.conn.SetReadDeadline(time.Now().Add(cfg.IdleTimeout))
		typ, data, err := c.conn.ReadMessage()
		if err != nil {
			return readErr(err)
		}
		c.node.metrics.framesIn.Add(1)
		if typ != websocket.TextMessage {
			c.reply(ctx, errFrame("", "", protocol.CodeBadFrame, "frames must be JSON text frames"))
			bad++
		} else if ok := c.handle(ctx, data); !ok {
			bad++
		} else {
			bad = 0
		}
		if bad >= cfg.MaxBadFrames {
			return c.fail(DisconnectBadFrames, errFrame("", "", protocol.CodeBadFrame, "too many invalid frames; closing"))
		}
	}
}

// reauthAt closes the connection with a reauth frame shortly before the
// token expires (Config.ReauthBefore, at most a quarter of the token's
// lifetime): the client refreshes the still-valid token and reconnects, and
// no connection outlives its token.
func (c *Client) reauthAt(t auth.Claims) *time.Timer {
	before := c.node.cfg.ReauthBefore
	if life := t.ExpiresAt.Sub(t.IssuedAt); t.IssuedAt.IsZero() || life <= 0 {
		before = 0
	} else {
		before = min(before, life/4)
	}
	return time.AfterFunc(time.Until(t.ExpiresAt.Add(-before)), func() {
		c.close(DisconnectTokenExpired, encode(protocol.Reauth{T: protocol.TypeReauth}))
	})
}

// readErr says why a read failed.
func readErr(err error) Disconnect {
	var ne net.Error
	switch {
	case errors.Is(err, websocket.ErrReadLimit):
		// gorilla has already sent close 1009 (message too big).
		return DisconnectTooLarge
	case errors.As(err, &ne) && ne.Timeout():
		return DisconnectIdle
	case websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseNoStatusReceived):
		return DisconnectClientClosed
	}
	return DisconnectReadError
}

// authenticate reads the auth frame, registers the session and queues
// auth_ok; it returns a Disconnect on failure.
func (c *Client) authenticate(ctx context.Context) error {
	n := c.node
	typ, data, err := c.conn.ReadMessage()
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return c.fail(DisconnectAuthTimeout, errFrame("", "", protocol.CodeUnauthenticated, "no auth frame within "+n.cfg.AuthTimeout.String()))
		}
		return readErr(err)
	}
	if typ != websocket.TextMessage {
		return c.fail(DisconnectAuthFailed, errFrame("", "", protocol.CodeUnauthenticated, "the first frame must be a JSON auth frame"))
	}
	in, ferr := protocol.Decode(data, n.cfg.MaxBodyBytes())
	if in == nil || in.T != protocol.TypeAuth {
		return c.fail(DisconnectAuthFailed, errFrame("", "", protocol.CodeUnauthenticated, "the first frame must be {\"t\":\"auth\",\"token\":..,\"device\":..}"))
	}
	if ferr != nil {
		return c.fail(DisconnectAuthFailed, errFrame("", "", ferr.Code, ferr.Message))
	}
	claims, err := n.deps.Tokens.Verify(in.Token)
	if err != nil {
		return c.fail(DisconnectAuthFailed, errFrame("", "", protocol.CodeUnauthenticated, "invalid or expired token: log in again"))
	}
	c.user, c.device, c.token = claims.UserID, in.Device, claims

	if old := n.hub.add(c); old != nil {
		old.close(DisconnectKicked, kickedFrame())
	}
	sess := sessions.Session{User: c.user, Device: c.device, Gateway: n.cfg.ID}
	c.kickElsewhere(ctx, sess)
	if err := n.deps.Sessions.Register(ctx, sess, n.cfg.SessionTTL); err != nil {
		// Not fatal: the next heartbeat registers it; until then the user
		// still gets everything by sync.
		n.log.Warn("register session", "err", err)
	}
	inboxSeq, convs, err := n.deps.Backend.State(ctx, c.user)
	if errors.Is(err, messageapi.ErrUnauthenticated) {
		return c.fail(DisconnectAuthFailed, errFrame("", "", protocol.CodeUnauthenticated, "this token's account does not exist: log in again"))
	}
	if errors.Is(err, messageapi.ErrBanned) {
		return c.fail(DisconnectAuthFailed, errFrame("", "", protocol.CodeBanned, "this account is banned"))
	}
	if err != nil {
		return c.fail(DisconnectShutdown, errFrame("", "", protocol.CodeUnavailable, "cannot load your inbox state; reconnect"))
	}
	c.send(encode(protocol.AuthOK{T: protocol.TypeAuthOK, User: c.user, Device: c.device, InboxSeq: inboxSeq, Protocol: protocol.Version, Convs: convs}))
	c.markReady()
	n.presenceConnected(ctx, c.user)
	n.deps.Metrics.Connected()
	return nil
}

// kickElsewhere tells another gateway holding the same user and device to
// close that older connection.
func (c *Client) kickElsewhere(ctx context.Context, s sessions.Session) {
	n := c.node
	live, err := n.deps.Sessions.Lookup(ctx, []string{s.User})
	if err != nil {
		return
	}
	for _, o := range live[s.User] {
		if o.Device != s.Device || o.Gateway == s.Gateway {
			continue
		}
		p := &messageapi.Push{Kind: messageapi.PushKick, Frame: kickedFrame(), Targets: []messageapi.Target{{User: s.User, Device: s.Device}}}
		if err := n.deps.Push.PublishPush(ctx, o.Gateway, bus.Message{Key: o.Gateway, Value: p}); err != nil {
			n.log.Warn("kick on other gateway", "gateway", o.Gateway, "err", err)
		}
	}
}

// handle processes one frame; false means it was invalid.
func (c *Client) handle(ctx context.Context, data []byte) bool {
	n := c.node
	in, ferr := protocol.Decode(data, n.cfg.MaxBodyBytes())
	if ferr != nil {
		n.deps.Metrics.FrameIn("invalid")
		id, cmid := "", ""
		if in != nil {
			id, cmid = in.ID, in.CMID
		}
		c.reply(ctx, errFrame(id, cmid, ferr.Code, ferr.Message))
		return false
	}
	n.deps.Metrics.FrameIn(in.T)
	switch in.T {
	case protocol.TypePing:
		c.reply(ctx, encode(protocol.Simple{T: protocol.TypePong}))
	case protocol.TypeAuth:
		c.reply(ctx, errFrame(in.ID, "", protocol.CodeBadFrame, "already authenticated"))
		return false
	case protocol.TypeSend:
		c.handleSend(ctx, in)
	case protocol.TypeSync:
		res, err := n.deps.Backend.Sync(ctx, c.user, *in.After, in.Limit, c.pageBytes(in.ID))
		if err != nil {
			c.reply(ctx, c.backendErr(in.ID, err))
			return true
		}
		res.ID = in.ID
		c.reply(ctx, encode(res))
	case protocol.TypeRecall, protocol.TypeEdit, protocol.TypeDelete:
		c.handleLifecycle(ctx, in)
	case protocol.TypePull:
		if in.Before != nil {
			return c.handlePullBefore(ctx, in)
		}
		var to int64
		if in.ToSeq != nil {
			to = *in.ToSeq
		}
		res, err := n.deps.Backend.Pull(ctx, c.user, in.Conv, *in.From, to, in.Limit, c.pageBytes(in.ID))
		if err != nil {
			c.reply(ctx, c.backendErr(in.ID, err))
			return !errors.Is(err, messageapi.ErrBadRequest)
		}
		res.ID = in.ID
		c.reply(ctx, encode(res))
	case protocol.TypeRead:
		if r := c.reads.Reserve(); r.Delay() > 0 {
			wait := r.Delay()
			r.Cancel() // the frame is refused, so it takes no token
			c.reply(ctx, encode(protocol.Error{T: protocol.TypeError, ID: in.ID, Code: protocol.CodeRateLimited, Retryable: true,
				Message: "marking as read too fast; retry later", RetryAfterMs: max(wait.Milliseconds(), 1)}))
			return true
		}
		if err := n.deps.Backend.Read(ctx, c.user, c.device, in.Conv, *in.Seq); err != nil {
			c.reply(ctx, c.backendErr(in.ID, err))
		}
	case protocol.TypeDelivered, protocol.TypeTyping, protocol.TypePresenceSub, protocol.TypePresenceUnsub:
		c.handleSignal(ctx, in)
	}
	return true
}

func (c *Client) backendErr(id string, err error) []byte {
	switch {
	case errors.Is(err, messageapi.ErrForbidden):
		return errFrame(id, "", protocol.CodeForbidden, "you are not a member of this conversation")
	case errors.Is(err, messageapi.ErrBadRequest):
		return errFrame(id, "", protocol.CodeBadFrame, err.Error())
	case errors.Is(err, messageapi.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return errFrame(id, "", protocol.CodeUnavailable, "temporarily unavailable; retry")
	}
	c.node.log.Error("backend call failed", "err", err)
	return errFrame(id, "", protocol.CodeInternal, "internal error; retry later")
}

func (c *Client) handleSend(ctx context.Context, in *protocol.Inbound) {
	n := c.node
	if n.deps.Limiter != nil {
		if ok, wait := n.deps.Limiter.AllowSend(c.user); !ok {
			f := protocol.Error{T: protocol.TypeError, CMID: in.CMID, Code: protocol.CodeRateLimited, Message: "sending too fast; retry later", Retryable: true, RetryAfterMs: max(wait.Milliseconds(), 1)}
			c.reply(ctx, encode(f))
			return
		}
	}
	conv := protocol.GroupConv(in.To.Group)
	if in.To.User != "" {
		conv = protocol.DirectConv(c.user, in.To.User)
	}
	up := messageapi.Upstream{Gateway: n.cfg.ID, User: c.user, Device: c.device, CMID: in.CMID, Conv: conv, To: *in.To, Kind: in.Kind, Body: *in.Body, TS: time.Now().UnixMilli()}
	if in.ReplyTo != nil {
		up.ReplyTo = *in.ReplyTo
	}
	up.Mentions = in.Mentions
	if err := c.publishUpstream(ctx, "gateway.send", &up); err != nil {
		f := protocol.Error{T: protocol.TypeError, CMID: in.CMID, Code: protocol.CodeUnavailable, Retryable: true,
			Message: "message not accepted (messaging backend unavailable); retry with the same cmid"}
		if wait := flow.RetryAfter(err); wait > 0 {
			f.RetryAfterMs = max(wait.Milliseconds(), 1)
		}
		c.reply(ctx, encode(f))
		return
	}
	n.metrics.sends.Add(1)
}

// publishUpstream publishes up to the upstream stream, keyed by its
// conversation, through the publish guard.
func (c *Client) publishUpstream(ctx context.Context, spanName string, up *messageapi.Upstream) error {
	n := c.node
	ctx, span := n.deps.Tracer.Start(ctx, spanName, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("im.conv", up.Conv), attribute.String("im.cmid", up.CMID)))
	defer span.End()
	pctx, cancel := context.WithTimeout(ctx, n.cfg.PublishTimeout)
	defer cancel()
	published := *up // the bus may hand it to the consumer as it is: never changed after this
	msg := bus.Message{Key: up.Conv, Value: &published, Header: telemetry.Inject(ctx, nil)}
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
	}
	return err
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

func kickedFrame() []byte {
	return encode(protocol.Kicked{T: protocol.TypeKicked, Reason: DisconnectKicked.Reason})
}

// frameType reads the type of a frame we encoded: every server frame starts
// with {"t":"<type>".
func frameType(b []byte) string {
	const prefix = `{"t":"`
	if len(b) < len(prefix) || string(b[:len(prefix)]) != prefix {
		return "other"
	}
	rest := b[len(prefix):]
	for i, ch := range rest {
		if ch == '"' {
			return string(rest[:i])
		}
		if i > 16 {
			break
		}
	}
	return "other"
}
