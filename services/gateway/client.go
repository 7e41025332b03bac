package gateway

import (
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Disconnect reasons (typed, reported in logs and metrics).
const (
	ReasonClientClosed = "client_closed"
	ReasonReadError    = "read_error"
	ReasonWriteError   = "write_error"
	ReasonSlowConsumer = "slow_consumer"
	ReasonReplaced     = "replaced"
	ReasonAuthFailed   = "auth_failed"
	ReasonAuthTimeout  = "auth_timeout"
	ReasonIdle         = "idle_timeout"
	ReasonTooLarge     = "frame_too_large"
	ReasonAbuse        = "protocol_abuse"
	ReasonShutdown     = "shutdown"
)

// client is one WebSocket connection: the HTTP handler goroutine reads, one
// writer goroutine writes from a queue bounded in bytes.
type client struct {
	node   *Node
	conn   *websocket.Conn
	ip     string
	user   string
	device string

	mu       sync.Mutex
	queue    [][]byte
	queued   int  // bytes in queue
	ready    bool // auth_ok sent: pushes may be written
	pending  [][]byte
	closing  bool
	reason   string
	wake     chan struct{}
	done     chan struct{} // closed when the writer has exited
	lastRead time.Time
}

func newClient(n *Node, conn *websocket.Conn, ip string) *client {
	return &client{node: n, conn: conn, ip: ip, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// send queues a frame for writing. Before auth completes, pushes are held
// back (push == true) so that auth_ok is always the first frame.
func (c *client) send(b []byte, push bool) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	if c.queued+len(b) > c.node.cfg.SendQueueBytes {
		c.mu.Unlock()
		c.close(ReasonSlowConsumer, nil)
		return
	}
	c.queued += len(b)
	if push && !c.ready {
		c.pending = append(c.pending, b)
	} else {
		c.queue = append(c.queue, b)
	}
	c.mu.Unlock()
	c.signal()
}

// markReady moves held-back pushes behind the frames already queued.
func (c *client) markReady() {
	c.mu.Lock()
	c.ready = true
	c.queue = append(c.queue, c.pending...)
	c.pending = nil
	c.mu.Unlock()
	c.signal()
}

func (c *client) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// close ends the connection: final (if any) is written after what is already
// queued, then the socket closes. The first reason wins.
func (c *client) close(reason string, final []byte) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.closing = true
	c.reason = reason
	if reason == ReasonSlowConsumer {
		c.queue = nil // it cannot keep up: do not wait for the backlog
	}
	if final != nil {
		c.queue = append(c.queue, final)
	}
	c.mu.Unlock()
	c.signal()
}

func (c *client) closeReason() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reason
}

// writeLoop writes queued frames and pings until the client closes.
func (c *client) writeLoop() {
	defer close(c.done)
	defer c.conn.Close()
	ping := time.NewTicker(c.node.cfg.PingInterval)
	defer ping.Stop()
	for {
		select {
		case <-c.wake:
		case <-ping.C:
			c.conn.SetWriteDeadline(time.Now().Add(c.node.cfg.WriteTimeout))
			if err := c.conn.WriteMessage(websocket.PingMessage, nil); err != nil {
				c.close(ReasonWriteError, nil)
				return
			}
			continue
		}
		c.mu.Lock()
		batch := c.queue
		c.queue = nil
		closing := c.closing
		c.mu.Unlock()
		for _, b := range batch {
			c.conn.SetWriteDeadline(time.Now().Add(c.node.cfg.WriteTimeout))
			if err := c.conn.WriteMessage(websocket.TextMessage, b); err != nil {
				c.close(ReasonWriteError, nil)
				return
			}
			c.mu.Lock()
			c.queued -= len(b)
			c.mu.Unlock()
			c.node.metrics.framesOut.Add(1)
			c.node.deps.Metrics.FrameOut(frameType(b), len(b))
		}
		if closing {
			c.conn.SetWriteDeadline(time.Now().Add(time.Second))
			_ = c.conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, c.closeReason()))
			return
		}
	}
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
