//go:build dataplane

package dataplane

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/imkube/imkube/internal/imtest"
)

func directConv(a, b string) string { return "u:" + min(a, b) + ":" + max(a, b) }

// warmUp sends acc a note to self on gw1 (the same cmid again until acked)
// and waits for it on a device on gw2: the consumers of the upstream and of
// both push streams are running before the test relies on single frames.
func warmUp(t *testing.T, acc imtest.Account, gw1, gw2 string) {
	t.Helper()
	w1, _ := imtest.Connect(t, gw1, acc.Token, "warm1")
	w2, _ := imtest.Connect(t, gw2, acc.Token, "warm2")
	defer w1.Close()
	defer w2.Close()
	deadline := time.Now().Add(90 * time.Second)
	for acked := false; !acked; {
		if time.Now().After(deadline) {
			t.Fatal("no ack for the warm-up message within 90 s")
		}
		w1.SendJSON(map[string]any{"t": "send", "cmid": "warm-up", "to": map[string]string{"user": acc.ID}, "kind": "text", "body": "warm-up"})
		for {
			f, err := w1.NextErr(3 * time.Second)
			if err != nil {
				break
			}
			if f.T() == "ack" {
				acked = true
				break
			}
		}
	}
	for {
		f, err := w2.NextErr(time.Until(deadline))
		if err != nil {
			t.Fatalf("the warm-up message did not reach gateway 2: %v", err)
		}
		if f.T() == "msg" {
			return
		}
	}
}

// Receipts, read sync, typing and presence cross gateways through the push
// streams; an offline device converges on the read cursor by sync.
func TestSignalsCrossGatewaysAndReadCursorsConverge(t *testing.T) {
	c := newCluster(t, 2)
	gw1, gw2 := c.gateways[0].url(), c.gateways[1].url()
	alice, bob, carol := c.api.Register(t, "alice"), c.api.Register(t, "bob"), c.api.Register(t, "carol")
	conv := directConv(alice.ID, bob.ID)

	warmUp(t, alice, gw1, gw2)
	a, _ := imtest.Connect(t, gw1, alice.Token, "a1")
	a.SendJSON(map[string]any{"t": "presence_sub", "id": "p", "users": []string{bob.ID}})
	a.Expect("error") // a stranger (no conversation yet): FORBIDDEN

	b1, _ := imtest.Connect(t, gw2, bob.Token, "b1")
	b2, _ := imtest.Connect(t, gw1, bob.Token, "b2")
	b3, ok3 := imtest.Connect(t, gw2, bob.Token, "b3")
	for i := 1; i <= 3; i++ {
		a.SendJSON(map[string]any{"t": "send", "cmid": fmt.Sprintf("m%d", i), "to": map[string]string{"user": bob.ID}, "kind": "text", "body": "hi"})
		a.Expect("ack")
		b1.Expect("msg")
		b2.Expect("msg")
		b3.Expect("msg")
	}
	b3cursor := ok3.Int("inboxSeq") + 3
	b3.Close()

	// delivered on gw2 -> a receipt on gw1.
	b1.SendJSON(map[string]any{"t": "delivered", "conv": conv, "seq": 3})
	if r := a.Expect("receipt"); r.Str("kind") != "delivered" || r.Int("seq") != 3 || r.Str("user") != bob.ID {
		t.Fatalf("alice got %v, want bob's delivered receipt at 3", r)
	}
	// read on gw2 -> read_sync to bob's device on gw1, a read receipt to alice.
	b1.SendJSON(map[string]any{"t": "read", "conv": conv, "seq": 2})
	if rs := b2.Expect("read_sync"); rs.Str("conv") != conv || rs.Int("seq") != 2 || rs.Int("inboxSeq") != b3cursor+1 {
		t.Fatalf("b2 got %v, want read_sync at 2, inboxSeq %d", rs, b3cursor+1)
	}
	if r := a.Expect("receipt"); r.Str("kind") != "read" || r.Int("seq") != 2 {
		t.Fatalf("alice got %v, want a read receipt at 2", r)
	}
	// The device that was offline syncs the read record.
	b3, _ = imtest.Connect(t, gw1, bob.Token, "b3")
	b3.SendJSON(map[string]any{"t": "sync", "id": "s", "after": b3cursor})
	items := b3.Expect("sync_result").Items()
	if len(items) != 1 || items[0].T() != "read_sync" || items[0].Int("seq") != 2 {
		t.Fatalf("b3 synced %v, want the read record", items)
	}
	var convs []struct{ ReadSeq, Unread int64 }
	if code, _ := c.api.Do("GET", "/api/v1/conversations", bob.Token, nil, &convs); code != 200 || len(convs) != 1 || convs[0].ReadSeq != 2 || convs[0].Unread != 1 {
		t.Fatalf("bob's conversations: %d %+v", code, convs)
	}
	var reads struct{ ReadCount, UnreadCount int64 }
	if code, _ := c.api.Do("GET", "/api/v1/conversations/"+conv+"/reads?seq=2", alice.Token, nil, &reads); code != 200 || reads.ReadCount != 1 {
		t.Fatalf("reads of seq 2: %d %+v", code, reads)
	}
	if code, _ := c.api.Do("GET", "/api/v1/conversations/"+conv+"/reads?seq=2", carol.Token, nil, nil); code != http.StatusForbidden {
		t.Fatalf("reads by a stranger: %d, want 403", code)
	}

	// typing on gw2 -> alice on gw1; a burst passes once.
	for range 5 {
		b1.SendJSON(map[string]any{"t": "typing", "conv": conv})
	}
	if f := a.Expect("typing"); f.Str("user") != bob.ID || f.Str("conv") != conv {
		t.Fatalf("alice got %v", f)
	}
	a.Quiet(500 * time.Millisecond)

	// presence: alice on gw1 watches bob, whose devices are on both gateways.
	a.SendJSON(map[string]any{"t": "presence_sub", "id": "p2", "users": []string{bob.ID}})
	a.Expect("ok")
	if f := a.Expect("presence"); !f.Bool("online") {
		t.Fatalf("bob's presence %v, want online", f)
	}
	b1.Close()
	b2.Close()
	b3.Close()
	f := a.Expect("presence") // after the 2 s grace period
	if f.Bool("online") || f.Int("lastSeen") == 0 {
		t.Fatalf("bob left: %v, want offline with lastSeen", f)
	}
	imtest.Connect(t, gw2, bob.Token, "b1") // back on the other gateway
	if f := a.Expect("presence"); !f.Bool("online") {
		t.Fatalf("bob is back: %v, want online", f)
	}
	var p struct{ Items []struct{ Online bool } }
	if code, _ := c.api.Do("GET", "/api/v1/presence?users="+bob.ID, alice.Token, nil, &p); code != 200 || len(p.Items) != 1 || !p.Items[0].Online {
		t.Fatalf("GET presence: %d %+v", code, p)
	}
	if code, _ := c.api.Do("GET", "/api/v1/presence?users="+alice.ID, carol.Token, nil, nil); code != http.StatusForbidden {
		t.Fatalf("presence of a stranger: %d, want 403", code)
	}
}
