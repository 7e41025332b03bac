package message

import (
	"sync"
	"time"
)

// receiptKey is one reader's receipts for one conversation.
type receiptKey struct{ user, conv string }

type receiptSlot struct {
	sent  time.Time   // when the last receipt went out
	seq   int64       // highest seq not sent yet (0: none)
	timer *time.Timer // sends seq when the interval ends
}

// receipts coalesces read receipts per reader and conversation: a receipt
// goes out at once when none went out in the last interval; later ones
// within the interval are merged into one, carrying the highest seq, sent
// when the interval ends. So a peer gets at most one receipt per interval
// per conversation, and always the latest cursor.
type receipts struct {
	interval time.Duration
	maxKeys  int
	send     func(user, conv string, seq int64)
	now      func() time.Time

	mu      sync.Mutex
	slots   map[receiptKey]*receiptSlot
	stopped bool
}

func newReceipts(interval time.Duration, maxKeys int, send func(user, conv string, seq int64)) *receipts {
	return &receipts{interval: interval, maxKeys: maxKeys, send: send, now: time.Now, slots: map[receiptKey]*receiptSlot{}}
}

// moved records that user's read cursor in conv moved to seq.
func (r *receipts) moved(user, conv string, seq int64) {
	k := receiptKey{user, conv}
	now := r.now()
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return
	}
	sl := r.slots[k]
	if sl == nil {
		r.prune(now)
		sl = &receiptSlot{}
		r.slots[k] = sl
	}
	if sl.timer == nil && now.Sub(sl.sent) >= r.interval {
		sl.sent = now
		r.mu.Unlock()
		r.send(user, conv, seq)
		return
	}
	sl.seq = max(sl.seq, seq)
	if sl.timer == nil {
		sl.timer = time.AfterFunc(r.interval-now.Sub(sl.sent), func() { r.flush(k) })
	}
	r.mu.Unlock()
}

func (r *receipts) flush(k receiptKey) {
	r.mu.Lock()
	sl := r.slots[k]
	if r.stopped || sl == nil || sl.seq == 0 {
		r.mu.Unlock()
		return
	}
	seq := sl.seq
	sl.seq, sl.timer, sl.sent = 0, nil, r.now()
	r.mu.Unlock()
	r.send(k.user, k.conv, seq)
}

// prune drops slots with nothing pending whose interval has passed, when the
// map is at its bound. Called with mu held.
func (r *receipts) prune(now time.Time) {
	if len(r.slots) < r.maxKeys {
		return
	}
	for k, sl := range r.slots {
		if sl.timer == nil && now.Sub(sl.sent) >= r.interval {
			delete(r.slots, k)
		}
	}
}

// stop cancels the pending receipts (the process is shutting down).
func (r *receipts) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
	for _, sl := range r.slots {
		if sl.timer != nil {
			sl.timer.Stop()
		}
	}
}
