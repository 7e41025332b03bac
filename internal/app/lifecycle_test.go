package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imkube/imkube/internal/app"
	"github.com/imkube/imkube/internal/imtest"
)

// testClock is the message service's clock, moved by tests instead of
// sleeping through the recall and edit windows.
type testClock struct{ off atomic.Int64 }

func (c *testClock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *testClock) advance(d time.Duration) { c.off.Add(int64(d)) }

func startClocked(t *testing.T) (*app.Server, *testClock) {
	t.Helper()
	clk := &testClock{}
	s, err := app.StartDev(context.Background(), "127.0.0.1:0", t.TempDir(), app.Options{BcryptCost: 4, Cluster: fastCluster(), Clock: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, clk
}

// request sends a recall/edit/delete frame and returns its answer (ok or
// error with the same id), skipping pushes.
func request(t *testing.T, c *imtest.Conn, frame map[string]any) imtest.Frame {
	t.Helper()
	c.SendJSON(frame)
	for {
		f := c.Next()
		if (f.T() == "ok" || f.T() == "error") && f.Str("id") == frame["id"] {
			return f
		}
	}
}

func wantOK(t *testing.T, f imtest.Frame) {
	t.Helper()
	if f.T() != "ok" {
		t.Fatalf("want ok, got %v", f)
	}
}

func wantErr(t *testing.T, f imtest.Frame, code, text string) {
	t.Helper()
	if f.T() != "error" || f.Str("code") != code || !strings.Contains(f.Str("message"), text) {
		t.Fatalf("want error %s (%q), got %v", code, text, f)
	}
}

// sendAck sends a text message and returns its seq.
func sendAck(t *testing.T, c *imtest.Conn, cmid string, to map[string]string, body string, extra map[string]any) int64 {
	t.Helper()
	f := map[string]any{"t": "send", "cmid": cmid, "to": to, "kind": "text", "body": body}
	for k, v := range extra {
		f[k] = v
	}
	c.SendJSON(f)
	for {
		g := c.Next()
		if g.T() == "ack" && g.Str("cmid") == cmid {
			return g.Int("seq")
		}
		if g.T() == "error" && g.Str("cmid") == cmid {
			t.Fatalf("send %s: %v", cmid, g)
		}
	}
}

type history struct {
	Items []map[string]any `json:"items"`
	More  bool             `json:"more"`
}

func historyOf(t *testing.T, api *imtest.API, token, conv, query string) history {
	t.Helper()
	var h history
	if code, err := api.Do("GET", "/api/v1/conversations/"+conv+"/messages?"+query, token, nil, &h); err != nil || code != 200 {
		t.Fatalf("history %s?%s: %d %v", conv, query, code, err)
	}
	return h
}

func TestRecallEditAndDeleteAuthorisationAndWindows(t *testing.T) {
	s, clk := startClocked(t)
	api := imtest.NewAPI(s.URL)
	alice, bob := api.Register(t, "alice"), api.Register(t, "bob")
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	b, _ := imtest.Connect(t, s.URL, bob.Token, "b1")
	conv := directConv(alice.ID, bob.ID)
	toBob, toAlice := map[string]string{"user": bob.ID}, map[string]string{"user": alice.ID}

	s1 := sendAck(t, a, "c1", toBob, "hello", nil)
	s2 := sendAck(t, b, "c2", toAlice, "yo", nil)

	wantErr(t, request(t, a, map[string]any{"t": "recall", "id": "r1", "conv": conv, "seq": s2}), "FORBIDDEN", "only your own")
	wantErr(t, request(t, b, map[string]any{"t": "edit", "id": "e1", "conv": conv, "seq": s1, "body": "x"}), "FORBIDDEN", "only the sender")
	wantErr(t, request(t, a, map[string]any{"t": "recall", "id": "r2", "conv": conv, "seq": 99}), "NOT_FOUND", "no message 99")
	carol := api.Register(t, "carol")
	c, _ := imtest.Connect(t, s.URL, carol.Token, "c1")
	wantErr(t, request(t, c, map[string]any{"t": "recall", "id": "r3", "conv": conv, "seq": s1}), "FORBIDDEN", "not a member")
	wantErr(t, request(t, c, map[string]any{"t": "delete", "id": "d0", "conv": conv, "seqs": []int64{s1}}), "FORBIDDEN", "not a member")
	// Malformed requests are refused at the edge.
	wantErr(t, request(t, a, map[string]any{"t": "delete", "id": "d1", "conv": conv, "seqs": make([]int64, 101)}), "BAD_FRAME", "1-100")
	wantErr(t, request(t, a, map[string]any{"t": "edit", "id": "e0", "conv": conv, "seq": s1}), "BAD_FRAME", "missing body")

	// Edit within the window: the peer gets an edit record, history the new body.
	wantOK(t, request(t, a, map[string]any{"t": "edit", "id": "e2", "conv": conv, "seq": s1, "body": "hello!"}))
	rec := b.Expect("msg", "receipt")
	if rec.Str("kind") != "edit" || rec.Int("ref") != s1 || rec.Str("body") != "hello!" || rec.Int("inboxSeq") == 0 {
		t.Fatalf("edit record: %v", rec)
	}
	// The same edit again (a retry whose answer was lost): ok, no second record.
	wantOK(t, request(t, a, map[string]any{"t": "edit", "id": "e2-retry", "conv": conv, "seq": s1, "body": "hello!"}))
	h := historyOf(t, api, bob.Token, conv, "fromSeq=1")
	if h.Items[0]["body"] != "hello!" || h.Items[0]["edited"] != true {
		t.Fatalf("edited message in history: %v", h.Items[0])
	}
	edits := 0
	for _, it := range h.Items {
		if it["kind"] == "edit" {
			edits++
		}
	}
	if edits != 1 {
		t.Fatalf("%d edit records after an edit and its retry, want 1: %v", edits, h.Items)
	}

	// Past the recall window the sender may not recall; past the edit
	// window not edit; a fresh message can be recalled.
	clk.advance(121 * time.Second)
	wantErr(t, request(t, a, map[string]any{"t": "recall", "id": "r4", "conv": conv, "seq": s1}), "FORBIDDEN", "too old to recall")
	s3 := sendAck(t, a, "c3", toBob, "oops", map[string]any{"replyTo": s2})
	wantOK(t, request(t, a, map[string]any{"t": "recall", "id": "r5", "conv": conv, "seq": s3}))
	wantOK(t, request(t, a, map[string]any{"t": "recall", "id": "r6", "conv": conv, "seq": s3})) // again: nothing to change
	clk.advance(800 * time.Second)
	wantErr(t, request(t, a, map[string]any{"t": "edit", "id": "e3", "conv": conv, "seq": s1, "body": "late"}), "FORBIDDEN", "too old to edit")
	wantErr(t, request(t, a, map[string]any{"t": "edit", "id": "e4", "conv": conv, "seq": s3, "body": "x"}), "FORBIDDEN", "recalled")

	h = historyOf(t, api, bob.Token, conv, "fromSeq=1")
	var recalled map[string]any
	for _, it := range h.Items {
		if int64(it["seq"].(float64)) == s3 {
			recalled = it
		}
	}
	if recalled["recalled"] != true || recalled["body"] != "" || recalled["replyTo"] != float64(s2) {
		t.Fatalf("recalled message in history: %v", recalled)
	}

	// Delete for me: gone from bob's history and sync, not from alice's.
	wantOK(t, request(t, b, map[string]any{"t": "delete", "id": "d2", "conv": conv, "seqs": []int64{s1, s2}}))
	for _, it := range historyOf(t, api, bob.Token, conv, "fromSeq=1").Items {
		if n := int64(it["seq"].(float64)); n == s1 || n == s2 {
			t.Fatalf("deleted message %d still in bob's history", n)
		}
	}
	if n := len(historyOf(t, api, alice.Token, conv, "fromSeq=1").Items); n < 5 {
		t.Fatalf("alice's history lost messages: %d", n)
	}
	for _, line := range imtest.SyncView(b).Render() {
		if strings.Contains(line, fmt.Sprintf("%s/%06d ", conv, s1)) || strings.Contains(line, fmt.Sprintf("%s/%06d ", conv, s2)) {
			t.Fatalf("deleted message in bob's sync: %s", line)
		}
	}
}

func TestOfflineDeviceConvergesOnRecallEditDeleteAndGroupChanges(t *testing.T) {
	s, _ := startClocked(t)
	api := imtest.NewAPI(s.URL)
	alice, bob, carol := api.Register(t, "alice"), api.Register(t, "bob"), api.Register(t, "carol")
	g := createGroup(t, api, alice, bob.ID, carol.ID)
	conv := directConv(alice.ID, bob.ID)
	toBob, toGroup := map[string]string{"user": bob.ID}, map[string]string{"group": g.ID}

	a0, _ := imtest.Connect(t, s.URL, alice.Token, "a0") // acts
	a1, _ := imtest.Connect(t, s.URL, alice.Token, "a1") // online, watches
	b0, _ := imtest.Connect(t, s.URL, bob.Token, "b0")
	b1, _ := imtest.Connect(t, s.URL, bob.Token, "b1")
	c0, _ := imtest.Connect(t, s.URL, carol.Token, "c0")
	// a2 and b2 saw the first messages, then go offline.
	a2, _ := imtest.Connect(t, s.URL, alice.Token, "a2")
	b2, _ := imtest.Connect(t, s.URL, bob.Token, "b2")
	online := map[string]*imtest.View{"a1": imtest.NewView(), "b1": imtest.NewView()}

	m1 := sendAck(t, a0, "m1", toBob, "one", nil)
	m2 := sendAck(t, b0, "m2", map[string]string{"user": alice.ID}, "two", map[string]any{"replyTo": m1, "mentions": []string{alice.ID}})
	g1 := sendAck(t, c0, "g1", toGroup, "carol says", nil)
	g2 := sendAck(t, b0, "g2", toGroup, "bob says", nil)
	a2.Close()
	b2.Close()

	wantOK(t, request(t, a0, map[string]any{"t": "edit", "id": "e1", "conv": conv, "seq": m1, "body": "one (edited)"}))
	wantOK(t, request(t, a0, map[string]any{"t": "edit", "id": "e2", "conv": conv, "seq": m1, "body": "one (edited twice)"}))
	wantOK(t, request(t, b0, map[string]any{"t": "recall", "id": "r1", "conv": conv, "seq": m2}))
	wantOK(t, request(t, a0, map[string]any{"t": "recall", "id": "r2", "conv": g.Conv, "seq": g1})) // the owner, any message
	wantOK(t, request(t, b0, map[string]any{"t": "edit", "id": "e3", "conv": g.Conv, "seq": g2, "body": "bob said"}))
	wantOK(t, request(t, b0, map[string]any{"t": "recall", "id": "r3", "conv": g.Conv, "seq": g2})) // erases the edit too
	wantOK(t, request(t, a0, map[string]any{"t": "delete", "id": "d1", "conv": conv, "seqs": []int64{m2}}))
	wantOK(t, request(t, b0, map[string]any{"t": "delete", "id": "d2", "conv": g.Conv, "seqs": []int64{g1}}))
	// Group changes become group_event messages; the removed member gets the
	// event that removed them, then nothing.
	dave := api.Register(t, "dave")
	for _, ch := range []struct {
		method, path string
		body         any
		want         int
		event        string
	}{
		{"PATCH", "/api/v1/groups/" + g.ID, map[string]any{"name": "renamed"}, 200, "group_updated:renamed"},
		{"POST", "/api/v1/groups/" + g.ID + "/members", map[string]any{"userIds": []string{dave.ID}}, 200, "member_added:" + dave.ID},
		{"PATCH", "/api/v1/groups/" + g.ID + "/members/" + bob.ID, map[string]any{"role": "admin"}, 200, "role_changed:" + bob.ID},
		{"DELETE", "/api/v1/groups/" + g.ID + "/members/" + carol.ID, nil, 204, "member_removed:" + carol.ID},
	} {
		if code, err := api.Do(ch.method, ch.path, alice.Token, ch.body, nil); err != nil || code != ch.want {
			t.Fatalf("%s %s: %d %v", ch.method, ch.path, code, err)
		}
		// Members get the event like any message (carol too: she is
		// removed by the last one).
		for {
			f := c0.Next()
			if f.T() != "msg" || f.Str("kind") != "group_event" {
				continue
			}
			var body struct {
				Event   string
				Actor   string
				Targets []string
				Name    string
			}
			if err := json.Unmarshal([]byte(f.Str("body")), &body); err != nil || body.Actor != alice.ID {
				t.Fatalf("group event body: %v %v", f, err)
			}
			if got := body.Event + ":" + strings.Join(body.Targets, ",") + body.Name; got != ch.event {
				t.Fatalf("carol got group event %s, want %s", got, ch.event)
			}
			break
		}
	}
	sendAck(t, b0, "g3", toGroup, "after", nil)
	c0.Quiet(200 * time.Millisecond)
	if v := imtest.SyncView(c0).Render(); !strings.Contains(strings.Join(v, "\n"), "member_removed") || strings.Contains(strings.Join(v, "\n"), `"after"`) {
		t.Fatalf("carol's sync after removal:\n%s", strings.Join(v, "\n"))
	}

	for _, u := range []struct {
		name  string
		acc   imtest.Account
		watch *imtest.Conn
	}{{"a", alice, a1}, {"b", bob, b1}} {
		back, _ := imtest.Connect(t, s.URL, u.acc.Token, u.name+"2")
		want := imtest.SyncView(back).Render()
		if len(want) == 0 {
			t.Fatalf("%s: empty sync view", u.name)
		}
		// The device that stayed online saw everything as pushes.
		if got := imtest.DrainInto(u.watch, online[u.name+"1"], want, 10*time.Second); !slices.Equal(got, want) {
			t.Fatalf("%s: the online device and the device that was offline differ:\n%s\n---\n%s", u.name, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		fresh, _ := imtest.Connect(t, s.URL, u.acc.Token, u.name+"3")
		if got := imtest.SyncView(fresh).Render(); !slices.Equal(got, want) {
			t.Fatalf("%s: a fresh device and the device that was offline differ:\n%s\n---\n%s", u.name, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		// REST history renders the same per conversation.
		for _, c := range []string{conv, g.Conv} {
			hv := imtest.NewView()
			for _, it := range historyOf(t, api, u.acc.Token, c, "fromSeq=1&limit=500").Items {
				hv.Apply(imtest.Frame(it))
			}
			var sub []string
			for _, line := range want {
				if strings.HasPrefix(line, c+"/") {
					sub = append(sub, line)
				}
			}
			if got := hv.Render(); !slices.Equal(got, sub) {
				t.Fatalf("%s: history of %s differs from sync:\n%s\n---\n%s", u.name, c, strings.Join(got, "\n"), strings.Join(sub, "\n"))
			}
		}
		for _, line := range want {
			switch {
			case strings.Contains(line, fmt.Sprintf("%s/%06d", conv, m1)) && !strings.Contains(line, `"one (edited twice)" recalled=false edited=true`):
				t.Fatalf("%s: m1 not edited: %s", u.name, line)
			case strings.Contains(line, fmt.Sprintf("%s/%06d", g.Conv, g2)) && !strings.Contains(line, `"" recalled=true`):
				t.Fatalf("%s: g2 not recalled: %s", u.name, line)
			case strings.Contains(line, `"bob said"`):
				t.Fatalf("%s: a recalled message's edit keeps its body: %s", u.name, line)
			}
		}
	}
}

type convItem struct {
	Conv     string `json:"conv"`
	LastSeq  int64  `json:"lastSeq"`
	ReadSeq  int64  `json:"readSeq"`
	Unread   int64  `json:"unread"`
	Mentions int64  `json:"mentions"`
	Pinned   bool   `json:"pinned"`
	Muted    bool   `json:"muted"`
	Last     *struct {
		Seq     int64  `json:"seq"`
		From    string `json:"from"`
		Kind    string `json:"kind"`
		Preview string `json:"preview"`
		TS      int64  `json:"ts"`
	} `json:"last"`
}

func conversations(t *testing.T, base, token, query string) ([]convItem, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/api/v1/conversations?"+query, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list []convItem
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&list) != nil {
		t.Fatalf("conversations?%s: %d", query, resp.StatusCode)
	}
	return list, resp.Header.Get("X-Next-Cursor")
}

func TestRepliesMentionsAndTheConversationList(t *testing.T) {
	s, _ := startClocked(t)
	api := imtest.NewAPI(s.URL)
	alice, bob, carol := api.Register(t, "alice"), api.Register(t, "bob"), api.Register(t, "carol")
	g := createGroup(t, api, alice, bob.ID, carol.ID)
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	b, _ := imtest.Connect(t, s.URL, bob.Token, "b1")
	c, _ := imtest.Connect(t, s.URL, carol.Token, "c1")
	toGroup := map[string]string{"group": g.ID}

	g1 := sendAck(t, a, "g1", toGroup, "hello team", nil)
	c.Expect("msg")
	// replyTo must exist; mentions must be members; "all" is for owner/admin.
	for _, tt := range []struct {
		name  string
		extra map[string]any
		code  string
		text  string
	}{
		{"a reply to a missing message", map[string]any{"replyTo": 42}, "NOT_FOUND", "no message 42"},
		{"a mention of a stranger", map[string]any{"mentions": []string{"nobody"}}, "BAD_FRAME", "not a member"},
		{"all by a plain member", map[string]any{"mentions": []string{"all"}}, "FORBIDDEN", "owner or an admin"},
		{"a server kind", map[string]any{"kind": "recall"}, "BAD_FRAME", "written by the server"},
	} {
		f := map[string]any{"t": "send", "cmid": "bad-" + tt.name, "to": toGroup, "kind": "text", "body": "x"}
		for k, v := range tt.extra {
			f[k] = v
		}
		b.SendJSON(f)
		e := b.Expect("error", "msg", "receipt")
		if e.Str("code") != tt.code || !strings.Contains(e.Str("message"), tt.text) {
			t.Fatalf("%s: got %v", tt.name, e)
		}
	}
	g2 := sendAck(t, b, "g2", toGroup, "@carol look", map[string]any{"replyTo": g1, "mentions": []string{carol.ID}})
	g3 := sendAck(t, a, "g3", toGroup, "@all meeting", map[string]any{"mentions": []string{"all"}})
	for _, want := range []int64{g2, g3} {
		m := c.Expect("msg")
		if m.Int("seq") != want {
			t.Fatalf("carol got %v, want seq %d", m, want)
		}
		if want == g2 && (m.Int("replyTo") != g1 || fmt.Sprint(m["mentions"]) != "["+carol.ID+"]") {
			t.Fatalf("reply with mention: %v", m)
		}
	}
	list, _ := conversations(t, s.URL, carol.Token, "")
	if len(list) != 1 || list[0].Mentions != 2 || list[0].Unread != 3 || list[0].Last == nil || list[0].Last.Preview != "@all meeting" || list[0].Last.From != alice.ID {
		t.Fatalf("carol's list: %+v", list)
	}
	if bl, _ := conversations(t, s.URL, bob.Token, ""); bl[0].Mentions != 1 { // "all" counts for everyone but the sender
		t.Fatalf("bob's mentions: %+v", bl[0])
	}
	c.SendJSON(map[string]any{"t": "read", "conv": g.Conv, "seq": g2})
	deadline := time.Now().Add(5 * time.Second)
	for list, _ = conversations(t, s.URL, carol.Token, ""); list[0].Mentions != 1 && time.Now().Before(deadline); list, _ = conversations(t, s.URL, carol.Token, "") {
		time.Sleep(10 * time.Millisecond)
	}
	if list[0].Mentions != 1 || list[0].Unread != 1 {
		t.Fatalf("after reading up to g2: %+v", list[0])
	}

	// A recalled last message has an empty preview.
	wantOK(t, request(t, a, map[string]any{"t": "recall", "id": "r1", "conv": g.Conv, "seq": g3}))
	list, _ = conversations(t, s.URL, carol.Token, "")
	if list[0].Last.Kind != "recall" || list[0].Last.Preview != "" || list[0].Mentions != 0 {
		t.Fatalf("after the recall: %+v", *list[0].Last)
	}

	// Pinned first, then the newest; paging with a cursor.
	dm := directConv(alice.ID, carol.ID)
	sendAck(t, a, "d1", map[string]string{"user": carol.ID}, strings.Repeat("é", 130), nil)
	list, _ = conversations(t, s.URL, carol.Token, "")
	if len(list) != 2 || list[0].Conv != dm || len([]rune(list[0].Last.Preview)) != 120 {
		t.Fatalf("newest first, preview of 120 characters: %+v", list)
	}
	if code, err := api.Do("PATCH", "/api/v1/conversations/"+g.Conv, carol.Token, map[string]any{"pinned": true}, nil); err != nil || code != http.StatusNoContent {
		t.Fatalf("pin: %d %v", code, err)
	}
	page1, cursor := conversations(t, s.URL, carol.Token, "limit=1")
	if len(page1) != 1 || page1[0].Conv != g.Conv || !page1[0].Pinned || cursor == "" {
		t.Fatalf("first page: %+v %q", page1, cursor)
	}
	page2, end := conversations(t, s.URL, carol.Token, "limit=1&cursor="+cursor)
	if len(page2) != 1 || page2[0].Conv != dm || end != "" {
		t.Fatalf("second page: %+v %q", page2, end)
	}
	for _, tt := range []struct {
		path string
		body any
		want int
	}{
		{"/api/v1/conversations/" + directConv(alice.ID, bob.ID), map[string]any{"pinned": true}, http.StatusNotFound}, // not carol's
		{"/api/v1/conversations/" + g.Conv, map[string]any{}, http.StatusBadRequest},
		{"/api/v1/conversations/nope", map[string]any{"muted": true}, http.StatusBadRequest},
	} {
		if code, _ := api.Do("PATCH", tt.path, carol.Token, tt.body, nil); code != tt.want {
			t.Fatalf("PATCH %s %v: %d, want %d", tt.path, tt.body, code, tt.want)
		}
	}

	// Muted: still unread, pushes carry muted:true for carol only.
	if code, _ := api.Do("PATCH", "/api/v1/conversations/"+g.Conv, carol.Token, map[string]any{"muted": true}, nil); code != http.StatusNoContent {
		t.Fatal("mute")
	}
	sendAck(t, b, "g4", toGroup, "quiet please", nil)
	if m := expectBody(t, c, "quiet please"); !m.Bool("muted") {
		t.Fatalf("carol's push of a muted conversation: %v", m)
	}
	if m := expectBody(t, a, "quiet please"); m.Bool("muted") {
		t.Fatalf("alice did not mute: %v", m)
	}
	list, _ = conversations(t, s.URL, carol.Token, "")
	if !list[0].Muted || list[0].Unread == 0 {
		t.Fatalf("muted conversation: %+v", list[0])
	}

	// Backwards paging: REST beforeSeq and pull before.
	h := historyOf(t, api, carol.Token, g.Conv, "beforeSeq=4&limit=2")
	if len(h.Items) != 2 || h.Items[0]["seq"] != float64(2) || h.Items[1]["seq"] != float64(3) || !h.More {
		t.Fatalf("beforeSeq=4&limit=2: %+v", h)
	}
	c.SendJSON(map[string]any{"t": "pull", "id": "p1", "conv": g.Conv, "before": 3, "limit": 10})
	p := c.Expect("pull_result", "msg", "receipt")
	if items := p.Items(); len(items) != 2 || items[0].Int("seq") != 1 || items[1].Int("seq") != 2 || p.Bool("more") {
		t.Fatalf("pull before 3: %v", p)
	}
	c.SendJSON(map[string]any{"t": "pull", "id": "p2", "conv": g.Conv, "before": 3, "from": 1})
	if e := c.Expect("error", "msg", "receipt"); e.Str("code") != "BAD_FRAME" {
		t.Fatalf("pull with from and before: %v", e)
	}
}

// expectBody skips frames until a msg with body arrives.
func expectBody(t *testing.T, c *imtest.Conn, body string) imtest.Frame {
	t.Helper()
	for {
		if m := c.Next(); m.T() == "msg" && m.Str("body") == body {
			return m
		}
	}
}

func TestLeavingAndDismissalReachTheMembersAsGroupEvents(t *testing.T) {
	s, _ := startClocked(t)
	api := imtest.NewAPI(s.URL)
	alice, bob, carol := api.Register(t, "alice"), api.Register(t, "bob"), api.Register(t, "carol")
	g := createGroup(t, api, alice, bob.ID, carol.ID)
	b, _ := imtest.Connect(t, s.URL, bob.Token, "b1")
	eventOf := func(c *imtest.Conn) string {
		for {
			if f := c.Next(); f.T() == "msg" && f.Str("kind") == "group_event" {
				var body struct{ Event string }
				json.Unmarshal([]byte(f.Str("body")), &body)
				return body.Event
			}
		}
	}
	if code, _ := api.Do("DELETE", "/api/v1/groups/"+g.ID+"/members/"+carol.ID, carol.Token, nil, nil); code != 204 {
		t.Fatalf("leave: %d", code)
	}
	if e := eventOf(b); e != "member_left" {
		t.Fatalf("bob got %s", e)
	}
	if code, _ := api.Do("DELETE", "/api/v1/groups/"+g.ID, alice.Token, nil, nil); code != 204 {
		t.Fatalf("dismiss: %d", code)
	}
	if e := eventOf(b); e != "dismissed" {
		t.Fatalf("bob got %s", e)
	}
	// A device that was offline gets both by sync; carol, who left, only hers.
	b2, _ := imtest.Connect(t, s.URL, bob.Token, "b2")
	if v := strings.Join(imtest.SyncView(b2).Render(), "\n"); !strings.Contains(v, "member_left") || !strings.Contains(v, "dismissed") {
		t.Fatalf("bob's sync:\n%s", v)
	}
	c2, _ := imtest.Connect(t, s.URL, carol.Token, "c2")
	if v := strings.Join(imtest.SyncView(c2).Render(), "\n"); !strings.Contains(v, "member_left") || strings.Contains(v, "dismissed") {
		t.Fatalf("carol's sync:\n%s", v)
	}
}
