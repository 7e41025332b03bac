package app_test

import (
	"fmt"
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
