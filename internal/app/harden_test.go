package app_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/imkube/imkube/internal/imtest"
	"github.com/imkube/imkube/services/gateway"
)

// sendRaw sends a message whose body is written into the frame as is (a
// body of '<' would be escaped to six bytes each by encoding/json and no
// longer fit the frame limit; clients may send it unescaped).
func sendRaw(c *imtest.Conn, cmid, to, body string) {
	c.SendRaw([]byte(`{"t":"send","cmid":"` + cmid + `","to":{"user":"` + to + `"},"kind":"text","body":"` + body + `"}`))
}

func directConv(a, b string) string { return "u:" + min(a, b) + ":" + max(a, b) }

// expectAlive checks that the connection still answers.
func expectAlive(t *testing.T, c *imtest.Conn, skip ...string) {
	t.Helper()
	c.SendJSON(map[string]any{"t": "ping"})
	c.Expect("pong", skip...)
}

func TestBacklogThatEncodesLargerThanTheQueueIsSyncedAndPulledInPages(t *testing.T) {
	s := start(t, "", gateway.Config{})
	api := imtest.NewAPI(s.URL)
	alice, bob := api.Register(t, "alice"), api.Register(t, "bob")
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")

	// While bob is offline: 12 bodies of 16 KiB '<' (96 KiB each once JSON
	// escapes them) and 66 ordinary 16 KiB messages: together more than the
	// 1 MiB outgoing queue in one page of 100.
	lt, plain := strings.Repeat("<", 16<<10), strings.Repeat("x", 16<<10)
	const n = 78
	for i := 1; i <= n; i++ {
		body := plain
		if i <= 12 {
			body = lt
		}
		sendRaw(a, fmt.Sprintf("c%d", i), bob.ID, body)
		a.Expect("ack")
	}

	b, _ := imtest.Connect(t, s.URL, bob.Token, "b1")
	var got []imtest.Frame
	after, pages := int64(0), 0
	for more := true; more; pages++ {
		if pages > n {
			t.Fatal("sync paging does not end")
		}
		b.SendJSON(map[string]any{"t": "sync", "id": fmt.Sprintf("s%d", pages), "after": after, "limit": 100})
		r := b.Expect("sync_result")
		if len(r.Items()) == 0 {
			t.Fatalf("sync page %d is empty with more=%v", pages, r.Bool("more"))
		}
		got = append(got, r.Items()...)
		after, more = r.Int("inboxSeq"), r.Bool("more")
	}
	if len(got) != n || pages < 2 {
		t.Fatalf("synced %d messages in %d pages, want %d in several pages", len(got), pages, n)
	}
	for i, m := range got {
		if m.Int("seq") != int64(i+1) || len(m.Str("body")) != 16<<10 {
			t.Fatalf("item %d: seq %d body %d bytes", i, m.Int("seq"), len(m.Str("body")))
		}
	}

	conv := directConv(alice.ID, bob.ID)
	var pulled int
	from := int64(1)
	for more, pages := true, 0; more; pages++ {
		if pages > n {
			t.Fatal("pull paging does not end")
		}
		b.SendJSON(map[string]any{"t": "pull", "id": fmt.Sprintf("p%d", pages), "conv": conv, "from": from, "limit": 100})
		r := b.Expect("pull_result")
		items := r.Items()
		if len(items) == 0 {
			t.Fatalf("pull page %d is empty with more=%v", pages, r.Bool("more"))
		}
		pulled += len(items)
		from, more = items[len(items)-1].Int("seq")+1, r.Bool("more")
	}
	if pulled != n {
		t.Fatalf("pulled %d messages, want %d", pulled, n)
	}
	expectAlive(t, b)
}

func TestRequestsFasterThanTheClientReadsAreSlowedNotDisconnected(t *testing.T) {
	s := start(t, "", gateway.Config{})
	api := imtest.NewAPI(s.URL)
	alice, bob := api.Register(t, "alice"), api.Register(t, "bob")
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	lt := strings.Repeat("<", 16<<10)
	for i := 1; i <= 3; i++ {
		sendRaw(a, fmt.Sprintf("c%d", i), bob.ID, lt)
		a.Expect("ack")
	}
	// 40 pipelined syncs of ~290 KiB each: over 11 MiB of replies, eleven
	// times the queue and more than the socket buffers hold, asked for
	// without reading any.
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(s.URL, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ws.WriteJSON(map[string]any{"t": "auth", "token": bob.Token, "device": "b1"})
	var f map[string]any
	if err := ws.ReadJSON(&f); err != nil || f["t"] != "auth_ok" {
		t.Fatalf("auth: %v %v", f, err)
	}
	const reqs = 40
	for i := range reqs {
		ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if err := ws.WriteJSON(map[string]any{"t": "sync", "id": fmt.Sprintf("s%d", i), "after": 0, "limit": 3}); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	time.Sleep(500 * time.Millisecond) // the replies pile up
	ws.WriteJSON(map[string]any{"t": "ping"})
	for i := 0; i <= reqs; i++ {
		ws.SetReadDeadline(time.Now().Add(20 * time.Second))
		f = nil
		if err := ws.ReadJSON(&f); err != nil {
			t.Fatalf("after %d replies: %v", i, err)
		}
		if i == reqs {
			if f["t"] != "pong" {
				t.Fatalf("last frame %v, want pong", f["t"])
			}
			break
		}
		if f["t"] != "sync_result" || f["id"] != fmt.Sprintf("s%d", i) {
			t.Fatalf("reply %d: %v %v", i, f["t"], f["id"])
		}
	}
}

func TestReadCursorsAreStoredOnlyForConversationsOfTheReader(t *testing.T) {
	s := start(t, "", gateway.Config{ReadRate: 1e6, ReadBurst: 1e6})
	api := imtest.NewAPI(s.URL)
	alice, bob := api.Register(t, "alice"), api.Register(t, "bob")
	b, _ := imtest.Connect(t, s.URL, bob.Token, "b1")

	// Well-formed ids of conversations bob is not in, or that have no
	// messages: accepted quietly, nothing stored.
	for i := range 300 {
		b.SendJSON(map[string]any{"t": "read", "conv": directConv(bob.ID, fmt.Sprintf("x%d", i)), "seq": 1})
	}
	b.SendJSON(map[string]any{"t": "read", "conv": directConv(alice.ID, bob.ID), "seq": 5})
	b.SendJSON(map[string]any{"t": "read", "conv": "g:123", "seq": 5})
	if f := b.Expect("error"); f.Str("code") != "FORBIDDEN" {
		t.Fatalf("read of a group bob is not in: %v", f)
	}
	// Malformed ids are refused where they enter.
	for _, conv := range []string{
		"u:" + max(alice.ID, bob.ID) + ":" + min(alice.ID, bob.ID), // not sorted
		"g:" + strings.Repeat("9", 100),                            // too long
		"u:" + bob.ID + ":a b", "g:", "x:1", "u:" + bob.ID, "g:1:2",
	} {
		b.SendJSON(map[string]any{"t": "read", "conv": conv, "seq": 1})
		if f := b.Expect("error"); f.Str("code") != "BAD_FRAME" {
			t.Fatalf("read of %q: %v, want BAD_FRAME", conv, f)
		}
		b.SendJSON(map[string]any{"t": "pull", "id": "p", "conv": conv, "from": 1})
		if f := b.Expect("error"); f.Str("code") != "BAD_FRAME" {
			t.Fatalf("pull of %q: %v, want BAD_FRAME", conv, f)
		}
		code, err := api.Do("GET", "/api/v1/conversations/"+url.PathEscape(conv)+"/messages", bob.Token, nil, nil)
		if err != nil || code != http.StatusBadRequest {
			t.Fatalf("history of %q: %d %v, want 400", conv, code, err)
		}
	}
	expectAlive(t, b)
	convs, err := s.Store.Conversations(context.Background(), bob.ID)
	if err != nil || len(convs) != 0 {
		t.Fatalf("bob has %d stored conversations (%v), want none", len(convs), err)
	}
}

func TestReadReceiptsOnlyWhenTheCursorMovesAndCoalesced(t *testing.T) {
	s := start(t, "", gateway.Config{})
	api := imtest.NewAPI(s.URL)
	alice, bob := api.Register(t, "alice"), api.Register(t, "bob")
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	b, _ := imtest.Connect(t, s.URL, bob.Token, "b1")
	conv := directConv(alice.ID, bob.ID)

	// collect returns the receipts c gets until it is quiet for quiet.
	collect := func(c *imtest.Conn, quiet time.Duration) (receipts []imtest.Frame, limited int) {
		for {
			f, err := c.NextErr(quiet)
			if err != nil {
				return receipts, limited
			}
			switch {
			case f.T() == "receipt":
				receipts = append(receipts, f)
			case f.T() == "error" && f.Str("code") == "RATE_LIMITED":
				limited++
			case f.T() == "error":
				t.Fatalf("unexpected error %v", f)
			}
		}
	}

	// 400 reads of a conversation without messages: nothing to report.
	for range 400 {
		b.SendJSON(map[string]any{"t": "read", "conv": conv, "seq": 7})
	}
	if got, _ := collect(a, 1500*time.Millisecond); len(got) != 0 {
		t.Fatalf("alice got %d receipts for reads of an empty conversation", len(got))
	}
	if _, limited := collect(b, 500*time.Millisecond); limited < 300 {
		t.Fatalf("%d of 400 read frames were rate-limited; want all but the burst", limited)
	}

	for i := 1; i <= 30; i++ {
		send(a, fmt.Sprintf("c%d", i), bob.ID, "m")
		a.Expect("ack")
		b.Expect("msg")
	}
	time.Sleep(1100 * time.Millisecond) // the rate limit refills (10 per second)
	// Reading a few messages at a time: one receipt at once, the rest merged
	// into one carrying the latest cursor.
	for i := 3; i <= 30; i += 3 {
		b.SendJSON(map[string]any{"t": "read", "conv": conv, "seq": i})
	}
	got, _ := collect(a, 1500*time.Millisecond)
	if len(got) < 1 || len(got) > 2 || got[len(got)-1].Int("seq") != 30 || got[0].Str("user") != bob.ID {
		t.Fatalf("alice got receipts %v; want at most two, the last at seq 30", got)
	}
	// Reads that do not move the cursor send nothing.
	for range 20 {
		b.SendJSON(map[string]any{"t": "read", "conv": conv, "seq": 30})
	}
	if got, _ := collect(a, 1500*time.Millisecond); len(got) != 0 {
		t.Fatalf("alice got %d receipts for reads that did not move the cursor", len(got))
	}
	expectAlive(t, b, "error")
}

func TestValidlySignedTokenOfAUserWithoutAccountIsRefused(t *testing.T) {
	s := start(t, "", gateway.Config{})
	api := imtest.NewAPI(s.URL)
	alice := api.Register(t, "alice")
	keys, err := s.Process.Adapters.Keys()
	if err != nil {
		t.Fatal(err)
	}
	ghost, _, err := keys.Issue("999999999999")
	if err != nil {
		t.Fatal(err)
	}

	c := imtest.Dial(t, s.URL)
	c.SendJSON(map[string]any{"t": "auth", "token": ghost, "device": "d1"})
	// The server may already have closed the connection: the send is an
	// attempt, refused either way.
	_ = c.TrySendRaw([]byte(`{"t":"send","cmid":"c1","to":{"user":"` + alice.ID + `"},"kind":"text","body":"hello from nobody"}`))
	frames := c.ExpectClosed(10 * time.Second)
	if len(frames) != 1 || frames[0].T() != "error" || frames[0].Str("code") != "UNAUTHENTICATED" {
		t.Fatalf("ghost connection got %v, want one UNAUTHENTICATED error, then close", frames)
	}
	for _, path := range []string{"/api/v1/users/me", "/api/v1/conversations", "/api/v1/groups"} {
		var e struct{ Code string }
		if code, err := api.Do("GET", path, ghost, nil, &e); err != nil || code != http.StatusUnauthorized || e.Code != "UNAUTHENTICATED" {
			t.Fatalf("GET %s with the ghost's token: %d %q %v, want 401 UNAUTHENTICATED", path, code, e.Code, err)
		}
	}
	if n, _ := s.Store.InboxSeq(context.Background(), alice.ID); n != 0 {
		t.Fatalf("alice's inbox holds %d messages from a user without an account", n)
	}
	// The real account is unaffected.
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	expectAlive(t, a)
	if code, err := api.Do("GET", "/api/v1/users/me", alice.Token, nil, nil); err != nil || code != http.StatusOK {
		t.Fatalf("alice's /users/me: %d %v", code, err)
	}
}

func TestDevServerAnswersOnlyItsOwnHostNames(t *testing.T) {
	s := start(t, "", gateway.Config{})
	_, port, _ := strings.Cut(strings.TrimPrefix(s.URL, "http://"), ":")
	for _, tt := range []struct {
		host string
		want int
	}{
		{host: "rebind.evil.example:" + port, want: http.StatusMisdirectedRequest},
		{host: "localhost:" + port, want: http.StatusOK},
		{host: "127.0.0.1:" + port, want: http.StatusOK},
	} {
		for _, path := range []string{"/", "/healthz"} {
			req, _ := http.NewRequest("GET", s.URL+path, nil)
			req.Host = tt.host
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("GET %s as %s: %d, want %d", path, tt.host, resp.StatusCode, tt.want)
			}
		}
		req, _ := http.NewRequest("POST", s.URL+"/api/v1/users", strings.NewReader(`{"username":"mallory","password":"correct-horse-battery"}`))
		req.Host = tt.host
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if tt.want != http.StatusOK && resp.StatusCode != tt.want {
			t.Errorf("register as %s: %d, want %d", tt.host, resp.StatusCode, tt.want)
		}
	}
}

func TestSameCMIDSentToTwoConversationsAtOnceStoresOneAndLeavesNoGaps(t *testing.T) {
	s := start(t, "", gateway.Config{})
	api := imtest.NewAPI(s.URL)
	alice, bob, carol := api.Register(t, "alice"), api.Register(t, "bob"), api.Register(t, "carol")
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	for range 5 {
		send(a, "twice", bob.ID, "to bob")
		send(a, "twice", carol.ID, "to carol")
	}
	acks, refused := 0, 0
	for acks+refused < 10 {
		f := a.Next()
		switch {
		case f.T() == "ack":
			acks++
		case f.T() == "error" && f.Str("code") == "BAD_FRAME":
			refused++
		default:
			t.Fatalf("unexpected %v", f)
		}
	}
	if acks != 5 || refused != 5 {
		t.Fatalf("%d acks and %d refusals, want 5 of each (one conversation keeps the cmid)", acks, refused)
	}
	send(a, "next-bob", bob.ID, "next")
	send(a, "next-carol", carol.ID, "next")
	a.Expect("ack")
	a.Expect("ack")
	ctx := context.Background()
	stored := 0
	for _, peer := range []string{bob.ID, carol.ID} {
		msgs, _, err := s.Store.Pull(ctx, directConv(alice.ID, peer), 1, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range msgs {
			if m.Seq != int64(i+1) {
				t.Fatalf("conversation with %s has a gap: message %d has seq %d", peer, i, m.Seq)
			}
			if m.CMID == "twice" {
				stored++
			}
		}
	}
	if stored != 1 {
		t.Fatalf("cmid stored %d times, want once", stored)
	}
	for _, u := range []string{alice.ID, bob.ID, carol.ID} {
		items, _, _ := s.Store.Sync(ctx, u, 0, 10)
		for i, it := range items {
			if it.InboxSeq != int64(i+1) {
				t.Fatalf("inbox of %s has a gap at %d (inboxSeq %d)", u, i, it.InboxSeq)
			}
		}
	}
}
