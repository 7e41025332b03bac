package user

import (
	"math"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/imkube/imkube/internal/username"
)

// CodeTooManyAttempts answers a login refused by the LoginThrottle (429).
const CodeTooManyAttempts = "TOO_MANY_ATTEMPTS"

// ThrottleConfig tunes the LoginThrottle. Zero values take the defaults.
type ThrottleConfig struct {
	// UserBurst login attempts are allowed at once (5), and one more is
	// earned every UserRefill (1 min), both per (username, client) and per
	// username over all clients that have not logged in to it before.
	UserBurst  int
	UserRefill time.Duration
	// IPBurst attempts per client IP (IPv6: per /64) at once (30); one more
	// every IPRefill (5 s).
	IPBurst  int
	IPRefill time.Duration
	// BaseLockout is the lockout after a key's bucket is first emptied by
	// failures (2 s); every further emptying doubles it, up to MaxLockout
	// (15 min). A key that stays quiet for MaxLockout after its last
	// lockout starts over.
	BaseLockout time.Duration
	MaxLockout  time.Duration
	// KnownFor is how long a client that logged in to a username stays
	// known to it (30 days): a known client is not held back by failures of
	// other clients on that username.
	KnownFor time.Duration
	// MaxEntries bounds each of the maps (usernames, (username, client)
	// pairs, known clients, IPs; 100,000).
	MaxEntries int
	// Now is the clock (tests).
	Now func() time.Time
}

func (c *ThrottleConfig) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.UserBurst <= 0 {
		c.UserBurst = 5
	}
	if c.IPBurst <= 0 {
		c.IPBurst = 30
	}
	def(&c.UserRefill, time.Minute)
	def(&c.IPRefill, 5*time.Second)
	def(&c.BaseLockout, 2*time.Second)
	def(&c.MaxLockout, 15*time.Minute)
	def(&c.KnownFor, 30*24*time.Hour)
	if c.MaxEntries <= 0 {
		c.MaxEntries = 100000
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// LoginThrottle slows password guessing, in memory, with three kinds of
// token bucket:
//
//   - per (username, client IP): the guesses one client may make for one
//     account;
//   - per username: the guesses all clients together may make for one
//     account, except clients that have logged in to it before ("known");
//   - per client IP: the guesses one client may make over all accounts.
//
// Every attempt takes a token from each bucket that applies (so parallel
// attempts are bounded too); a failure that leaves a bucket empty locks that
// key for an exponentially growing time. A success resets only the
// (username, client) pair that succeeded and makes that client known; it
// never resets the failures other clients made. So a stranger who guesses
// wrong locks out himself and, for unknown clients, the username; the owner
// logging in from a client that has logged in before still gets through,
// while guessing from many addresses stays bounded per username. Safe for
// concurrent use.
//
// Use: Allow before checking the password (refuse with 429
// TOO_MANY_ATTEMPTS and Retry-After when it says no), then Fail on wrong
// credentials or Succeed on a login.
type LoginThrottle struct {
	cfg   ThrottleConfig
	mu    sync.Mutex
	users *buckets
	pairs *buckets
	ips   *buckets
	known map[string]time.Time // pair key -> last successful login
}

// NewLoginThrottle returns a throttle.
func NewLoginThrottle(cfg ThrottleConfig) *LoginThrottle {
	cfg.setDefaults()
	user := func() *buckets {
		return &buckets{burst: float64(cfg.UserBurst), refill: cfg.UserRefill, decay: cfg.MaxLockout, max: cfg.MaxEntries, m: map[string]*bucket{}}
	}
	return &LoginThrottle{
		cfg:   cfg,
		users: user(),
		pairs: user(),
		ips:   &buckets{burst: float64(cfg.IPBurst), refill: cfg.IPRefill, decay: cfg.MaxLockout, max: cfg.MaxEntries, m: map[string]*bucket{}},
		known: map[string]time.Time{},
	}
}

// Allow takes one attempt for username from ip. When it returns false the
// caller must not check the password and should answer 429 with
// Retry-After: retryAfter.
func (t *LoginThrottle) Allow(username, ip string) (ok bool, retryAfter time.Duration) {
	uk, ik := userKey(username), ipKey(ip)
	now := t.cfg.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	known := t.isKnown(pairKey(uk, ik), now)
	bs := t.bucketsOf(uk, ik, known, now)
	var wait time.Duration
	for _, b := range bs {
		wait = max(wait, b.b.wait(now, b.refill))
	}
	if wait > 0 {
		return false, wait
	}
	for _, b := range bs {
		b.b.tokens--
	}
	return true, 0
}

type keyed struct {
	b      *bucket
	refill time.Duration
}

// bucketsOf returns the buckets an attempt takes from: the pair's and the
// IP's, and the username's unless the client is known to it.
func (t *LoginThrottle) bucketsOf(uk, ik string, known bool, now time.Time) []keyed {
	bs := []keyed{{t.pairs.get(pairKey(uk, ik), now), t.pairs.refill}, {t.ips.get(ik, now), t.ips.refill}}
	if !known {
		bs = append(bs, keyed{t.users.get(uk, now), t.users.refill})
	}
	return bs
}

func (t *LoginThrottle) isKnown(pk string, now time.Time) bool {
	at, ok := t.known[pk]
	if ok && now.Sub(at) >= t.cfg.KnownFor {
		delete(t.known, pk)
		return false
	}
	return ok
}

// Fail records wrong credentials for the attempt Allow let through.
func (t *LoginThrottle) Fail(username, ip string) {
	uk, ik := userKey(username), ipKey(ip)
	now := t.cfg.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range t.bucketsOf(uk, ik, t.isKnown(pairKey(uk, ik), now), now) {
		if b := k.b; b.tokens < 1 {
			b.lockouts++
			lock := t.cfg.BaseLockout << min(b.lockouts-1, 30)
			if lock <= 0 || lock > t.cfg.MaxLockout {
				lock = t.cfg.MaxLockout
			}
			b.lockedUntil = now.Add(lock)
		}
	}
}

// Succeed records a login: the (username, client) pair starts over and the
// client becomes known to the username; the IP gets the attempt's token
// back. Failures other clients made on the username stay counted.
func (t *LoginThrottle) Succeed(username, ip string) {
	uk, ik := userKey(username), ipKey(ip)
	pk := pairKey(uk, ik)
	now := t.cfg.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.pairs.m, pk)
	if _, ok := t.known[pk]; !ok && len(t.known) >= t.cfg.MaxEntries {
		t.evictKnown(now)
	}
	t.known[pk] = now
	i := t.ips.get(ik, now)
	i.tokens = min(i.tokens+1, t.ips.burst)
}

// evictKnown drops expired entries, then the oldest eighth.
func (t *LoginThrottle) evictKnown(now time.Time) {
	var oldest time.Time
	for k, at := range t.known {
		if now.Sub(at) >= t.cfg.KnownFor {
			delete(t.known, k)
		} else if oldest.IsZero() || at.Before(oldest) {
			oldest = at
		}
	}
	if len(t.known) < t.cfg.MaxEntries {
		return
	}
	cut := oldest.Add(now.Sub(oldest) / 8)
	for k, at := range t.known {
		if !at.After(cut) {
			delete(t.known, k)
		}
	}
	for k := range t.known {
		if len(t.known) < t.cfg.MaxEntries {
			return
		}
		delete(t.known, k)
	}
}

// Len returns the number of tracked usernames and IPs.
func (t *LoginThrottle) Len() (users, ips int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.users.m), len(t.ips.m)
}

type bucket struct {
	tokens      float64
	last        time.Time // of the last refill
	lockedUntil time.Time
	lockouts    int
}

// wait returns how long until b has a token and is not locked.
func (b *bucket) wait(now time.Time, refill time.Duration) time.Duration {
	var w time.Duration
	if now.Before(b.lockedUntil) {
		w = b.lockedUntil.Sub(now)
	}
	if b.tokens < 1 {
		w = max(w, time.Duration((1-b.tokens)*float64(refill)))
	}
	return w
}

type buckets struct {
	burst  float64
	refill time.Duration
	decay  time.Duration // quiet time after a lockout that forgets it
	max    int
	m      map[string]*bucket
}

// get returns the refilled bucket of key, creating it (and evicting when
// the map is full).
func (bs *buckets) get(key string, now time.Time) *bucket {
	b, ok := bs.m[key]
	if !ok {
		if len(bs.m) >= bs.max {
			bs.evict(now)
		}
		b = &bucket{tokens: bs.burst, last: now}
		bs.m[key] = b
		return b
	}
	if el := now.Sub(b.last); el > 0 {
		b.tokens = math.Min(bs.burst, b.tokens+float64(el)/float64(bs.refill))
		b.last = now
	}
	if b.lockouts > 0 && now.Sub(b.lockedUntil) >= bs.decay {
		b.lockouts = 0 // quiet long enough after the last lockout: start over
	}
	return b
}

// idle reports whether b is the same as a new bucket (full, no lockout history).
func (bs *buckets) idle(b *bucket, now time.Time) bool {
	full := b.tokens+float64(now.Sub(b.last))/float64(bs.refill) >= bs.burst
	return full && (b.lockouts == 0 || now.Sub(b.lockedUntil) >= bs.decay)
}

// evict makes room: first every idle entry; if that frees nothing, an
// eighth of the map (unlocked entries first), so a flood costs one sweep per
// max/8 new keys. An attacker who floods the map can at worst end someone's
// lockout early; memory stays bounded.
func (bs *buckets) evict(now time.Time) {
	for k, b := range bs.m {
		if bs.idle(b, now) {
			delete(bs.m, k)
		}
	}
	target := bs.max - max(1, bs.max/8)
	for k, b := range bs.m {
		if len(bs.m) <= target {
			return
		}
		if !now.Before(b.lockedUntil) {
			delete(bs.m, k)
		}
	}
	for k := range bs.m {
		if len(bs.m) <= target {
			return
		}
		delete(bs.m, k)
	}
}

// maxKeyLen bounds the memory one key can take.
const maxKeyLen = 64

// userKey is the username's uniqueness key (username.Key), so every case
// and Unicode twin of a name shares its buckets.
func userKey(name string) string {
	u := username.Key(name)
	if len(u) > maxKeyLen {
		u = u[:maxKeyLen]
	}
	return u
}

func pairKey(uk, ik string) string { return uk + "|" + ik }

// ipKey groups IPv6 clients by /64 (one subscriber usually has a whole
// /64); IPv4 by address.
func ipKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		if len(ip) > maxKeyLen {
			ip = ip[:maxKeyLen]
		}
		return ip
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// ClientIP returns the client address of a login request. Behind the
// gateway's reverse proxy (trustProxy: the user service in distributed
// mode, reachable only through the gateway) it is the last X-Forwarded-For
// entry, the one the gateway appended; otherwise the peer address. Earlier
// X-Forwarded-For entries are client-controlled and never used.
func ClientIP(r *http.Request, trustProxy bool) string {
	if trustProxy {
		if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
			last := xff[len(xff)-1]
			if i := strings.LastIndexByte(last, ','); i >= 0 {
				last = last[i+1:]
			}
			if ip := strings.TrimSpace(last); ip != "" {
				return ip
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// WriteTooManyAttempts answers a login refused by the throttle: 429
// {"code":"TOO_MANY_ATTEMPTS"} with Retry-After in whole seconds.
func WriteTooManyAttempts(w http.ResponseWriter, retryAfter time.Duration) {
	writeTooMany(w, retryAfter, "too many login attempts")
}
