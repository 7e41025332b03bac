package user

import (
	"context"
	"math"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/imkube/imkube/api/protocol"
	"github.com/imkube/imkube/internal/rest"
)

// ipLimiter is a token bucket per client IP (IPv6: per /64), in memory.
type ipLimiter struct {
	mu  sync.Mutex
	b   *buckets
	now func() time.Time
}

func newIPLimiter(burst int, refill time.Duration) *ipLimiter {
	if burst <= 0 {
		burst = 20
	}
	if refill <= 0 {
		refill = 30 * time.Second
	}
	return &ipLimiter{b: &buckets{burst: float64(burst), refill: refill, decay: refill, max: 100000, m: map[string]*bucket{}}, now: time.Now}
}

// Allow takes a token for ip, or says how long until there is one.
func (l *ipLimiter) Allow(ip string) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.b.get(ipKey(ip), now)
	if w := b.wait(now, l.b.refill); w > 0 {
		return false, w
	}
	b.tokens--
	return true, 0
}

// errBusy answers a login or registration that found no hashing slot in time.
var errBusy = rest.Errorf(http.StatusServiceUnavailable, protocol.CodeUnavailable, "the server is busy checking passwords; retry in a moment")

// hasher bounds the password hashes computed at once, so a flood of logins
// or sign-ups (each ~70 ms of CPU at bcrypt cost 10) queues briefly or is
// refused instead of starving the process.
type hasher struct {
	slots      chan struct{}
	waiting    chan struct{} // tokens of the bounded wait queue
	queueWait  time.Duration
	concurrent int
}

func newHasher(concurrency int, wait time.Duration) *hasher {
	if concurrency <= 0 {
		concurrency = runtime.GOMAXPROCS(0)
	}
	if wait <= 0 {
		wait = 2 * time.Second
	}
	return &hasher{slots: make(chan struct{}, concurrency), waiting: make(chan struct{}, 8*concurrency), queueWait: wait, concurrent: concurrency}
}

// do runs fn in a hashing slot; errBusy when none frees up within the
// queue wait or the queue is full.
func (h *hasher) do(ctx context.Context, fn func() error) error {
	select {
	case h.slots <- struct{}{}:
	default:
		select {
		case h.waiting <- struct{}{}:
		default:
			return errBusy
		}
		t := time.NewTimer(h.queueWait)
		select {
		case h.slots <- struct{}{}:
			<-h.waiting
			t.Stop()
		case <-t.C:
			<-h.waiting
			return errBusy
		case <-ctx.Done():
			<-h.waiting
			t.Stop()
			return ctx.Err()
		}
	}
	defer func() { <-h.slots }()
	return fn()
}

// writeTooMany answers 429 TOO_MANY_ATTEMPTS with Retry-After in whole seconds.
func writeTooMany(w http.ResponseWriter, retryAfter time.Duration, what string) {
	secs := max(1, int(math.Ceil(retryAfter.Seconds())))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	rest.WriteJSON(w, http.StatusTooManyRequests, &rest.Error{Status: http.StatusTooManyRequests, Code: CodeTooManyAttempts,
		Message: what + "; retry in " + strconv.Itoa(secs) + " s"})
}
