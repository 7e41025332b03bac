package app_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/imkube/imkube/internal/app"
	"github.com/imkube/imkube/internal/auth"
	"github.com/imkube/imkube/internal/config"
	"github.com/imkube/imkube/internal/imtest"
	"github.com/imkube/imkube/services/gateway"
)

// fastCluster raises the per-user and per-IP limits through config (as an
// operator would) so that tests can send as fast as they like.
func fastCluster() *config.Cluster {
	c := config.DefaultCluster()
	c.Limits.SendRatePerSecond, c.Limits.SendBurst = 100000, 100000
	c.Limits.ConnectionsPerIPPerSecond = 100000
	return &c
}

func start(t *testing.T, data string, gw gateway.Config) *app.Server {
	t.Helper()
	if data == "" {
		data = t.TempDir()
	}
	s, err := app.StartDev(context.Background(), "127.0.0.1:0", data, app.Options{Gateway: gw, BcryptCost: 4, Cluster: fastCluster()})
	if err != nil {
		t.Fatalf("start dev server: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func send(c *imtest.Conn, cmid, to, body string) {
	c.SendJSON(map[string]any{"t": "send", "cmid": cmid, "to": map[string]string{"user": to}, "kind": "text", "body": body})
}

func TestThousandMessagesArriveOnceInOrderWithMatchingAcks(t *testing.T) {
	s := start(t, "", gateway.Config{})
	api := imtest.NewAPI(s.URL)
	alice, bob := api.Register(t, "alice"), api.Register(t, "bob")
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	b, _ := imtest.Connect(t, s.URL, bob.Token, "b1")

	const n = 1000
	for i := 1; i <= n; i++ {
		send(a, fmt.Sprintf("c%d", i), bob.ID, fmt.Sprintf("m%d", i))
	}
	acks := map[string]imtest.Frame{}
	for len(acks) < n {
		f := a.Expect("ack")
		acks[f.Str("cmid")] = f
	}
	for i := 1; i <= n; i++ {
		m := b.Expect("msg")
		if got, want := m.Str("body"), fmt.Sprintf("m%d", i); got != want {
			t.Fatalf("message %d: body %q, want %q (out of order or lost)", i, got, want)
		}
		if m.Int("seq") != int64(i) || m.Int("inboxSeq") != int64(i) {
			t.Fatalf("message %d: seq %d inboxSeq %d, want %d", i, m.Int("seq"), m.Int("inboxSeq"), i)
		}
		ack := acks[fmt.Sprintf("c%d", i)]
		if ack.Str("mid") != m.Str("mid") || ack.Int("seq") != m.Int("seq") || ack.Str("conv") != m.Str("conv") {
			t.Fatalf("ack %v does not match message %v", ack, m)
		}
		if m.Str("from") != alice.ID || m.Str("conv") != "u:"+min(alice.ID, bob.ID)+":"+max(alice.ID, bob.ID) {
			t.Fatalf("message %d: from %q conv %q", i, m.Str("from"), m.Str("conv"))
		}
	}
	b.Quiet(200 * time.Millisecond) // nothing delivered twice
}

func TestRetriedSendStoresOnceAndRepeatsTheAck(t *testing.T) {
	s := start(t, "", gateway.Config{})
	api := imtest.NewAPI(s.URL)
	alice, bob := api.Register(t, "alice"), api.Register(t, "bob")
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	var acks []imtest.Frame
	for range 3 {
		send(a, "same-cmid", bob.ID, "hello")
		acks = append(acks, a.Expect("ack"))
	}
	for _, ack := range acks[1:] {
		if ack.Str("mid") != acks[0].Str("mid") || ack.Int("seq") != acks[0].Int("seq") || ack.Int("ts") != acks[0].Int("ts") {
			t.Fatalf("acks differ: %v vs %v", ack, acks[0])
		}
	}
	var hist struct {
		Items []map[string]any
		More  bool
	}
	code, err := api.Do("GET", "/api/v1/conversations/"+acks[0].Str("conv")+"/messages", bob.Token, nil, &hist)
	if err != nil || code != 200 || len(hist.Items) != 1 {
		t.Fatalf("history: code %d err %v items %d, want exactly 1 stored message", code, err, len(hist.Items))
	}
}

func TestOfflineRecipientSyncsExactlyWhatItMissedInPages(t *testing.T) {
	s := start(t, "", gateway.Config{})
	api := imtest.NewAPI(s.URL)
	alice, bob := api.Register(t, "alice"), api.Register(t, "bob")
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	b, ok := imtest.Connect(t, s.URL, bob.Token, "b1")
	send(a, "warmup", bob.ID, "before")
	a.Expect("ack")
	b.Expect("msg")
	last := ok.Int("inboxSeq") + 1
	b.Close()

	for i := 1; i <= 100; i++ {
		send(a, fmt.Sprintf("c%d", i), bob.ID, fmt.Sprintf("m%d", i))
		a.Expect("ack")
	}
	b2, ok2 := imtest.Connect(t, s.URL, bob.Token, "b1")
	if ok2.Int("inboxSeq") != last+100 {
		t.Fatalf("auth_ok inboxSeq %d, want %d", ok2.Int("inboxSeq"), last+100)
	}
	b2.SendJSON(map[string]any{"t": "sync", "id": "all", "after": last, "limit": 100})
	res := b2.Expect("sync_result")
	if res.Str("id") != "all" || res.Bool("more") || len(res.Items()) != 100 {
		t.Fatalf("sync: id %q more %v items %d, want all 100", res.Str("id"), res.Bool("more"), len(res.Items()))
	}
	for i, it := range res.Items() {
		if it.Str("body") != fmt.Sprintf("m%d", i+1) || it.Int("inboxSeq") != last+int64(i)+1 {
			t.Fatalf("item %d: %v", i, it)
		}
	}
	// Paging with limit 30: 30, 30, 30, 10.
	after, pages := last, 0
	var bodies []string
	for {
		b2.SendJSON(map[string]any{"t": "sync", "id": fmt.Sprintf("p%d", pages), "after": after, "limit": 30})
		r := b2.Expect("sync_result")
		pages++
		for _, it := range r.Items() {
			bodies = append(bodies, it.Str("body"))
		}
		after = r.Int("inboxSeq")
		if !r.Bool("more") {
			break
		}
		if pages > 10 {
			t.Fatal("sync paging does not end")
		}
	}
	if pages != 4 || len(bodies) != 100 || bodies[0] != "m1" || bodies[99] != "m100" {
		t.Fatalf("paged sync: %d pages, %d items", pages, len(bodies))
	}
}

func TestEveryDeviceGetsMessagesIncludingTheSendersOtherDevice(t *testing.T) {
	s := start(t, "", gateway.Config{})
	api := imtest.NewAPI(s.URL)
	alice, bob := api.Register(t, "alice"), api.Register(t, "bob")
	a1, _ := imtest.Connect(t, s.URL, alice.Token, "phone")
	a2, _ := imtest.Connect(t, s.URL, alice.Token, "laptop")
	b1, _ := imtest.Connect(t, s.URL, bob.Token, "phone")
	b2, _ := imtest.Connect(t, s.URL, bob.Token, "laptop")
	for i := 1; i <= 5; i++ {
		send(a1, fmt.Sprintf("c%d", i), bob.ID, fmt.Sprintf("m%d", i))
		a1.Expect("ack")
	}
	for _, c := range []*imtest.Conn{b1, b2, a2} {
		for i := 1; i <= 5; i++ {
			if m := c.Expect("msg"); m.Str("body") != fmt.Sprintf("m%d", i) {
				t.Fatalf("device got %v, want m%d", m, i)
			}
		}
	}
	a1.Quiet(200 * time.Millisecond) // the sending device gets acks, not copies
}

func TestDroppedDeliveryIsRecoveredByPullingTheGap(t *testing.T) {
	var drop atomic.Bool
	drop.Store(true)
	s := start(t, "", gateway.Config{DropDelivery: func(user, device string, frame []byte) bool {
		return strings.Contains(string(frame), `"body":"m3"`) && drop.CompareAndSwap(true, false)
	}})
	api := imtest.NewAPI(s.URL)
	alice, bob := api.Register(t, "alice"), api.Register(t, "bob")
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	b, _ := imtest.Connect(t, s.URL, bob.Token, "b1")
	for i := 1; i <= 4; i++ {
		send(a, fmt.Sprintf("c%d", i), bob.ID, fmt.Sprintf("m%d", i))
		a.Expect("ack")
	}
	// The client logic under test: track inboxSeq, detect a jump, fetch the gap.
	var cursor int64
	var got []string
	var conv string
	for len(got) < 3 {
		m := b.Expect("msg")
		if gap := m.Int("inboxSeq") - cursor; gap > 1 {
			b.SendJSON(map[string]any{"t": "sync", "id": "gap", "after": cursor, "limit": gap - 1})
			r := b.Expect("sync_result")
			if len(r.Items()) != int(gap-1) || r.Items()[0].Str("body") != "m3" {
				t.Fatalf("gap sync returned %v, want exactly m3", r.Items())
			}
			b.SendJSON(map[string]any{"t": "pull", "id": "gap2", "conv": m.Str("conv"), "from": cursor + 1, "to": m.Int("seq") - 1})
			p := b.Expect("pull_result")
			if len(p.Items()) != 1 || p.Items()[0].Str("body") != "m3" {
				t.Fatalf("gap pull returned %v, want exactly m3", p.Items())
			}
			got = append(got, "m3")
		}
		got = append(got, m.Str("body"))
		cursor, conv = m.Int("inboxSeq"), m.Str("conv")
	}
	if strings.Join(got, ",") != "m1,m2,m3,m4" || conv == "" {
		t.Fatalf("client saw %v", got)
	}
}

func TestSecondLoginOnTheSameDeviceKicksTheFirst(t *testing.T) {
	s := start(t, "", gateway.Config{})
	api := imtest.NewAPI(s.URL)
	alice := api.Register(t, "alice")
	old, _ := imtest.Connect(t, s.URL, alice.Token, "phone")
	imtest.Connect(t, s.URL, alice.Token, "phone")
	frames := old.ExpectClosed(10 * time.Second)
	if len(frames) != 1 || frames[0].T() != "kicked" || frames[0].Str("reason") != "replaced" {
		t.Fatalf("old connection got %v, want kicked{replaced} then close", frames)
	}
}

func TestBadInputGetsCodedErrorsAndTheConnectionStaysUsable(t *testing.T) {
	s := start(t, "", gateway.Config{})
	api := imtest.NewAPI(s.URL)
	alice, bob, carol := api.Register(t, "alice"), api.Register(t, "bob"), api.Register(t, "carol")
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	b, _ := imtest.Connect(t, s.URL, bob.Token, "b1")
	send(b, "bc", carol.ID, "private")
	b.Expect("ack")
	bobCarol := "u:" + min(bob.ID, carol.ID) + ":" + max(bob.ID, carol.ID)

	tests := []struct {
		name     string
		give     string
		wantCode string
	}{
		{"malformed JSON", `{"t":"send",`, "BAD_FRAME"},
		{"unknown type", `{"t":"teleport"}`, "BAD_FRAME"},
		{"missing type", `{"cmid":"x"}`, "BAD_FRAME"},
		{"send without cmid", fmt.Sprintf(`{"t":"send","to":{"user":%q},"kind":"text","body":"x"}`, bob.ID), "BAD_FRAME"},
		{"send without recipient", `{"t":"send","cmid":"x1","kind":"text","body":"x"}`, "BAD_FRAME"},
		{"send without body", fmt.Sprintf(`{"t":"send","cmid":"x2","to":{"user":%q},"kind":"text"}`, bob.ID), "BAD_FRAME"},
		{"body over the limit", fmt.Sprintf(`{"t":"send","cmid":"x3","to":{"user":%q},"kind":"text","body":%q}`, bob.ID, strings.Repeat("x", 16<<10+1)), "TOO_LARGE"},
		{"send to a user that does not exist", `{"t":"send","cmid":"x4","to":{"user":"999999"},"kind":"text","body":"x"}`, "NOT_FOUND"},
		{"pull of a conversation the user is not in", fmt.Sprintf(`{"t":"pull","id":"p","conv":%q,"from":1}`, bobCarol), "FORBIDDEN"},
		{"sync with negative cursor", `{"t":"sync","id":"s","after":-1}`, "BAD_FRAME"},
		{"invalid UTF-8", "{\"t\":\"ping\",\"x\":\"\xff\"}", "BAD_FRAME"},
		{"second auth", fmt.Sprintf(`{"t":"auth","token":%q,"device":"a1"}`, alice.Token), "BAD_FRAME"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a.SendRaw([]byte(tt.give))
			f := a.Expect("error")
			if f.Str("code") != tt.wantCode || f.Str("message") == "" {
				t.Fatalf("got %v, want code %s", f, tt.wantCode)
			}
			a.SendJSON(map[string]string{"t": "ping"})
			a.Expect("pong")
		})
	}
}

func TestConnectionsWithoutValidAuthAreClosed(t *testing.T) {
	s := start(t, "", gateway.Config{AuthTimeout: 500 * time.Millisecond})
	api := imtest.NewAPI(s.URL)
	alice := api.Register(t, "alice")
	keys, err := auth.LoadKeys(filepath.Join(dataDir(t, s), "jwt.key"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	expired, _, _ := keys.WithClock(func() time.Time { return time.Now().Add(-2 * time.Hour) }).Issue(alice.ID)
	forgedKeys, _ := auth.NewKeys([]string{strings.Repeat("k", 40)}, time.Hour)
	forged, _, _ := forgedKeys.Issue(alice.ID)

	tests := []struct {
		name string
		give string // first frame; empty: send nothing
	}{
		{"no auth within the deadline", ""},
		{"send before auth", `{"t":"send","cmid":"c","to":{"user":"1"},"kind":"text","body":"x"}`},
		{"forged token", fmt.Sprintf(`{"t":"auth","token":%q,"device":"d"}`, forged)},
		{"expired token", fmt.Sprintf(`{"t":"auth","token":%q,"device":"d"}`, expired)},
		{"garbage token", `{"t":"auth","token":"not.a.jwt","device":"d"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := imtest.Dial(t, s.URL)
			if tt.give != "" {
				c.SendRaw([]byte(tt.give))
			}
			frames := c.ExpectClosed(5 * time.Second)
			if len(frames) != 1 || frames[0].T() != "error" || frames[0].Str("code") != "UNAUTHENTICATED" {
				t.Fatalf("got %v, want one UNAUTHENTICATED error and a close", frames)
			}
		})
	}
}

func dataDir(t *testing.T, s *app.Server) string {
	t.Helper()
	return s.DataDir
}

func TestRestartKeepsAccountsHistoryAndSync(t *testing.T) {
	data := t.TempDir()
	s, err := app.StartDev(context.Background(), "127.0.0.1:0", data, app.Options{BcryptCost: 4, Cluster: fastCluster()})
	if err != nil {
		t.Fatal(err)
	}
	api := imtest.NewAPI(s.URL)
	alice, bob := api.Register(t, "alice"), api.Register(t, "bob")
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	for i := 1; i <= 3; i++ {
		send(a, fmt.Sprintf("c%d", i), bob.ID, fmt.Sprintf("m%d", i))
		a.Expect("ack")
	}
	a.Close()
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	s2 := start(t, data, gateway.Config{})
	api2 := imtest.NewAPI(s2.URL)
	var sess struct{ Token string }
	if code, err := api2.Do("POST", "/api/v1/sessions", "", map[string]string{"username": "bob", "password": "correct-horse-battery"}, &sess); err != nil || code != 200 {
		t.Fatalf("login after restart: %d %v", code, err)
	}
	var convs []struct {
		Conv    string
		LastSeq int64
		Unread  int64
	}
	if code, err := api2.Do("GET", "/api/v1/conversations", sess.Token, nil, &convs); err != nil || code != 200 || len(convs) != 1 || convs[0].LastSeq != 3 || convs[0].Unread != 3 {
		t.Fatalf("conversations after restart: %d %v %+v", code, err, convs)
	}
	b, ok := imtest.Connect(t, s2.URL, sess.Token, "b1")
	if ok.Int("inboxSeq") != 3 {
		t.Fatalf("auth_ok inboxSeq %d, want 3", ok.Int("inboxSeq"))
	}
	b.SendJSON(map[string]any{"t": "sync", "id": "s", "after": 0})
	if r := b.Expect("sync_result"); len(r.Items()) != 3 {
		t.Fatalf("sync after restart: %v", r)
	}
	// New messages continue the conversation above the old ones.
	a2, _ := imtest.Connect(t, s2.URL, alice.Token, "a1")
	send(a2, "c4", bob.ID, "m4")
	if ack := a2.Expect("ack"); ack.Int("seq") <= 3 {
		t.Fatalf("seq after restart %d, want > 3", ack.Int("seq"))
	}
	if m := b.Expect("msg"); m.Str("body") != "m4" || m.Int("inboxSeq") <= 3 {
		t.Fatalf("message after restart: %v", m)
	}
}

func TestRESTAccountsAndConversations(t *testing.T) {
	s := start(t, "", gateway.Config{})
	api := imtest.NewAPI(s.URL)
	alice, bob := api.Register(t, "alice"), api.Register(t, "bob")

	var e struct{ Code, Message string }
	if code, _ := api.Do("POST", "/api/v1/users", "", map[string]string{"username": "alice", "password": "another-password"}, &e); code != http.StatusConflict || e.Code != "USERNAME_TAKEN" {
		t.Fatalf("duplicate username: %d %+v", code, e)
	}
	if code, _ := api.Do("POST", "/api/v1/sessions", "", map[string]string{"username": "alice", "password": "wrong-password"}, &e); code != http.StatusUnauthorized || e.Code != "BAD_CREDENTIALS" {
		t.Fatalf("wrong password: %d %+v", code, e)
	}
	if code, _ := api.Do("GET", "/api/v1/users/me", "", nil, &e); code != http.StatusUnauthorized {
		t.Fatalf("me without token: %d", code)
	}
	if code, _ := api.Do("GET", "/api/v1/users/me", "forged."+alice.Token, nil, &e); code != http.StatusUnauthorized {
		t.Fatalf("me with forged token: %d", code)
	}
	var me struct{ ID, Username, DisplayName string }
	if code, _ := api.Do("GET", "/api/v1/users/me", alice.Token, nil, &me); code != 200 || me.ID != alice.ID || me.Username != "alice" {
		t.Fatalf("me: %d %+v", code, me)
	}
	var found struct{ ID string }
	if code, _ := api.Do("GET", "/api/v1/users?username=bob", alice.Token, nil, &found); code != 200 || found.ID != bob.ID {
		t.Fatalf("lookup bob: %d %+v", code, found)
	}
	if code, _ := api.Do("GET", "/api/v1/users?username=nobody", alice.Token, nil, &e); code != 404 || e.Code != "NOT_FOUND" {
		t.Fatalf("lookup nobody: %d %+v", code, e)
	}

	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	b, _ := imtest.Connect(t, s.URL, bob.Token, "b1")
	for i := 1; i <= 3; i++ {
		send(a, fmt.Sprintf("c%d", i), bob.ID, "hi")
		a.Expect("ack")
	}
	type conv struct {
		Conv                     string
		LastSeq, ReadSeq, Unread int64
	}
	var list []conv
	if code, _ := api.Do("GET", "/api/v1/conversations", bob.Token, nil, &list); code != 200 || len(list) != 1 || list[0].Unread != 3 {
		t.Fatalf("bob's conversations: %d %+v", code, list)
	}
	b.SendJSON(map[string]any{"t": "read", "conv": list[0].Conv, "seq": 2})
	if r := a.Expect("receipt"); r.Str("user") != bob.ID || r.Int("seq") != 2 || r.Str("kind") != "read" {
		t.Fatalf("receipt: %v", r)
	}
	if code, _ := api.Do("GET", "/api/v1/conversations", bob.Token, nil, &list); code != 200 || list[0].ReadSeq != 2 || list[0].Unread != 1 {
		t.Fatalf("after read: %+v", list)
	}
	if code, _ := api.Do("GET", "/api/v1/conversations", alice.Token, nil, &list); code != 200 || list[0].Unread != 0 {
		t.Fatalf("sender's own messages count as read: %+v", list)
	}
	var hist struct {
		Items []map[string]any
		More  bool
	}
	if code, _ := api.Do("GET", "/api/v1/conversations/"+list[0].Conv+"/messages?fromSeq=2&limit=1", alice.Token, nil, &hist); code != 200 || len(hist.Items) != 1 || !hist.More {
		t.Fatalf("history page: %+v", hist)
	}
	carol := api.Register(t, "carol")
	if code, _ := api.Do("GET", "/api/v1/conversations/"+list[0].Conv+"/messages", carol.Token, nil, &e); code != http.StatusForbidden || e.Code != "FORBIDDEN" {
		t.Fatalf("IDOR on history: %d %+v", code, e)
	}
}

func TestSenderOverTheRateLimitIsBlockedOthersAreNot(t *testing.T) {
	c := fastCluster()
	c.Limits.SendRatePerSecond, c.Limits.SendBurst = 5, 5
	s, err := app.StartDev(context.Background(), "127.0.0.1:0", t.TempDir(), app.Options{BcryptCost: 4, Cluster: c})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	api := imtest.NewAPI(s.URL)
	alice, bob := api.Register(t, "alice"), api.Register(t, "bob")
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	b, _ := imtest.Connect(t, s.URL, bob.Token, "b1")
	for i := range 40 {
		send(a, fmt.Sprintf("c%d", i), bob.ID, "spam")
	}
	acked, limited := 0, 0
	for range 40 {
		f := a.Next()
		switch {
		case f.T() == "ack":
			acked++
		case f.T() == "error" && f.Str("code") == "RATE_LIMITED" && f.Bool("retryable") && f.Int("retryAfterMs") > 0 && f.Str("cmid") != "":
			limited++
		default:
			t.Fatalf("unexpected frame %v", f)
		}
	}
	if limited == 0 || acked == 0 || acked > 20 {
		t.Fatalf("acked %d, rate limited %d: want the burst accepted and the rest limited", acked, limited)
	}
	send(b, "b1", alice.ID, "hello")
	if f := b.Expect("ack", "msg"); f.T() != "ack" {
		t.Fatalf("another user is limited too: %v", f)
	}
}

func TestLoginBruteForceIsSlowedPerUsername(t *testing.T) {
	s := start(t, "", gateway.Config{})
	api := imtest.NewAPI(s.URL)
	api.Register(t, "alice")
	api.Register(t, "bob")
	var e struct{ Code string }
	limited := false
	for i := range 10 {
		code, _ := api.Do("POST", "/api/v1/sessions", "", map[string]string{"username": "alice", "password": fmt.Sprintf("guess-%d-xx", i)}, &e)
		if code == http.StatusTooManyRequests && e.Code == "TOO_MANY_ATTEMPTS" {
			limited = true
			break
		}
		if code != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d %+v", i, code, e)
		}
	}
	if !limited {
		t.Fatal("10 wrong passwords in a row were never slowed down")
	}
	// The right password is refused too while locked: the attacker learns nothing.
	if code, _ := api.Do("POST", "/api/v1/sessions", "", map[string]string{"username": "alice", "password": "correct-horse-battery"}, &e); code != http.StatusTooManyRequests {
		t.Fatalf("locked account accepted a login: %d", code)
	}
	if code, _ := api.Do("POST", "/api/v1/sessions", "", map[string]string{"username": "bob", "password": "correct-horse-battery"}, nil); code != http.StatusOK {
		t.Fatalf("another user is locked out too: %d", code)
	}
}

func TestMetricsAreExportedForPrometheus(t *testing.T) {
	s := start(t, "", gateway.Config{})
	api := imtest.NewAPI(s.URL)
	alice, bob := api.Register(t, "alice"), api.Register(t, "bob")
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	b, _ := imtest.Connect(t, s.URL, bob.Token, "b1")
	send(a, "c1", bob.ID, "hi")
	a.Expect("ack")
	b.Expect("msg")
	resp, err := http.Get(s.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		"imkube_gateway_connections 2", `imkube_gateway_frames_in_total{type="send"} 1`, "imkube_gateway_send_ack_seconds_bucket",
		"imkube_gateway_delivery_seconds_count", `imkube_message_messages_total{diffusion="direct"} 1`, "imkube_message_store_seconds_count",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestStringsAreStoredAndReturnedVerbatim(t *testing.T) {
	s := start(t, "", gateway.Config{})
	api := imtest.NewAPI(s.URL)
	alice, bob := api.Register(t, "alice"), api.Register(t, "bob")
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	b, _ := imtest.Connect(t, s.URL, bob.Token, "b1")
	bodies := []string{"'; DROP TABLE messages; --", "emoji 🐱‍👤 and 中文", "tab\tnewline\ncontrol\x01\x7f", `{"t":"ack"} \" \\`, ""}
	for i, body := range bodies {
		send(a, fmt.Sprintf("v%d", i), bob.ID, body)
		a.Expect("ack")
		if m := b.Expect("msg"); m.Str("body") != body {
			t.Fatalf("pushed body %q, want %q", m.Str("body"), body)
		}
	}
	b.SendJSON(map[string]any{"t": "sync", "id": "s", "after": 0})
	for i, it := range b.Expect("sync_result").Items() {
		if it.Str("body") != bodies[i] {
			t.Fatalf("synced body %q, want %q", it.Str("body"), bodies[i])
		}
	}
	// Nesting deeper than the protocol needs is refused before decoding.
	a.SendRaw([]byte(`{"t":"ping","x":` + strings.Repeat("[", 50) + strings.Repeat("]", 50) + `}`))
	if e := a.Expect("error"); e.Str("code") != "BAD_FRAME" {
		t.Fatalf("deep JSON: %v", e)
	}
}

func TestTokensCanBeRefreshed(t *testing.T) {
	s := start(t, "", gateway.Config{})
	api := imtest.NewAPI(s.URL)
	alice := api.Register(t, "alice")
	var sess struct {
		Token     string
		UserID    string
		ExpiresAt int64
	}
	if code, err := api.Do("POST", "/api/v1/sessions/refresh", alice.Token, nil, &sess); err != nil || code != 200 || sess.Token == "" || sess.UserID != alice.ID {
		t.Fatalf("refresh: %d %v %+v", code, err, sess)
	}
	imtest.Connect(t, s.URL, sess.Token, "d")
	if code, _ := api.Do("POST", "/api/v1/sessions/refresh", "", nil, nil); code != http.StatusUnauthorized {
		t.Fatalf("refresh without a token: %d", code)
	}
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestLogsHoldNoSecrets(t *testing.T) {
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	data := t.TempDir()
	s, err := app.StartDev(context.Background(), "127.0.0.1:0", data, app.Options{BcryptCost: 4, Cluster: fastCluster(), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	api := imtest.NewAPI(s.URL)
	alice, bob := api.Register(t, "alice"), api.Register(t, "bob")
	api.Do("POST", "/api/v1/sessions", "", map[string]string{"username": "alice", "password": "wrong-password-1"}, nil)
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	send(a, "c1", bob.ID, "hello")
	a.Expect("ack")
	c := imtest.Dial(t, s.URL)
	c.SendJSON(map[string]any{"t": "auth", "token": alice.Token + "x", "device": "d"})
	c.ExpectClosed(5 * time.Second)
	a.Close()
	s.Close()
	key, _ := os.ReadFile(filepath.Join(data, "jwt.key"))
	out := logs.String()
	if !strings.Contains(out, "user registered") {
		t.Fatalf("the test captured no logs: %q", out)
	}
	for name, secret := range map[string]string{
		"password": "correct-horse-battery", "wrong password": "wrong-password-1", "token": alice.Token,
		"token signature": alice.Token[strings.LastIndex(alice.Token, ".")+1:], "jwt key": strings.TrimSpace(string(key)),
	} {
		if strings.Contains(out, secret) {
			t.Errorf("the logs contain the %s", name)
		}
	}
}

func TestOneTraceFollowsAMessageFromGatewayToRecipient(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	s, err := app.StartDev(context.Background(), "127.0.0.1:0", t.TempDir(), app.Options{BcryptCost: 4, Cluster: fastCluster(), Tracer: tp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	api := imtest.NewAPI(s.URL)
	alice, bob := api.Register(t, "alice"), api.Register(t, "bob")
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	b, _ := imtest.Connect(t, s.URL, bob.Token, "b1")
	send(a, "traced", bob.ID, "hi")
	a.Expect("ack")
	b.Expect("msg")
	// Spans end after the frames they cause are queued (the push spans just
	// after, message.process once its pushes are published, which the
	// gateway may handle first): wait (bounded) for all of them.
	var byName map[string][]tracetest.SpanStub
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		byName = map[string][]tracetest.SpanStub{}
		for _, sp := range exp.GetSpans() {
			byName[sp.Name] = append(byName[sp.Name], sp)
		}
		done := len(byName["gateway.send"]) >= 1 && len(byName["message.process"]) >= 1 && len(byName["gateway.push"]) >= 2
		if done || time.Now().After(deadline) {
			break
		}
	}
	sends := byName["gateway.send"]
	if len(sends) != 1 || len(byName["message.process"]) != 1 || len(byName["gateway.push"]) < 2 {
		counts := map[string]int{}
		for _, name := range slices.Sorted(maps.Keys(byName)) {
			counts[name] = len(byName[name])
		}
		t.Fatalf("spans: %v", counts)
	}
	trace := sends[0].SpanContext.TraceID()
	if byName["message.process"][0].SpanContext.TraceID() != trace {
		t.Fatal("message.process is not in the send's trace: context lost on the bus")
	}
	for _, p := range byName["gateway.push"] {
		if p.SpanContext.TraceID() != trace {
			t.Fatal("gateway.push is not in the send's trace")
		}
	}
}
