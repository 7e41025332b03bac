package gateway

import (
	"context"
	"sync"
	"time"
)

// writerConfig is what a writer needs to know about the socket it writes to.
type writerConfig struct {
	// WriteFn writes one frame.
	WriteFn func(frame []byte) error
	// WriteManyFn writes several queued frames in order (nil: WriteFn for
	// each). It is the seam for coalescing them into fewer socket writes.
	WriteManyFn func(frames ...[]byte) error
	// MaxQueueSize bounds the bytes queued and being written.
	MaxQueueSize int
	// PingFn writes a ping; it is called from the writing goroutine when
	// ping asked for one.
	PingFn func() error
	// OnDone, if set, is called once from the writing goroutine when the
	// writer has finished (closed and flushed, or a write failed) with run's
	// result.
	OnDone func(err error)
}

// writer is a queue of outgoing frames bounded in bytes. A goroutine writes
// it only while there is something to write: an idle connection has no
// writing goroutine (and no timer: pings are asked for by the node's shared
// pinger). It knows nothing of the protocol, the client or the node.
type writer struct {
	cfg  writerConfig
	room chan struct{} // signalled when queued bytes were written or the writer closed
	done chan struct{} // closed when the writer has finished

	mu       sync.Mutex
	queue    [][]byte
	size     int  // bytes queued or being written
	closed   bool // no more frames: finish after what is queued
	started  bool // run was called: frames are written as they come
	active   bool // a goroutine is writing
	pingDue  bool
	lastPing time.Time // or the start
	err      error
}

func newWriter(cfg writerConfig) *writer {
	return &writer{cfg: cfg, room: make(chan struct{}, 1), done: make(chan struct{})}
}

// enqueueWait queues a frame like enqueue, but when the frame does not fit
// it waits for the queue to drain instead of failing; a frame larger than
// MaxQueueSize waits for an empty queue. It returns ctx's error if ctx ends
// first. After close, frames are dropped. One goroutine at a time may wait.
func (w *writer) enqueueWait(ctx context.Context, frame []byte) error {
	for {
		w.mu.Lock()
		if w.closed {
			w.mu.Unlock()
			return nil
		}
		if w.size == 0 || w.size+len(frame) <= w.cfg.MaxQueueSize {
			w.size += len(frame)
			w.queue = append(w.queue, frame)
			w.kickLocked()
			w.mu.Unlock()
			return nil
		}
		w.mu.Unlock()
		select {
		case <-w.room:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// queued returns the frames waiting to be taken by the writing goroutine.
func (w *writer) queued() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.queue)
}

func (w *writer) signalRoom() {
	select {
	case w.room <- struct{}{}:
	default:
	}
}

// enqueue queues a frame. It returns false, queueing nothing, when the frame
// would take the queue over MaxQueueSize. After close, frames are dropped.
func (w *writer) enqueue(frame []byte) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return true
	}
	if w.size+len(frame) > w.cfg.MaxQueueSize {
		return false
	}
	w.size += len(frame)
	w.queue = append(w.queue, frame)
	w.kickLocked()
	return true
}

// ping asks for a ping if the last one (or the start) was at least every
// ago; it reports whether it did. Pings go out whatever else is written:
// their pongs keep a client that only listens from being idle.
func (w *writer) ping(now time.Time, every time.Duration) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || !w.started || w.cfg.PingFn == nil || now.Sub(w.lastPing) < every {
		return false
	}
	w.pingDue, w.lastPing = true, now
	w.kickLocked()
	return true
}

// close stops the queue: what is queued is written (flush) or dropped, then
// last (if any, regardless of the bound), and the writer finishes. Later
// calls do nothing.
func (w *writer) close(flush bool, last []byte) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	if !flush {
		for _, b := range w.queue {
			w.size -= len(b)
		}
		w.queue = nil
	}
	if last != nil {
		w.size += len(last)
		w.queue = append(w.queue, last)
	}
	w.kickLocked()
	w.mu.Unlock()
	w.signalRoom()
}

// kickLocked starts a writing goroutine if there is none (after run was
// called). w.mu is held.
func (w *writer) kickLocked() {
	if w.started && !w.active {
		w.active = true
		go w.drain()
	}
}

// start makes the writer write frames as they are queued (each burst by a
// short-lived goroutine); OnDone reports the end.
func (w *writer) start() {
	w.mu.Lock()
	if !w.started {
		w.started, w.lastPing = true, time.Now()
		if len(w.queue) > 0 || w.closed || w.pingDue {
			w.kickLocked()
		}
	}
	w.mu.Unlock()
}

// run starts the writer and waits until it is closed and what it had to
// write is written (nil), or a write fails (its error).
func (w *writer) run() error {
	w.start()
	<-w.done
	return w.err
}

// drain writes what is queued until the queue is empty, then returns (the
// next enqueue starts another); after close it finishes the writer.
func (w *writer) drain() {
	for {
		w.mu.Lock()
		batch, ping, closed := w.queue, w.pingDue, w.closed
		w.queue, w.pingDue = nil, false
		if len(batch) == 0 && !ping {
			if !closed {
				w.active = false
				w.mu.Unlock()
				return
			}
			w.mu.Unlock()
			w.finish(nil)
			return
		}
		w.mu.Unlock()
		if ping {
			if err := w.cfg.PingFn(); err != nil {
				w.finish(err)
				return
			}
		}
		if len(batch) > 0 {
			if err := w.write(batch); err != nil {
				w.finish(err)
				return
			}
			n := 0
			for _, b := range batch {
				n += len(b)
			}
			w.mu.Lock()
			w.size -= n
			w.mu.Unlock()
			w.signalRoom()
		}
	}
}

// finish ends the writer (from the writing goroutine, which stays active
// so that no other starts).
func (w *writer) finish(err error) {
	w.mu.Lock()
	w.closed, w.queue, w.err = true, nil, err
	w.mu.Unlock()
	if w.cfg.OnDone != nil {
		w.cfg.OnDone(err)
	}
	close(w.done)
	w.signalRoom()
}

func (w *writer) write(batch [][]byte) error {
	if len(batch) == 1 || w.cfg.WriteManyFn == nil {
		for _, b := range batch {
			if err := w.cfg.WriteFn(b); err != nil {
				return err
			}
		}
		return nil
	}
	return w.cfg.WriteManyFn(batch...)
}
