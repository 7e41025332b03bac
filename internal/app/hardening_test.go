package app_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imkube/imkube/internal/app"
	"github.com/imkube/imkube/internal/config"
	"github.com/imkube/imkube/internal/imtest"
	"github.com/imkube/imkube/services/gateway"
)

// startCfg starts `imkube dev` with the dev defaults changed by edit.
func startCfg(t *testing.T, edit func(c *config.Config), opts app.Options) *app.Server {
	t.Helper()
	cfg := config.Defaults(config.RoleDev, "dev")
	cfg.Addr, cfg.Dev.Data = "127.0.0.1:0", t.TempDir()
	if edit != nil {
		edit(&cfg)
	}
	if opts.BcryptCost == 0 {
		opts.BcryptCost = 4
	}
	if opts.Cluster == nil {
		opts.Cluster = fastCluster()
	}
	s, err := app.Start(context.Background(), cfg, []config.Role{config.RoleDev}, opts)
	if err != nil {
		t.Fatalf("start dev server: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

type apiErr struct{ Code, Message string }

func login(api *imtest.API, name, password string) (int, apiErr, string) {
	var out struct {
		apiErr
		Token  string
		UserID string
	}
	code, _ := api.Do("POST", "/api/v1/sessions", "", map[string]string{"username": name, "password": password}, &out)
	return code, out.apiErr, out.UserID
}

// guessUntilRefused makes wrong guesses for name until one gets 429 and
// returns how many were checked (401).
func guessUntilRefused(t *testing.T, api *imtest.API, name string) int {
	t.Helper()
	for n := 0; n < 50; n++ {
		code, e, _ := login(api, name, fmt.Sprintf("wrong-guess-%d", n))
		switch {
		case code == http.StatusTooManyRequests && e.Code == "TOO_MANY_ATTEMPTS":
			return n
		case code != http.StatusUnauthorized:
			t.Fatalf("guess %d: %d %+v", n, code, e)
		}
	}
	t.Fatalf("50 wrong guesses for %s, none refused", name)
	return 0
}

func TestUsernameCaseTwinsAreOneAccountAndShareOneThrottle(t *testing.T) {
	s := start(t, "", gateway.Config{})
	api := imtest.NewAPI(s.URL)
	owner := api.Register(t, "vict_x")
	for _, twin := range []string{"VICT_X", "Vict_X"} {
		var e apiErr
		code, _ := api.Do("POST", "/api/v1/users", "", map[string]string{"username": twin, "password": "another-password"}, &e)
		if code != http.StatusConflict || e.Code != "USERNAME_TAKEN" {
			t.Fatalf("registering %q while vict_x exists: %d %+v, want 409 USERNAME_TAKEN", twin, code, e)
		}
	}
	// Look-alikes outside the allowed characters cannot register at all.
	if code, _ := api.Do("POST", "/api/v1/users", "", map[string]string{"username": "ｖｉｃｔ_ｘ", "password": "another-password"}, nil); code != http.StatusBadRequest {
		t.Fatalf("full-width twin: %d, want 400", code)
	}
	// Any case or Unicode twin logs in to the same account.
	for _, name := range []string{"VICT_X", "Vict_x", "ｖｉｃｔ_ｘ"} {
		if code, e, id := login(api, name, "correct-horse-battery"); code != http.StatusOK || id != owner.ID {
			t.Fatalf("login as %q: %d %+v user %s, want 200 as %s", name, code, e, id, owner.ID)
		}
	}
	var found struct{ ID, Username string }
	if code, _ := api.Do("GET", "/api/v1/users?username=VICT_X", owner.Token, nil, &found); code != 200 || found.ID != owner.ID || found.Username != "vict_x" {
		t.Fatalf("find VICT_X: %d %+v, want vict_x as registered", code, found)
	}

	// An attacker guesses a little, the owner logs in, the attacker goes on:
	// the owner's login must not give the attacker a fresh budget.
	attacker := api.From("127.0.0.2")
	for i := range 4 {
		if code, e, _ := login(attacker, []string{"vict_x", "VICT_X"}[i%2], fmt.Sprintf("guess-%d-xx", i)); code != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d %+v", i, code, e)
		}
	}
	if code, e, _ := login(api, "Vict_X", "correct-horse-battery"); code != http.StatusOK {
		t.Fatalf("owner login: %d %+v", code, e)
	}
	if n := guessUntilRefused(t, attacker, "VICT_x"); n > 1 {
		t.Fatalf("after the owner's login the attacker got %d more guesses, want at most 1 (5 in all)", n)
	}
}

func TestStrangersGuessesDoNotLockTheOwnerOut(t *testing.T) {
	s := start(t, "", gateway.Config{})
	api := imtest.NewAPI(s.URL)
	api.Register(t, "alice") // logs in from 127.0.0.1: a known client of alice

	stranger := api.From("127.0.0.2")
	if n := guessUntilRefused(t, stranger, "alice"); n > 5 {
		t.Fatalf("the stranger got %d guesses, want at most 5", n)
	}
	if code, e, _ := login(stranger, "alice", "correct-horse-battery"); code != http.StatusTooManyRequests {
		t.Fatalf("the stranger's client is not held back: %d %+v", code, e)
	}
	// The owner, from a client that has logged in before, gets in.
	if code, e, _ := login(api, "alice", "correct-horse-battery"); code != http.StatusOK {
		t.Fatalf("owner locked out by a stranger's guesses: %d %+v", code, e)
	}
	// Guessing from yet another address is still slowed per username.
	if code, e, _ := login(api.From("127.0.0.3"), "alice", "wrong-password-1"); code != http.StatusTooManyRequests {
		t.Fatalf("a new address guessed right after the stranger's lockout: %d %+v", code, e)
	}
}

func TestReservedUsernamesCannotRegister(t *testing.T) {
	s := startCfg(t, func(c *config.Config) { c.User.ReservedUsernames = append(c.User.ReservedUsernames, "imbot") }, app.Options{})
	api := imtest.NewAPI(s.URL)
	for _, name := range []string{"admin", "ROOT", "System", "support", "ImBot"} {
		var e apiErr
		if code, _ := api.Do("POST", "/api/v1/users", "", map[string]string{"username": name, "password": "correct-horse-battery"}, &e); code != http.StatusBadRequest || e.Code != "INVALID_USERNAME" {
			t.Errorf("register %q: %d %+v, want 400 INVALID_USERNAME", name, code, e)
		}
	}
	api.Register(t, "admins") // only the exact names are reserved
}

func TestSlowRequestBodiesAreCutOffAndWebSocketsStayOpen(t *testing.T) {
	const readTimeout = 3 * time.Second
	s := startCfg(t, func(c *config.Config) { c.HTTP.ReadTimeout = readTimeout }, app.Options{})
	api := imtest.NewAPI(s.URL)
	alice, bob := api.Register(t, "alice"), api.Register(t, "bob")
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	b, _ := imtest.Connect(t, s.URL, bob.Token, "b1")

	host := strings.TrimPrefix(s.URL, "http://")
	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	begin := time.Now()
	fmt.Fprintf(conn, "POST /api/v1/users HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n", host)
	closed := make(chan time.Duration, 1)
	go func() {
		io.Copy(io.Discard, conn) // the answer, if any, then EOF when the server hangs up
		closed <- time.Since(begin)
	}()
	var took time.Duration
	func() {
		for {
			select {
			case took = <-closed:
				return
			case <-time.After(2 * time.Second): // 1 byte every 2 s
				conn.Write([]byte("{"))
			}
			if time.Since(begin) > 4*readTimeout {
				t.Fatalf("a body sent at 1 byte / 2 s still open after %v (read timeout %v)", time.Since(begin), readTimeout)
			}
		}
	}()
	if took > readTimeout+2*time.Second {
		t.Fatalf("slow body cut off after %v, want about the read timeout %v", took, readTimeout)
	}
	// The WebSockets opened before outlived the read timeout and still work.
	send(a, "after-timeout", bob.ID, "still here")
	a.Expect("ack")
	if m := b.Expect("msg"); m.Str("body") != "still here" {
		t.Fatalf("got %v", m)
	}

	// A declared body over the limit is refused before it is read.
	conn2, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	fmt.Fprintf(conn2, "POST /api/v1/sessions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", host, 2<<20)
	resp, err := http.ReadResponse(bufio.NewReader(conn2), nil)
	if err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("2 MiB body: %v %v, want 413", resp, err)
	}
}

func TestSignupsArePerIPLimited(t *testing.T) {
	s := startCfg(t, func(c *config.Config) { c.User.SignupBurst, c.User.SignupRefill = 3, time.Hour }, app.Options{})
	api := imtest.NewAPI(s.URL)
	other := api.From("127.0.0.2")
	for i := range 3 {
		if code, _ := other.Do("POST", "/api/v1/users", "", map[string]string{"username": fmt.Sprintf("bot%d", i), "password": "correct-horse-battery"}, nil); code != http.StatusCreated {
			t.Fatalf("sign-up %d: %d", i, code)
		}
	}
	req, _ := http.NewRequest("POST", s.URL+"/api/v1/users", strings.NewReader(`{"username":"bot9","password":"correct-horse-battery"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := other.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(body), "TOO_MANY_ATTEMPTS") || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("4th sign-up from one address: %d %s Retry-After %q, want 429 TOO_MANY_ATTEMPTS", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	api.Register(t, "human") // another address is not affected
}

func TestPasswordHashingIsBoundedUnderALoginFlood(t *testing.T) {
	// Cost 12: each hash takes long enough that parallel logins contend.
	s := startCfg(t, func(c *config.Config) { c.User.HashConcurrency, c.User.HashQueueWait = 1, time.Millisecond },
		app.Options{BcryptCost: 12})
	api := imtest.NewAPI(s.URL)
	api.Register(t, "alice")
	var mu sync.Mutex
	got := map[int]int{}
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", s.URL+"/api/v1/sessions", strings.NewReader(`{"username":"alice","password":"correct-horse-battery"}`))
			req.Header.Set("Content-Type", "application/json")
			resp, err := api.HTTP.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusServiceUnavailable && (!strings.Contains(string(body), "UNAVAILABLE") || resp.Header.Get("Retry-After") == "") {
				t.Errorf("503 without code or Retry-After: %s", body)
			}
			mu.Lock()
			got[resp.StatusCode]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if got[http.StatusOK] < 1 || got[http.StatusServiceUnavailable] < 1 || got[http.StatusOK]+got[http.StatusServiceUnavailable] != 5 {
		t.Fatalf("5 parallel logins with one hashing slot: %v, want some 200 and the rest 503", got)
	}
}

type session struct {
	apiErr
	Token            string
	UserID           string
	ExpiresAt        int64
	SessionExpiresAt int64
}

func refresh(api *imtest.API, token string) (int, session) {
	var out session
	code, _ := api.Do("POST", "/api/v1/sessions/refresh", token, nil, &out)
	return code, out
}

func TestRefreshRotatesTokensWithinTheSessionLifetime(t *testing.T) {
	const lifetime = 20 * time.Second
	s := startCfg(t, nil, app.Options{TokenTTL: 15 * time.Second, SessionLifetime: lifetime})
	api := imtest.NewAPI(s.URL)
	alice := api.Register(t, "alice")
	began := time.Now()

	code, next := refresh(api, alice.Token)
	if code != 200 || next.Token == "" || next.Token == alice.Token {
		t.Fatalf("refresh: %d %+v", code, next)
	}
	// The old token is revoked everywhere: REST, refresh, WebSocket.
	if code, _ := api.Do("GET", "/api/v1/users/me", alice.Token, nil, nil); code != http.StatusUnauthorized {
		t.Fatalf("REST with the refreshed token: %d, want 401", code)
	}
	if code, _ := refresh(api, alice.Token); code != http.StatusUnauthorized {
		t.Fatalf("second refresh of one token: %d, want 401", code)
	}
	c := imtest.Dial(t, s.URL)
	c.SendJSON(map[string]any{"t": "auth", "token": alice.Token, "device": "d"})
	if f := c.ExpectClosed(5 * time.Second); len(f) != 1 || f[0].Str("code") != "UNAUTHENTICATED" {
		t.Fatalf("WebSocket auth with the refreshed token: %v", f)
	}
	if code, _ := api.Do("GET", "/api/v1/users/me", next.Token, nil, nil); code != 200 {
		t.Fatalf("REST with the new token: %d", code)
	}
	imtest.Connect(t, s.URL, next.Token, "d")

	// No token of the session outlives the session.
	end := began.Add(lifetime)
	time.Sleep(6 * time.Second) // now + TTL is past the session's end
	code, last := refresh(api, next.Token)
	if code != 200 {
		t.Fatalf("refresh within the session: %d %+v", code, last)
	}
	if got := time.UnixMilli(last.ExpiresAt); got.After(end.Add(time.Second)) || last.ExpiresAt != last.SessionExpiresAt {
		t.Fatalf("refreshed token expires %v (session ends %v, sessionExpiresAt %v), want the session's end",
			got, end, time.UnixMilli(last.SessionExpiresAt))
	}
}

func TestExpiringTokenGetsReauthAndTheClientRefreshesAndReconnects(t *testing.T) {
	s := startCfg(t, nil, app.Options{TokenTTL: 4 * time.Second})
	api := imtest.NewAPI(s.URL)
	alice, bob := api.Register(t, "alice"), api.Register(t, "bob")
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	frames := a.ExpectClosed(10 * time.Second) // reauth 1 s (a quarter of the lifetime) before expiry
	if len(frames) != 1 || frames[0].T() != "reauth" || a.CloseReason() != "token_expired" {
		t.Fatalf("got %v closed %q, want reauth then close token_expired", frames, a.CloseReason())
	}
	// The token still works for the refresh the frame asks for.
	code, next := refresh(api, alice.Token)
	if code != 200 {
		t.Fatalf("refresh after reauth: %d %+v", code, next)
	}
	a2, _ := imtest.Connect(t, s.URL, next.Token, "a1")
	_, bobNext := refresh(api, bob.Token) // bob's first token is about to expire too
	b, _ := imtest.Connect(t, s.URL, bobNext.Token, "b1")
	send(a2, "after-reauth", bob.ID, "hi")
	a2.Expect("ack")
	b.Expect("msg")
}

func TestJSONEndpointsRequireAJSONContentType(t *testing.T) {
	s := start(t, "", gateway.Config{})
	api := imtest.NewAPI(s.URL)
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""} {
		req, _ := http.NewRequest("POST", s.URL+"/api/v1/users", strings.NewReader(`{"username":"mallory","password":"correct-horse-battery"}`))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		resp, err := api.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnsupportedMediaType || !strings.Contains(string(body), "UNSUPPORTED_MEDIA_TYPE") {
			t.Fatalf("register with Content-Type %q: %d %s, want 415", ct, resp.StatusCode, body)
		}
	}
	if code, _, _ := login(api, "mallory", "correct-horse-battery"); code != http.StatusUnauthorized {
		t.Fatalf("an account was created: login %d", code)
	}
}

func TestGroupTextLimitsAndControlCharactersAreEnforced(t *testing.T) {
	s := start(t, "", gateway.Config{})
	api := imtest.NewAPI(s.URL)
	alice, bob := api.Register(t, "alice"), api.Register(t, "bob")
	bad := func(what, method, path string, body any) {
		t.Helper()
		var e apiErr
		if code, _ := api.Do(method, path, alice.Token, body, &e); code != http.StatusBadRequest {
			t.Errorf("%s: %d %+v, want 400", what, code, e)
		}
	}
	bad("100,000-character announcement on create", "POST", "/api/v1/groups", map[string]any{"name": "g", "announcement": strings.Repeat("a", 100000)})
	bad("control character in a name", "POST", "/api/v1/groups", map[string]any{"name": "evil\x1b[2J"})
	bad("control character in an announcement", "POST", "/api/v1/groups", map[string]any{"name": "g", "announcement": "ding\x07"})
	g := createGroup(t, api, alice, bob.ID)
	path := "/api/v1/groups/" + g.ID
	bad("2,001-character announcement", "PATCH", path, map[string]any{"announcement": strings.Repeat("é", 2001)})
	bad("C1 control character in an announcement", "PATCH", path, map[string]any{"announcement": "x\u009b"})
	bad("control character in a new name", "PATCH", path, map[string]any{"name": "a\x00b"})
	bad("control character in a nickname", "PATCH", path+"/members/"+alice.ID, map[string]any{"nickname": "al\x08ice"})
	bad("65-character nickname", "PATCH", path+"/members/"+alice.ID, map[string]any{"nickname": strings.Repeat("n", 65)})
	if code, _ := api.Do("POST", "/api/v1/users", "", map[string]string{"username": "carol", "password": "correct-horse-battery", "displayName": "Car\x7fol"}, nil); code != http.StatusBadRequest {
		t.Errorf("control character in a display name: %d", code)
	}
	// What the limits allow still works: 2,000 characters with line breaks.
	ok := strings.Repeat("line\n", 400)
	if code, _ := api.Do("PATCH", path, alice.Token, map[string]any{"announcement": ok}, nil); code != 200 {
		t.Errorf("2,000-character multi-line announcement: %d", code)
	}
}

func TestOnlyTheOwnerMutesAdmins(t *testing.T) {
	s := start(t, "", gateway.Config{})
	api := imtest.NewAPI(s.URL)
	owner, bob, carol, dave := api.Register(t, "owner"), api.Register(t, "bob"), api.Register(t, "carol"), api.Register(t, "dave")
	g := createGroup(t, api, owner, bob.ID, carol.ID, dave.ID)
	member := func(by imtest.Account, target string, patch map[string]any) int {
		code, _ := api.Do("PATCH", "/api/v1/groups/"+g.ID+"/members/"+target, by.Token, patch, nil)
		return code
	}
	for _, id := range []string{bob.ID, carol.ID} {
		if code := member(owner, id, map[string]any{"role": "admin"}); code != 200 {
			t.Fatalf("promote: %d", code)
		}
	}
	until := time.Now().Add(time.Hour).UnixMilli()
	if code := member(bob, carol.ID, map[string]any{"mutedUntil": until}); code != http.StatusForbidden {
		t.Fatalf("an admin muted another admin: %d, want 403", code)
	}
	if code := member(bob, dave.ID, map[string]any{"mutedUntil": until}); code != 200 {
		t.Fatalf("an admin muting a member: %d", code)
	}
	if code := member(owner, carol.ID, map[string]any{"mutedUntil": until}); code != 200 {
		t.Fatalf("the owner muting an admin: %d", code)
	}
}
