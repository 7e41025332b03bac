//go:build dataplane

package dataplane

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imkube/imkube/internal/imtest"
)

// do sends a recall/edit/delete and fails unless it is answered ok.
func do(t *testing.T, c *imtest.Conn, f map[string]any) {
	t.Helper()
	c.SendJSON(f)
	for {
		g := c.Next()
		if g.Str("id") != f["id"] {
			continue
		}
		if g.T() != "ok" {
			t.Fatalf("%v: %v", f, g)
		}
		return
	}
}

func acked(t *testing.T, c *imtest.Conn, cmid string, to map[string]string, body string) int64 {
	t.Helper()
	c.SendJSON(map[string]any{"t": "send", "cmid": cmid, "to": to, "kind": "text", "body": body})
	for {
		g := c.Next()
		if g.Str("cmid") != cmid {
			continue
		}
		if g.T() != "ack" {
			t.Fatalf("send %s: %v", cmid, g)
		}
		return g.Int("seq")
	}
}

// A device offline during recall, edit, delete and group changes made on
// other devices (through other gateways, distributed processes on the real
// dependencies) syncs into exactly the view of a device that stayed online,
// and of the REST history.
func TestOfflineDeviceConvergesOnLifecycleChangesAcrossProcesses(t *testing.T) {
	c := newCluster(t, 2)
	// A fresh consumer group may take a while to be balanced onto the new
	// topic's queues: allow the first answers that long.
	saved := imtest.Timeout
	imtest.Timeout = 90 * time.Second
	t.Cleanup(func() { imtest.Timeout = saved })
	g1, g2 := c.gateways[0].url(), c.gateways[1].url()
	alice, bob, carol := c.api.Register(t, "alice"), c.api.Register(t, "bob"), c.api.Register(t, "carol")
	var grp struct{ ID, Conv string }
	if code, err := c.api.Do("POST", "/api/v1/groups", alice.Token, map[string]any{"name": "team", "members": []string{bob.ID, carol.ID}}, &grp); err != nil || code != 201 {
		t.Fatalf("create group: %d %v", code, err)
	}
	conv := "u:" + min(alice.ID, bob.ID) + ":" + max(alice.ID, bob.ID)
	a0, _ := imtest.Connect(t, g1, alice.Token, "a0")
	b0, _ := imtest.Connect(t, g2, bob.Token, "b0")
	b1, _ := imtest.Connect(t, g1, bob.Token, "b1") // stays online
	c0, _ := imtest.Connect(t, g2, carol.Token, "c0")
	b2, _ := imtest.Connect(t, g2, bob.Token, "b2") // goes offline
	online := imtest.NewView()

	m1 := acked(t, a0, "m1", map[string]string{"user": bob.ID}, "one")
	m2 := acked(t, b0, "m2", map[string]string{"user": alice.ID}, "two")
	x1 := acked(t, c0, "x1", map[string]string{"group": grp.ID}, "carol says")
	x2 := acked(t, b0, "x2", map[string]string{"group": grp.ID}, "bob says")
	b2.Close()

	do(t, a0, map[string]any{"t": "edit", "id": "e1", "conv": conv, "seq": m1, "body": "one (edited)"})
	do(t, b0, map[string]any{"t": "recall", "id": "r1", "conv": conv, "seq": m2})
	do(t, a0, map[string]any{"t": "recall", "id": "r2", "conv": grp.Conv, "seq": x1}) // the owner
	do(t, b0, map[string]any{"t": "edit", "id": "e2", "conv": grp.Conv, "seq": x2, "body": "bob said"})
	do(t, b0, map[string]any{"t": "delete", "id": "d1", "conv": conv, "seqs": []int64{m1}})
	if code, _ := c.api.Do("PATCH", "/api/v1/groups/"+grp.ID, alice.Token, map[string]any{"name": "renamed"}, nil); code != 200 {
		t.Fatalf("rename: %d", code)
	}
	if code, _ := c.api.Do("DELETE", "/api/v1/groups/"+grp.ID+"/members/"+carol.ID, alice.Token, nil, nil); code != 204 {
		t.Fatalf("remove carol: %d", code)
	}
	// Carol gets the event that removed her.
	for {
		f := c0.Next()
		var body struct{ Event string }
		if f.Str("kind") == "group_event" && json.Unmarshal([]byte(f.Str("body")), &body) == nil && body.Event == "member_removed" {
			break
		}
	}
	acked(t, a0, "m3", map[string]string{"group": grp.ID}, "after")

	back, _ := imtest.Connect(t, g1, bob.Token, "b2")
	var want []string
	deadline := time.Now().Add(30 * time.Second)
	for { // the group events are delivered asynchronously: wait for both
		want = imtest.SyncView(back).Render()
		all := strings.Join(want, "\n")
		if strings.Contains(all, "member_removed") && strings.Contains(all, `"after"`) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := imtest.DrainInto(b1, online, want, 30*time.Second); !slices.Equal(got, want) {
		t.Fatalf("online and offline devices differ:\n%s\n---\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, cv := range []string{conv, grp.Conv} {
		var h struct{ Items []map[string]any }
		if code, err := c.api.Do("GET", "/api/v1/conversations/"+cv+"/messages?fromSeq=1&limit=500", bob.Token, nil, &h); err != nil || code != 200 {
			t.Fatalf("history %s: %d %v", cv, code, err)
		}
		hv := imtest.NewView()
		for _, it := range h.Items {
			hv.Apply(imtest.Frame(it))
		}
		var sub []string
		for _, line := range want {
			if strings.HasPrefix(line, cv+"/") {
				sub = append(sub, line)
			}
		}
		if got := hv.Render(); !slices.Equal(got, sub) {
			t.Fatalf("history of %s differs from sync:\n%s\n---\n%s", cv, strings.Join(got, "\n"), strings.Join(sub, "\n"))
		}
	}
	all := strings.Join(want, "\n")
	for _, must := range []string{`"one (edited)"`, "recalled=true", "member_removed", "group_updated"} {
		if strings.Contains(must, "one (edited)") {
			if strings.Contains(all, must+" recalled=false edited=true") {
				t.Fatalf("a message bob deleted for himself is in his view:\n%s", all)
			}
			continue
		}
		if !strings.Contains(all, must) {
			t.Fatalf("bob's view lacks %s:\n%s", must, all)
		}
	}
}
