package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imkube/imkube/internal/app"
	"github.com/imkube/imkube/internal/config"
	"github.com/imkube/imkube/internal/imtest"
	"github.com/imkube/imkube/internal/webhook"
	"github.com/imkube/imkube/services/gateway"
)

const hookSecret = "test-webhook-secret-0123456789"

// hookCall is one request a hook server received.
type hookCall struct {
	Path, Event string
	Body        map[string]any
	SigOK       bool
}

// hookServer is a webhook receiver that checks every signature and answers
// with reply (status, JSON body).
type hookServer struct {
	*httptest.Server
	mu    sync.Mutex
	calls []hookCall
	reply func(c hookCall, n int) (int, any)
}

func newHookServer(t *testing.T, reply func(c hookCall, n int) (int, any)) *hookServer {
	h := &hookServer{reply: reply}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		c := hookCall{Path: r.URL.Path, Event: r.Header.Get(webhook.HeaderEvent),
			SigOK: webhook.Verify([]byte(hookSecret), b, r.Header.Get(webhook.HeaderSignature)) &&
				strings.HasPrefix(r.Header.Get(webhook.HeaderSignature), "sha256=")}
		json.Unmarshal(b, &c.Body)
		h.mu.Lock()
		h.calls = append(h.calls, c)
		n := len(h.calls)
		h.mu.Unlock()
		status, body := 200, any(map[string]string{"action": "allow"})
		if h.reply != nil {
			status, body = h.reply(c, n)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(body)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookServer) Calls(path string) []hookCall {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []hookCall
	for _, c := range h.calls {
		if path == "" || c.Path == path {
			out = append(out, c)
		}
	}
	return out
}

// waitCalls waits until ok holds for the calls to path.
func (h *hookServer) waitCalls(t *testing.T, path string, d time.Duration, ok func([]hookCall) bool) []hookCall {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		c := h.Calls(path)
		if ok(c) {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("hook %s: condition not met within %s; calls: %+v", path, d, c)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func hookCluster(edit func(w *config.Webhooks)) *config.Cluster {
	c := fastCluster()
	edit(&c.Webhooks)
	return c
}

func withSecret(c *config.Config) { c.Message.WebhookSecret = hookSecret }

func TestBeforeSendHookRejectsReplacesAndFollowsFailOpen(t *testing.T) {
	hook := newHookServer(t, func(c hookCall, _ int) (int, any) {
		body, _ := c.Body["body"].(string)
		switch {
		case strings.Contains(body, "forbidden word"):
			return 200, map[string]string{"action": "reject", "reason": "no forbidden words here"}
		case strings.Contains(body, "rewrite"):
			return 200, map[string]string{"action": "replace", "body": "rewritten by the hook"}
		case strings.Contains(body, "slow"):
			time.Sleep(time.Second)
		case strings.Contains(body, "broken"):
			return 500, map[string]string{"error": "down"}
		}
		return 200, map[string]string{"action": "allow"}
	})
	cluster := hookCluster(func(w *config.Webhooks) {
		w.BeforeSend = config.BeforeSend{URL: hook.URL + "/before", Timeout: config.Duration(200 * time.Millisecond)}
	})
	s := startCfg(t, withSecret, app.Options{Cluster: cluster})
	api := imtest.NewAPI(s.URL)
	alice, bob := api.Register(t, "alice"), api.Register(t, "bob")
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	b, _ := imtest.Connect(t, s.URL, bob.Token, "b1")

	send(a, "c1", bob.ID, "hello")
	if ack := a.Expect("ack"); ack.Int("seq") != 1 {
		t.Fatalf("allowed message: %v", ack)
	}
	if m := b.Expect("msg"); m.Str("body") != "hello" {
		t.Fatalf("bob got %v", m)
	}

	send(a, "c2", bob.ID, "a forbidden word")
	e := a.Expect("error")
	if e.Str("cmid") != "c2" || e.Str("code") != "FORBIDDEN" || !strings.Contains(e.Str("message"), "no forbidden words here") {
		t.Fatalf("rejected message: got %v, want FORBIDDEN with the hook's reason", e)
	}

	send(a, "c3", bob.ID, "please rewrite this")
	if ack := a.Expect("ack"); ack.Int("seq") != 2 {
		t.Fatalf("replaced message: %v (a rejected message must not take a seq)", ack)
	}
	if m := b.Expect("msg"); m.Str("body") != "rewritten by the hook" {
		t.Fatalf("bob got %v, want the replaced body", m)
	}

	// failOpen false: a hook that does not answer in time refuses the send.
	for _, body := range []string{"slow", "broken"} {
		send(a, "c-"+body, bob.ID, body)
		e = a.Expect("error")
		if e.Str("code") != "UNAVAILABLE" || !e.Bool("retryable") {
			t.Fatalf("%s hook with failOpen false: got %v, want UNAVAILABLE retryable", body, e)
		}
	}
	b.Quiet(300 * time.Millisecond)

	// failOpen true: the same sends are stored unchanged.
	open := *cluster
	open.Webhooks.BeforeSend.FailOpen = true
	s.Process.Live.Set(open)
	send(a, "c-slow", bob.ID, "slow")
	if ack := a.Expect("ack"); ack.Int("seq") != 3 {
		t.Fatalf("failOpen: %v", ack)
	}
	if m := b.Expect("msg"); m.Str("body") != "slow" {
		t.Fatalf("failOpen: bob got %v", m)
	}

	var hist struct{ Items []map[string]any }
	api.Do("GET", "/api/v1/conversations/"+ackConv(alice.ID, bob.ID)+"/messages?fromSeq=1", bob.Token, nil, &hist)
	var bodies []string
	for _, it := range hist.Items {
		bodies = append(bodies, fmt.Sprint(it["body"]))
	}
	if got := strings.Join(bodies, "|"); got != "hello|rewritten by the hook|slow" {
		t.Fatalf("stored: %q, want the allowed, replaced and fail-open messages only", got)
	}
	calls := hook.Calls("/before")
	for _, c := range calls {
		if !c.SigOK || c.Event != "message.before_send" || c.Body["sender"] != alice.ID || c.Body["conv"] == "" || c.Body["kind"] != "text" {
			t.Fatalf("before-send request %+v: want a valid signature and the message fields", c)
		}
	}
}

func ackConv(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return "u:" + a + ":" + b
}

func TestAfterSendEventsArriveInOrderAtLeastOnceAndNeverDelayTheAck(t *testing.T) {
	var fail sync.Mutex
	failing := true
	release := make(chan struct{}) // the first call hangs until the acks are in
	hook := newHookServer(t, func(c hookCall, n int) (int, any) {
		if n == 1 {
			<-release
		}
		fail.Lock()
		defer fail.Unlock()
		if failing || n <= 3 {
			return 500, map[string]string{"error": "try later"}
		}
		return 200, map[string]string{}
	})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock) // before the hook server's Close, which waits for its handlers
	data := t.TempDir()
	cluster := hookCluster(func(w *config.Webhooks) { w.Events = config.Events{URL: hook.URL + "/events"} })
	edit := func(c *config.Config) { withSecret(c); c.Dev.Data = data }
	s := startCfg(t, edit, app.Options{Cluster: cluster, WebhookRetryBase: 50 * time.Millisecond})
	api := imtest.NewAPI(s.URL)
	alice, bob := api.Register(t, "alice"), api.Register(t, "bob")
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")

	for i := 1; i <= 5; i++ {
		send(a, fmt.Sprintf("c%d", i), bob.ID, fmt.Sprintf("m%d", i))
	}
	// The events hook hangs on its first call: the acks must not wait for it.
	hook.waitCalls(t, "/events", 5*time.Second, func(c []hookCall) bool { return len(c) >= 1 })
	for i := 1; i <= 5; i++ {
		a.Expect("ack")
	}
	unblock()
	hook.waitCalls(t, "/events", 5*time.Second, func(c []hookCall) bool { return len(c) >= 3 })

	// The message service restarts while the hook still fails: the
	// outbox is in the store and is delivered after the restart.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fail.Lock()
	failing = false
	fail.Unlock()
	s = startCfg(t, edit, app.Options{Cluster: cluster, WebhookRetryBase: 50 * time.Millisecond})
	a, _ = imtest.Connect(t, s.URL, alice.Token, "a1")
	send(a, "c6", bob.ID, "m6")
	a.Expect("ack")

	want := []string{"m1", "m2", "m3", "m4", "m5", "m6"}
	var delivered []string
	hook.waitCalls(t, "/events", 15*time.Second, func(calls []hookCall) bool {
		// A delivery counts once the receiver accepted it: calls after the
		// failures; duplicates are allowed (at least once), reordering not.
		delivered = delivered[:0]
		seen := map[string]bool{}
		for _, c := range calls[3:] {
			if c.Event != "message.stored" {
				continue
			}
			if !c.SigOK {
				t.Fatalf("event without a valid signature: %+v", c)
			}
			body, _ := c.Body["body"].(string)
			if !seen[body] {
				seen[body] = true
				delivered = append(delivered, body)
			}
		}
		return len(delivered) == len(want)
	})
	if got := strings.Join(delivered, ","); got != strings.Join(want, ",") {
		t.Fatalf("delivered %s, want %s in order", got, strings.Join(want, ","))
	}
	last := hook.Calls("/events")
	for _, c := range last {
		if c.Body["from"] == alice.ID && c.Body["conv"] != ackConv(alice.ID, bob.ID) {
			t.Fatalf("event %+v: wrong conversation", c)
		}
	}
}

func TestOfflinePushOncePerOfflineRecipientBatchedNeverForOnline(t *testing.T) {
	hook := newHookServer(t, func(hookCall, int) (int, any) { return 200, map[string]string{} })
	cluster := hookCluster(func(w *config.Webhooks) { w.OfflinePush = config.OfflinePush{URL: hook.URL + "/push"} })
	s := startCfg(t, withSecret, app.Options{Cluster: cluster})
	api := imtest.NewAPI(s.URL)
	alice, bob, carol, dave := api.Register(t, "alice"), api.Register(t, "bob"), api.Register(t, "carol"), api.Register(t, "dave")
	for _, u := range []imtest.Account{bob, carol} {
		if code, err := api.Do("PUT", "/api/v1/devices/phone/push-token", u.Token, map[string]string{"provider": "fcm", "token": "tok-" + u.Username}, nil); code != http.StatusNoContent {
			t.Fatalf("register push token: %d %v", code, err)
		}
	}
	g := createGroup(t, api, alice, bob.ID, carol.ID, dave.ID)
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	c, _ := imtest.Connect(t, s.URL, carol.Token, "phone") // carol is online; bob and dave are not (dave has no token)
	for i := 1; i <= 3; i++ {
		sendGroup(a, fmt.Sprintf("g%d", i), g.ID, fmt.Sprintf("hi %d", i))
		a.Expect("ack", "msg")
	}
	send(a, "d1", carol.ID, "direct to carol")
	a.Expect("ack", "msg")
	send(a, "d2", bob.ID, "direct to bob")
	a.Expect("ack", "msg")
	_ = c

	calls := hook.waitCalls(t, "/push", 5*time.Second, func(c []hookCall) bool { return len(c) >= 1 })
	time.Sleep(1500 * time.Millisecond) // a second batch window: nothing more may come
	calls = hook.Calls("/push")
	if len(calls) != 1 {
		t.Fatalf("push calls: %d (%+v), want exactly one batch for bob", len(calls), calls)
	}
	p := calls[0]
	if !p.SigOK || p.Event != "push.offline" || p.Body["user"] != bob.ID {
		t.Fatalf("push %+v: want bob's, signed", p)
	}
	msgs, _ := p.Body["messages"].([]any)
	devices, _ := p.Body["devices"].([]any)
	var previews []string
	for _, m := range msgs {
		previews = append(previews, fmt.Sprint(m.(map[string]any)["preview"]))
	}
	if got := strings.Join(previews, "|"); got != "hi 1|hi 2|hi 3|direct to bob" {
		t.Fatalf("batched messages %q, want the four messages to bob in order", got)
	}
	if len(devices) != 1 || devices[0].(map[string]any)["token"] != "tok-bob" || devices[0].(map[string]any)["provider"] != "fcm" {
		t.Fatalf("devices %v, want bob's fcm token", devices)
	}
}

func TestPushTokenRegistrationIsValidatedAndBounded(t *testing.T) {
	s := startCfg(t, nil, app.Options{})
	api := imtest.NewAPI(s.URL)
	bob := api.Register(t, "bob")
	tests := []struct {
		name, device string
		give         any
		token        string
		want         int
	}{
		{"no token", "phone", map[string]string{"provider": "fcm", "token": "x"}, "-", http.StatusUnauthorized},
		{"unknown provider", "phone", map[string]string{"provider": "sms", "token": "x"}, bob.Token, http.StatusBadRequest},
		{"empty token", "phone", map[string]string{"provider": "apns", "token": ""}, bob.Token, http.StatusBadRequest},
		{"token too long", "phone", map[string]string{"provider": "apns", "token": strings.Repeat("x", 4097)}, bob.Token, http.StatusBadRequest},
		{"device too long", strings.Repeat("d", 65), map[string]string{"provider": "apns", "token": "x"}, bob.Token, http.StatusBadRequest},
		{"apns", "phone", map[string]string{"provider": "apns", "token": "abc"}, bob.Token, http.StatusNoContent},
		{"replace", "phone", map[string]string{"provider": "webhook", "token": "https://example.test/x"}, bob.Token, http.StatusNoContent},
	}
	for _, tt := range tests {
		tok := tt.token
		if tok == "-" {
			tok = ""
		}
		if code, _ := api.Do("PUT", "/api/v1/devices/"+tt.device+"/push-token", tok, tt.give, nil); code != tt.want {
			t.Errorf("%s: status %d, want %d", tt.name, code, tt.want)
		}
	}
	for i := 2; i <= 10; i++ {
		if code, _ := api.Do("PUT", fmt.Sprintf("/api/v1/devices/d%d/push-token", i), bob.Token, map[string]string{"provider": "fcm", "token": "t"}, nil); code != http.StatusNoContent {
			t.Fatalf("device %d: %d", i, code)
		}
	}
	if code, _ := api.Do("PUT", "/api/v1/devices/d11/push-token", bob.Token, map[string]string{"provider": "fcm", "token": "t"}, nil); code != http.StatusConflict {
		t.Fatalf("11th device: %d, want 409 (at most 10 per user)", code)
	}
	if code, _ := api.Do("DELETE", "/api/v1/devices/phone/push-token", bob.Token, nil, nil); code != http.StatusNoContent {
		t.Fatalf("unregister: %d", code)
	}
	if code, _ := api.Do("DELETE", "/api/v1/devices/phone/push-token", bob.Token, nil, nil); code != http.StatusNotFound {
		t.Fatalf("unregister again: %d, want 404", code)
	}
	if code, _ := api.Do("PUT", "/api/v1/devices/d11/push-token", bob.Token, map[string]string{"provider": "fcm", "token": "t"}, nil); code != http.StatusNoContent {
		t.Fatalf("after unregistering one: %d", code)
	}
}

const adminKey = "admin-key-0123456789abcdef"

func TestAdminAPIBansLogsOutSendsSystemMessagesAndDeletesForEveryone(t *testing.T) {
	s := startCfg(t, func(c *config.Config) { c.Message.AdminAddr, c.Message.AdminKey = "127.0.0.1:0", adminKey }, app.Options{})
	if s.Process.AdminURL == "" {
		t.Fatal("no admin listener")
	}
	api := imtest.NewAPI(s.URL)
	admin := imtest.NewAPI(s.Process.AdminURL)
	alice, bob := api.Register(t, "alice"), api.Register(t, "bob")

	// Auth: no key, a wrong key, and the public port.
	for _, tok := range []string{"", "wrong-key-0123456789abcdef", adminKey + "x"} {
		if code, _ := admin.Do("POST", "/admin/v1/users/"+bob.ID+"/ban", tok, nil, nil); code != http.StatusUnauthorized {
			t.Fatalf("admin with key %q: %d, want 401", tok, code)
		}
	}
	if code, _ := api.Do("POST", "/admin/v1/users/"+bob.ID+"/ban", adminKey, nil, nil); code == http.StatusOK {
		t.Fatal("the admin API answers on the public port")
	}

	// Devices and sessions.
	b, _ := imtest.Connect(t, s.URL, bob.Token, "b1")
	api.Do("PUT", "/api/v1/devices/b1/push-token", bob.Token, map[string]string{"provider": "apns", "token": "0123456789abcdef"}, nil)
	var dev struct {
		Devices []struct {
			Device, Gateway, PushProvider, PushTokenSuffix string
			Online                                         bool
		}
		Sessions []struct {
			ID        string
			ExpiresAt int64
		}
	}
	if code, err := admin.Do("GET", "/admin/v1/users/"+bob.ID+"/devices", adminKey, nil, &dev); code != 200 || len(dev.Devices) != 1 ||
		!dev.Devices[0].Online || dev.Devices[0].PushProvider != "apns" || dev.Devices[0].PushTokenSuffix != "abcdef" {
		t.Fatalf("devices: %d %v %+v", code, err, dev)
	}
	if len(dev.Sessions) != 1 || dev.Sessions[0].ID == "" || dev.Sessions[0].ExpiresAt == 0 {
		t.Fatalf("bob's login sessions %+v, want the one of his login", dev.Sessions)
	}

	// System message to a user.
	var sys struct{ Items []struct{ Conv string } }
	if code, err := admin.Do("POST", "/admin/v1/messages", adminKey, map[string]any{"users": []string{bob.ID}, "body": "maintenance at 5"}, &sys); code != 200 || len(sys.Items) != 1 {
		t.Fatalf("system message: %d %v", code, err)
	}
	m := b.Expect("msg")
	if m.Str("kind") != "system" || m.Str("from") != "system" || m.Str("body") != "maintenance at 5" || m.Str("conv") != sys.Items[0].Conv {
		t.Fatalf("system message: %v", m)
	}

	// Delete for everyone.
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	send(a, "c1", bob.ID, "regrettable")
	ack := a.Expect("ack")
	b.Expect("msg")
	conv := ack.Str("conv")
	if code, _ := admin.Do("DELETE", fmt.Sprintf("/admin/v1/conversations/%s/messages/%d", conv, ack.Int("seq")), adminKey, nil, nil); code != 200 {
		t.Fatalf("delete for everyone: %d", code)
	}
	for _, c := range []*imtest.Conn{a, b} {
		r := c.Expect("msg")
		if r.Str("kind") != "recall" || r.Int("ref") != ack.Int("seq") || r.Str("from") != "system" {
			t.Fatalf("recall record: %v", r)
		}
	}
	var hist struct{ Items []map[string]any }
	api.Do("GET", "/api/v1/conversations/"+conv+"/messages?fromSeq=1", bob.Token, nil, &hist)
	if len(hist.Items) == 0 || hist.Items[0]["recalled"] != true || hist.Items[0]["body"] != "" {
		t.Fatalf("history after delete: %v", hist.Items)
	}

	// Ban: connections closed, login and WebSocket auth refused with BANNED,
	// the sessions ended.
	if code, _ := admin.Do("POST", "/admin/v1/users/"+bob.ID+"/ban", adminKey, map[string]string{"reason": "spam"}, nil); code != 200 {
		t.Fatalf("ban: %d", code)
	}
	frames := b.ExpectClosed(5 * time.Second)
	if len(frames) == 0 || frames[len(frames)-1].T() != "kicked" || frames[len(frames)-1].Str("reason") != "banned" {
		t.Fatalf("banned connection got %v, want kicked{banned} then close", frames)
	}
	code, e, _ := login(api, "bob", "correct-horse-battery")
	if code != http.StatusForbidden || e.Code != "BANNED" {
		t.Fatalf("banned login: %d %+v, want 403 BANNED", code, e)
	}
	// The ban ended bob's sessions: the old token is refused outright.
	c := imtest.Dial(t, s.URL)
	c.SendJSON(map[string]any{"t": "auth", "token": bob.Token, "device": "b2"})
	if f := c.Expect("error"); f.Str("code") != "UNAUTHENTICATED" {
		t.Fatalf("auth with a token of a banned session: %v", f)
	}
	if code, _ := api.Do("POST", "/api/v1/sessions/refresh", bob.Token, nil, nil); code != http.StatusUnauthorized {
		t.Fatalf("refresh of a banned session: %d, want 401", code)
	}

	// Unban restores.
	if code, _ := admin.Do("DELETE", "/admin/v1/users/"+bob.ID+"/ban", adminKey, nil, nil); code != http.StatusNoContent {
		t.Fatalf("unban: %d", code)
	}
	if code, _ := api.Do("GET", "/api/v1/users/me", bob.Token, nil, nil); code != http.StatusUnauthorized {
		t.Fatalf("a token of a session the ban ended: %d, want 401", code)
	}
	token := relogin(t, api, "bob")
	b, _ = imtest.Connect(t, s.URL, token, "b1")

	// Force logout closes the connection and ends the session: its token
	// is refused (WebSocket, REST, refresh); a new login works.
	if code, _ := admin.Do("POST", "/admin/v1/users/"+bob.ID+"/logout", adminKey, nil, nil); code != 200 {
		t.Fatalf("logout: %d", code)
	}
	if frames := b.ExpectClosed(5 * time.Second); len(frames) == 0 || frames[len(frames)-1].Str("reason") != "logout" {
		t.Fatalf("logged-out connection got %v", frames)
	}
	c = imtest.Dial(t, s.URL)
	c.SendJSON(map[string]any{"t": "auth", "token": token, "device": "b1"})
	if f := c.Expect("error"); f.Str("code") != "UNAUTHENTICATED" {
		t.Fatalf("auth with a logged-out token: %v", f)
	}
	if code, _ := api.Do("POST", "/api/v1/sessions/refresh", token, nil, nil); code != http.StatusUnauthorized {
		t.Fatalf("refresh of a logged-out token: %d, want 401", code)
	}
	imtest.Connect(t, s.URL, relogin(t, api, "bob"), "b1")
}

// relogin logs username in again and returns the new token.
func relogin(t *testing.T, api *imtest.API, username string) string {
	t.Helper()
	var out struct{ Token string }
	if code, err := api.Do("POST", "/api/v1/sessions", "", map[string]string{"username": username, "password": "correct-horse-battery"}, &out); code != 200 || out.Token == "" {
		t.Fatalf("login %s: %d %v", username, code, err)
	}
	return out.Token
}

func TestPresenceEventsFollowKindsAndArriveInOrder(t *testing.T) {
	hook := newHookServer(t, func(hookCall, int) (int, any) { return 200, map[string]string{} })
	cluster := hookCluster(func(w *config.Webhooks) {
		w.Events = config.Events{URL: hook.URL + "/events", Kinds: []string{config.EventUserOnline, config.EventUserOffline}}
	})
	s := startCfg(t, withSecret, app.Options{Cluster: cluster, Gateway: gateway.Config{PresenceGrace: 50 * time.Millisecond}})
	api := imtest.NewAPI(s.URL)
	alice, bob := api.Register(t, "alice"), api.Register(t, "bob")
	b, _ := imtest.Connect(t, s.URL, bob.Token, "b1")
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	send(a, "c1", bob.ID, "not an event of the kinds asked for")
	a.Expect("ack")
	b.Expect("msg")
	b.Close()
	calls := hook.waitCalls(t, "/events", 5*time.Second, func(c []hookCall) bool {
		for _, x := range c {
			if x.Event == "user.offline" && x.Body["user"] == bob.ID {
				return true
			}
		}
		return false
	})
	var bobs []string
	for _, c := range calls {
		if !c.SigOK {
			t.Fatalf("unsigned event %+v", c)
		}
		if c.Event != "user.online" && c.Event != "user.offline" {
			t.Fatalf("event %q delivered though kinds lists only presence", c.Event)
		}
		if c.Body["user"] == bob.ID {
			bobs = append(bobs, c.Event)
		}
	}
	if strings.Join(bobs, ",") != "user.online,user.offline" {
		t.Fatalf("bob's events %v, want online then offline", bobs)
	}
}

func TestAdminBroadcastReachesEveryOnlineConnectionAndIsRateLimited(t *testing.T) {
	s := startCfg(t, func(c *config.Config) { c.Message.AdminAddr, c.Message.AdminKey = "127.0.0.1:0", adminKey }, app.Options{})
	api, admin := imtest.NewAPI(s.URL), imtest.NewAPI(s.Process.AdminURL)
	alice, bob := api.Register(t, "alice"), api.Register(t, "bob")
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	b1, _ := imtest.Connect(t, s.URL, bob.Token, "b1")
	b2, _ := imtest.Connect(t, s.URL, bob.Token, "b2")
	if code, _ := admin.Do("POST", "/admin/v1/broadcast", "", map[string]string{"body": "x"}, nil); code != http.StatusUnauthorized {
		t.Fatalf("broadcast without the key: %d", code)
	}
	for i := 1; i <= 3; i++ {
		body := fmt.Sprintf("maintenance in %d minutes", 10-i)
		if code, err := admin.Do("POST", "/admin/v1/broadcast", adminKey, map[string]string{"body": body}, nil); code != http.StatusAccepted {
			t.Fatalf("broadcast %d: %d %v", i, code, err)
		}
		for _, c := range []*imtest.Conn{a, b1, b2} {
			f := c.Expect("broadcast", "presence")
			if f.Str("body") != body || f.Str("from") != "system" || f.Str("kind") != "system" {
				t.Fatalf("broadcast frame %v", f)
			}
		}
	}
	var e apiErr
	if code, _ := admin.Do("POST", "/admin/v1/broadcast", adminKey, map[string]string{"body": "one too many"}, &e); code != http.StatusTooManyRequests || e.Code != "RATE_LIMITED" {
		t.Fatalf("fourth broadcast at once: %d %+v, want 429 RATE_LIMITED", code, e)
	}
	a.Quiet(200 * time.Millisecond)
}

// A banned account whose session was not ended (a ban recorded in the store
// directly) is still refused everywhere with BANNED.
func TestBannedAccountIsRefusedWithBannedAtAuthLoginAndRefresh(t *testing.T) {
	s := startCfg(t, nil, app.Options{})
	api := imtest.NewAPI(s.URL)
	bob := api.Register(t, "bob")
	if err := s.Store.Ban(context.Background(), bob.ID, "test"); err != nil {
		t.Fatal(err)
	}
	c := imtest.Dial(t, s.URL)
	c.SendJSON(map[string]any{"t": "auth", "token": bob.Token, "device": "b1"})
	if f := c.Expect("error"); f.Str("code") != "BANNED" {
		t.Fatalf("auth of a banned account: %v", f)
	}
	c.ExpectClosed(5 * time.Second)
	var e apiErr
	if code, _ := api.Do("POST", "/api/v1/sessions/refresh", bob.Token, nil, &e); code != http.StatusForbidden || e.Code != "BANNED" {
		t.Fatalf("refresh: %d %+v, want 403 BANNED", code, e)
	}
	if code, e, _ := login(api, "bob", "correct-horse-battery"); code != http.StatusForbidden || e.Code != "BANNED" {
		t.Fatalf("login: %d %+v, want 403 BANNED", code, e)
	}
	if code, e, _ := login(api, "bob", "wrong password"); code != http.StatusUnauthorized {
		t.Fatalf("a wrong password of a banned account: %d %+v, want 401 (a ban is not told to guessers)", code, e)
	}
}

// Friend changes reach the events hook as friend.event, once for each user
// they concern, written with the inbox record (at least once, in order per
// user); kinds limited to friend.event keep message events out.
func TestFriendEventsReachTheEventsHook(t *testing.T) {
	hook := newHookServer(t, func(hookCall, int) (int, any) { return 200, map[string]string{} })
	cluster := hookCluster(func(w *config.Webhooks) {
		w.Events = config.Events{URL: hook.URL + "/events", Kinds: []string{config.EventFriend}}
	})
	s := startCfg(t, withSecret, app.Options{Cluster: cluster})
	api := imtest.NewAPI(s.URL)
	alice, bob := api.Register(t, "alice"), api.Register(t, "bob")
	var req struct{ ID string }
	if code, err := api.Do("POST", "/api/v1/friends/requests", alice.Token, map[string]string{"userId": bob.ID}, &req); code != http.StatusCreated {
		t.Fatalf("friend request: %d %v", code, err)
	}
	if code, err := api.Do("POST", "/api/v1/friends/requests/"+req.ID+"/accept", bob.Token, nil, nil); code/100 != 2 {
		t.Fatalf("accept: %d %v", code, err)
	}
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	send(a, "c1", bob.ID, "not a friend event")
	a.Expect("ack", "event")
	key := func(c hookCall) string { return fmt.Sprint(c.Body["user"], "/", c.Body["kind"]) }
	calls := hook.waitCalls(t, "/events", 10*time.Second, func(c []hookCall) bool {
		seen := map[string]bool{}
		for _, x := range c {
			seen[key(x)] = true
		}
		return seen[bob.ID+"/friend_request"] && seen[bob.ID+"/friend_added"] && seen[alice.ID+"/friend_added"]
	})
	var bobs []string
	for _, c := range calls {
		if !c.SigOK || c.Event != config.EventFriend || c.Body["event"] != config.EventFriend {
			t.Fatalf("event hook call %+v: want a signed friend.event only", c)
		}
		if c.Body["user"] == bob.ID {
			bobs = append(bobs, fmt.Sprint(c.Body["kind"]))
		}
	}
	if len(bobs) < 2 || bobs[0] != "friend_request" || bobs[len(bobs)-1] != "friend_added" {
		t.Fatalf("bob's friend events %v, want friend_request then friend_added", bobs)
	}
}

// Offline members of a read-diffusion group (above the threshold: online
// members get notify frames and pull) get offline pushes too.
func TestOfflinePushReachesReadDiffusionGroupMembers(t *testing.T) {
	hook := newHookServer(t, func(hookCall, int) (int, any) { return 200, map[string]string{} })
	cluster := hookCluster(func(w *config.Webhooks) { w.OfflinePush = config.OfflinePush{URL: hook.URL + "/push"} })
	cluster.Groups.ReadDiffusionThreshold = 2
	s := startCfg(t, withSecret, app.Options{Cluster: cluster})
	api := imtest.NewAPI(s.URL)
	alice, bob, carol, dave := api.Register(t, "alice"), api.Register(t, "bob"), api.Register(t, "carol"), api.Register(t, "dave")
	for _, u := range []imtest.Account{bob, carol} {
		if code, err := api.Do("PUT", "/api/v1/devices/phone/push-token", u.Token, map[string]string{"provider": "apns", "token": "tok-" + u.Username}, nil); code != http.StatusNoContent {
			t.Fatalf("register push token: %d %v", code, err)
		}
	}
	g := createGroup(t, api, alice, bob.ID, carol.ID, dave.ID)
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	c, _ := imtest.Connect(t, s.URL, carol.Token, "phone") // online: a notify, no push
	for i := 1; i <= 2; i++ {
		sendGroup(a, fmt.Sprintf("r%d", i), g.ID, fmt.Sprintf("big %d", i))
		a.Expect("ack", "msg", "notify")
	}
	c.Expect("notify", "msg", "event")
	hook.waitCalls(t, "/push", 5*time.Second, func(c []hookCall) bool { return len(c) >= 1 })
	time.Sleep(1500 * time.Millisecond) // a second batch window: nothing more may come
	calls := hook.Calls("/push")
	if len(calls) != 1 || calls[0].Body["user"] != bob.ID || !calls[0].SigOK {
		t.Fatalf("push calls %+v, want one signed batch for bob", calls)
	}
	msgs, _ := calls[0].Body["messages"].([]any)
	if len(msgs) != 2 || fmt.Sprint(msgs[0].(map[string]any)["preview"]) != "big 1" {
		t.Fatalf("bob's batch %v, want the two group messages", msgs)
	}
}
