package app_test

import (
	"context"
	"fmt"
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
	h := historyOf(t, api, bob.Token, conv, "fromSeq=1")
	if h.Items[0]["body"] != "hello!" || h.Items[0]["edited"] != true {
		t.Fatalf("edited message in history: %v", h.Items[0])
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
	sendAck(t, c0, "g3", toGroup, "after", nil)

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
