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
	// PingFn, if set, is called every PingInterval while nothing else is to
	// be written, from the writing goroutine.
	PingFn       func() error
	PingInterval time.Duration
}

// writer is a queue of outgoing frames bounded in bytes, written by one
// goroutine (run). It knows nothing of the protocol, the client or the node.
type writer struct {
	cfg  writerConfig
	wake chan struct{}
	room chan struct{} // signalled when queued bytes were written or the writer closed

	mu     sync.Mutex
	queue  [][]byte
	size   int // bytes queued or being written
	closed bool
}

func newWriter(cfg writerConfig) *writer {
	return &writer{cfg: cfg, wake: make(chan struct{}, 1), room: make(chan struct{}, 1)}
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
			w.mu.Unlock()
			w.signal()
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
	if w.closed {
		w.mu.Unlock()
		return true
	}
	if w.size+len(frame) > w.cfg.MaxQueueSize {
		w.mu.Unlock()
		return false
	}
	w.size += len(frame)
	w.queue = append(w.queue, frame)
	w.mu.Unlock()
	w.signal()
	return true
}

// close stops the queue: run writes what is queued (flush) or drops it, then
// last (if any, regardless of the bound), and returns. Later calls do
// nothing.
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
	w.mu.Unlock()
	w.signal()
	w.signalRoom()
}

func (w *writer) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// run writes queued frames (and pings) until the writer is closed and what
// it had to write is written (nil), or a write fails (its error).
func (w *writer) run() error {
	var ping <-chan time.Time
	if w.cfg.PingFn != nil && w.cfg.PingInterval > 0 {
		t := time.NewTicker(w.cfg.PingInterval)
		defer t.Stop()
		ping = t.C
	}
	for {
		select {
		case <-w.wake:
		case <-ping:
			if err := w.cfg.PingFn(); err != nil {
				return err
			}
			continue
		}
		w.mu.Lock()
		batch := w.queue
		w.queue = nil
		closed := w.closed
		w.mu.Unlock()
		if len(batch) > 0 {
			if err := w.write(batch); err != nil {
				return err
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
		if closed {
			return nil
		}
	}
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
