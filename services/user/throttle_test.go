package user

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newThrottle(cfg ThrottleConfig) (*LoginThrottle, *fakeClock) {
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	cfg.Now = clk.Now
	return NewLoginThrottle(cfg), clk
}

// failUntilRefused makes failing attempts until one is refused and returns
// how many were let through and the wait.
func failUntilRefused(t *testing.T, th *LoginThrottle, user, ip string) (int, time.Duration) {
	t.Helper()
	for n := 0; n < 1000; n++ {
		ok, wait := th.Allow(user, ip)
		if !ok {
			return n, wait
		}
		th.Fail(user, ip)
	}
	t.Fatalf("1000 failed attempts for %s from %s, none refused", user, ip)
	return 0, 0
}

func TestLoginThrottleLimitsGuessesPerUsername(t *testing.T) {
	th, clk := newThrottle(ThrottleConfig{UserBurst: 5, UserRefill: time.Minute, IPBurst: 1000})

	// Each guess comes from another IP: the username limit still holds.
	allowed := 0
	var wait time.Duration
	for i := range 100 {
		ip := fmt.Sprintf("192.0.2.%d", i)
		ok, w := th.Allow("Alice", ip)
		if !ok {
			wait = w
			break
		}
		allowed++
		th.Fail("Alice", ip)
	}
	if allowed != 5 {
		t.Fatalf("%d guesses for one username were let through, want the burst 5", allowed)
	}
	if wait <= 0 {
		t.Fatalf("retryAfter = %v, want > 0", wait)
	}
	// Case and surrounding space do not make another username.
	if ok, _ := th.Allow(" ALICE ", "198.51.100.1"); ok {
		t.Error("ALICE was let through while alice is locked")
	}
	// Another user is not affected.
	if ok, _ := th.Allow("bob", "192.0.2.1"); !ok {
		t.Error("bob was refused because of alice")
	}
	// After the wait, one more attempt.
	clk.Advance(wait)
	if ok, w := th.Allow("alice", "203.0.113.9"); !ok {
		t.Errorf("refused after waiting the advertised %v (now %v more)", wait, w)
	}
}

func TestLoginThrottleLimitsGuessesPerIP(t *testing.T) {
	th, _ := newThrottle(ThrottleConfig{UserBurst: 1000, IPBurst: 10, IPRefill: 5 * time.Second})
	allowed := 0
	for i := range 100 {
		ok, _ := th.Allow(fmt.Sprintf("user%d", i), "203.0.113.5")
		if !ok {
			break
		}
		allowed++
		th.Fail(fmt.Sprintf("user%d", i), "203.0.113.5")
	}
	if allowed != 10 {
		t.Fatalf("%d usernames tried from one IP, want the IP burst 10", allowed)
	}
	if ok, _ := th.Allow("someone", "203.0.113.6"); !ok {
		t.Error("another IP was refused")
	}
	// IPv6 clients are grouped by /64.
	for i := range 10 {
		th.Allow("v6user", fmt.Sprintf("2001:db8:1:2::%x", i+1))
		th.Fail("v6user", fmt.Sprintf("2001:db8:1:2::%x", i+1))
	}
	if ok, _ := th.Allow("v6other", "2001:db8:1:2:ffff::1"); ok {
		t.Error("an address in the same /64 was let through after the /64 used its burst")
	}
}

func TestLoginThrottleLockoutGrowsExponentially(t *testing.T) {
	th, clk := newThrottle(ThrottleConfig{UserBurst: 1, UserRefill: time.Second, IPBurst: 1000,
		BaseLockout: 10 * time.Second, MaxLockout: 80 * time.Second})
	var waits []time.Duration
	for range 6 {
		n, wait := failUntilRefused(t, th, "carol", "192.0.2.7")
		if n != 1 {
			t.Fatalf("%d attempts let through per lockout, want 1", n)
		}
		waits = append(waits, wait)
		clk.Advance(wait)
	}
	want := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 80 * time.Second, 80 * time.Second}
	for i := range want {
		if waits[i] != want[i] {
			t.Fatalf("lockouts = %v, want %v", waits, want)
		}
	}
}

func TestLoginThrottleSuccessResetsTheUsername(t *testing.T) {
	th, clk := newThrottle(ThrottleConfig{UserBurst: 2, UserRefill: time.Minute, BaseLockout: time.Second})
	failUntilRefused(t, th, "dave", "192.0.2.8")
	_, wait := th.Allow("dave", "192.0.2.8")
	clk.Advance(wait)
	if ok, _ := th.Allow("dave", "192.0.2.8"); !ok {
		t.Fatal("refused after the wait")
	}
	th.Succeed("dave", "192.0.2.8")
	for i := range 2 {
		if ok, _ := th.Allow("dave", "192.0.2.8"); !ok {
			t.Fatalf("attempt %d after a successful login refused; the username should start over", i)
		}
	}
}

func TestLoginThrottleBoundsParallelAttempts(t *testing.T) {
	th, _ := newThrottle(ThrottleConfig{UserBurst: 5, IPBurst: 1000})
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for range 50 {
		wg.Go(func() {
			if ok, _ := th.Allow("erin", "192.0.2.9"); ok {
				mu.Lock()
				allowed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if allowed != 5 {
		t.Errorf("%d of 50 parallel attempts let through before any result, want 5", allowed)
	}
}

func TestLoginThrottleMapsStayBounded(t *testing.T) {
	th, clk := newThrottle(ThrottleConfig{MaxEntries: 100, UserBurst: 1, UserRefill: time.Hour, BaseLockout: time.Hour, MaxLockout: time.Hour})
	// A locked-out victim, then a flood of other usernames and IPs.
	failUntilRefused(t, th, "victim", "192.0.2.10")
	for i := range 10000 {
		user, ip := fmt.Sprintf("flood%d", i), fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		if ok, _ := th.Allow(user, ip); ok {
			th.Fail(user, ip)
		}
		clk.Advance(time.Millisecond)
	}
	users, ips := th.Len()
	if users > 100 || ips > 100 {
		t.Fatalf("tracked %d usernames and %d IPs, want at most 100 each", users, ips)
	}
	// Long usernames do not make long keys.
	th.Allow(strings.Repeat("x", 1<<20), strings.Repeat("y", 1<<20))
	for k := range th.users.m {
		if len(k) > maxKeyLen {
			t.Fatalf("key of %d bytes tracked", len(k))
		}
	}
}

func TestClientIP(t *testing.T) {
	tests := []struct {
		name       string
		remote     string
		xff        []string
		trustProxy bool
		want       string
	}{
		{name: "peer address without proxy", remote: "192.0.2.1:5555", want: "192.0.2.1"},
		{name: "forwarded header ignored when not behind the proxy", remote: "192.0.2.1:5555", xff: []string{"203.0.113.9"}, want: "192.0.2.1"},
		{name: "last hop appended by the gateway", remote: "10.0.0.5:80", xff: []string{"1.2.3.4, 203.0.113.9"}, trustProxy: true, want: "203.0.113.9"},
		{name: "spoofed first header ignored", remote: "10.0.0.5:80", xff: []string{"1.2.3.4", "203.0.113.9"}, trustProxy: true, want: "203.0.113.9"},
		{name: "no header behind the proxy", remote: "[2001:db8::1]:80", trustProxy: true, want: "2001:db8::1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/api/v1/sessions", nil)
			r.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := ClientIP(r, tt.trustProxy); got != tt.want {
				t.Errorf("ClientIP = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestWriteTooManyAttempts(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteTooManyAttempts(rec, 1500*time.Millisecond)
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "2" || !strings.Contains(rec.Body.String(), `"code":"TOO_MANY_ATTEMPTS"`) {
		t.Errorf("got %d Retry-After=%q %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body.String())
	}
}

func TestLoginThrottleSuccessKeepsOtherClientsFailures(t *testing.T) {
	th, _ := newThrottle(ThrottleConfig{UserBurst: 5, UserRefill: time.Minute, IPBurst: 1000})
	for range 4 {
		th.Allow("alice", "192.0.2.66")
		th.Fail("alice", "192.0.2.66")
	}
	th.Allow("ALICE", "192.0.2.1") // the owner, or the attacker's own twin login
	th.Succeed("ALICE", "192.0.2.1")
	if n, _ := failUntilRefused(t, th, "alice", "192.0.2.66"); n > 1 {
		t.Fatalf("after someone else's login the guesser got %d more attempts, want at most the 1 left of 5", n)
	}
}

func TestLoginThrottleLetsAKnownClientPastAStrangersLockout(t *testing.T) {
	th, clk := newThrottle(ThrottleConfig{UserBurst: 5, UserRefill: time.Minute, IPBurst: 1000, KnownFor: time.Hour})
	th.Allow("alice", "198.51.100.7")
	th.Succeed("alice", "198.51.100.7") // the owner's device
	for i := range 50 {
		ip := fmt.Sprintf("192.0.2.%d", i)
		if ok, _ := th.Allow("alice", ip); ok {
			th.Fail("alice", ip)
		}
	}
	if ok, _ := th.Allow("alice", "203.0.113.1"); ok {
		t.Fatal("an unknown client was let through after 50 guesses from many addresses")
	}
	if ok, _ := th.Allow("alice", "198.51.100.7"); !ok {
		t.Fatal("the owner's known client is locked out by strangers")
	}
	// Known clients are forgotten after KnownFor.
	clk.Advance(2 * time.Hour)
	for range 5 {
		th.Allow("alice", "192.0.2.200")
		th.Fail("alice", "192.0.2.200")
	}
	if ok, _ := th.Allow("alice", "198.51.100.7"); ok {
		t.Fatal("a client still counted as known after KnownFor")
	}
}
