package app_test

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imkube/imkube/internal/app"
	"github.com/imkube/imkube/internal/auth"
	"github.com/imkube/imkube/internal/config"
	"github.com/imkube/imkube/internal/imtest"
	"github.com/imkube/imkube/internal/store"
	"github.com/imkube/imkube/services/gateway"
)

type groupView struct {
	ID          string
	Conv        string
	MemberCount int
	MyRole      string
}

func createGroup(t *testing.T, api *imtest.API, owner imtest.Account, members ...string) groupView {
	t.Helper()
	var g groupView
	code, err := api.Do("POST", "/api/v1/groups", owner.Token, map[string]any{"name": "team", "members": members}, &g)
	if err != nil || code != http.StatusCreated || g.ID == "" {
		t.Fatalf("create group: %d %v %+v", code, err, g)
	}
	return g
}

func sendGroup(c *imtest.Conn, cmid, gid, body string) {
	c.SendJSON(map[string]any{"t": "send", "cmid": cmid, "to": map[string]string{"group": gid}, "kind": "text", "body": body})
}

func startWith(t *testing.T, cluster config.Cluster) *app.Server {
	t.Helper()
	cluster.Limits = fastCluster().Limits
	s, err := app.StartDev(context.Background(), "127.0.0.1:0", t.TempDir(), app.Options{Cluster: &cluster, BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestSmallGroupDeliversToEveryMemberDeviceOnceInOrder(t *testing.T) {
	s := start(t, "", gateway.Config{})
	api := imtest.NewAPI(s.URL)
	alice, bob, carol := api.Register(t, "alice"), api.Register(t, "bob"), api.Register(t, "carol")
	g := createGroup(t, api, alice, bob.ID, carol.ID)
	if g.MemberCount != 3 || g.MyRole != "owner" || g.Conv != "g:"+g.ID {
		t.Fatalf("group: %+v", g)
	}
	a1, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	a2, _ := imtest.Connect(t, s.URL, alice.Token, "a2")
	b, _ := imtest.Connect(t, s.URL, bob.Token, "b1")
	c, _ := imtest.Connect(t, s.URL, carol.Token, "c1")
	for i := 1; i <= 20; i++ {
		sendGroup(a1, fmt.Sprintf("g%d", i), g.ID, fmt.Sprintf("m%d", i))
		if ack := a1.Expect("ack"); ack.Int("seq") != int64(i) || ack.Str("conv") != g.Conv {
			t.Fatalf("ack %v", ack)
		}
	}
	for name, conn := range map[string]*imtest.Conn{"alice's other device": a2, "bob": b, "carol": c} {
		for i := 1; i <= 20; i++ {
			m := conn.Expect("msg")
			if m.Str("body") != fmt.Sprintf("m%d", i) || m.Int("seq") != int64(i) || m.Int("inboxSeq") != int64(i) {
				t.Fatalf("%s got %v, want m%d", name, m, i)
			}
		}
		conn.Quiet(100 * time.Millisecond)
	}
	if n, _ := s.Store.CountInboxRows(context.Background(), g.Conv); n != 60 {
		t.Fatalf("inbox rows %d, want 3 members x 20 (write diffusion)", n)
	}
}

func TestGroupOverTheThresholdUsesReadDiffusion(t *testing.T) {
	cluster := config.DefaultCluster()
	cluster.Groups.ReadDiffusionThreshold = 3
	s := startWith(t, cluster)
	api := imtest.NewAPI(s.URL)
	alice, bob, carol, dave := api.Register(t, "alice"), api.Register(t, "bob"), api.Register(t, "carol"), api.Register(t, "dave")
	g := createGroup(t, api, alice, bob.ID, carol.ID, dave.ID) // 4 members = threshold + 1
	b, ok := imtest.Connect(t, s.URL, bob.Token, "b1")
	if cs, _ := ok["convs"].([]any); len(cs) != 1 {
		t.Fatalf("auth_ok lists the read-diffusion group: %v", ok)
	}
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	for i := 1; i <= 10; i++ {
		sendGroup(a, fmt.Sprintf("g%d", i), g.ID, fmt.Sprintf("m%d", i))
		a.Expect("ack")
	}
	// Notifies are coalesced (at most one per conversation per interval):
	// seqs increase and the last one always comes.
	var last int64
	for last < 10 {
		n := b.Expect("notify")
		if n.Str("conv") != g.Conv || n.Int("seq") <= last {
			t.Fatalf("notify %v after %d", n, last)
		}
		last = n.Int("seq")
	}
	b.SendJSON(map[string]any{"t": "pull", "id": "p", "conv": g.Conv, "from": 1, "limit": 100})
	p := b.Expect("pull_result")
	if len(p.Items()) != 10 {
		t.Fatalf("pulled %d, want 10", len(p.Items()))
	}
	for i, it := range p.Items() {
		if it.Str("body") != fmt.Sprintf("m%d", i+1) || it.Int("seq") != int64(i+1) {
			t.Fatalf("item %d: %v", i, it)
		}
	}
	if n, _ := s.Store.CountInboxRows(context.Background(), g.Conv); n != 0 {
		t.Fatalf("read diffusion wrote %d inbox rows, want 0", n)
	}
	// The conversation list shows the unread count.
	var convs []struct {
		Conv            string
		LastSeq, Unread int64
	}
	if code, _ := api.Do("GET", "/api/v1/conversations", carol.Token, nil, &convs); code != 200 || len(convs) != 1 || convs[0].LastSeq != 10 || convs[0].Unread != 10 {
		t.Fatalf("carol's conversations: %+v", convs)
	}
	// A member who muted the group gets notify frames marked muted; others not.
	if code, _ := api.Do("PATCH", "/api/v1/conversations/"+g.Conv, bob.Token, map[string]any{"muted": true}, nil); code != http.StatusNoContent {
		t.Fatalf("bob mutes the group: %d", code)
	}
	c, _ := imtest.Connect(t, s.URL, carol.Token, "c1")
	sendGroup(a, "g11", g.ID, "m11")
	a.Expect("ack")
	if n := b.Expect("notify"); n.Int("seq") != 11 || !n.Bool("muted") {
		t.Fatalf("bob's notify of a muted group: %v", n)
	}
	if n := c.Expect("notify"); n.Int("seq") != 11 || n.Bool("muted") {
		t.Fatalf("carol's notify (not muted): %v", n)
	}
}

func TestMembershipChangesTakeEffectImmediately(t *testing.T) {
	s := start(t, "", gateway.Config{})
	api := imtest.NewAPI(s.URL)
	alice, bob, carol, dave := api.Register(t, "alice"), api.Register(t, "bob"), api.Register(t, "carol"), api.Register(t, "dave")
	g := createGroup(t, api, alice, bob.ID, carol.ID)
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	c, _ := imtest.Connect(t, s.URL, carol.Token, "c1")
	sendGroup(a, "g1", g.ID, "before")
	a.Expect("ack")
	c.Expect("msg")

	// Bob is not an owner or admin: he may not remove carol.
	if code, _ := api.Do("DELETE", "/api/v1/groups/"+g.ID+"/members/"+carol.ID, bob.Token, nil, nil); code != http.StatusForbidden {
		t.Fatalf("member removing member: %d", code)
	}
	if code, _ := api.Do("DELETE", "/api/v1/groups/"+g.ID+"/members/"+carol.ID, alice.Token, nil, nil); code != http.StatusNoContent {
		t.Fatalf("owner removing carol: %d", code)
	}
	// Carol gets the group event that removed her, then nothing.
	if m := c.Expect("msg"); m.Str("kind") != "group_event" || !strings.Contains(m.Str("body"), `"member_removed"`) {
		t.Fatalf("removed member got %v, want the member_removed group event", m)
	}
	a.Expect("msg") // alice sees the event too
	sendGroup(a, "g2", g.ID, "after removal")
	a.Expect("ack")
	c.Quiet(300 * time.Millisecond) // nothing after removal
	sendGroup(c, "c1", g.ID, "let me in")
	if e := c.Expect("error"); e.Str("code") != "FORBIDDEN" || e.Str("cmid") != "c1" {
		t.Fatalf("removed member send: %v", e)
	}
	c.SendJSON(map[string]any{"t": "pull", "id": "p", "conv": g.Conv, "from": 1})
	if e := c.Expect("error"); e.Str("code") != "FORBIDDEN" {
		t.Fatalf("removed member pull: %v", e)
	}
	if code, _ := api.Do("GET", "/api/v1/groups/"+g.ID, carol.Token, nil, nil); code != http.StatusForbidden {
		t.Fatalf("removed member reads the group: %d", code)
	}

	// Dave joins now: he sees messages from his joining on, not the history.
	if code, _ := api.Do("POST", "/api/v1/groups/"+g.ID+"/members", alice.Token, map[string]any{"userIds": []string{dave.ID}}, nil); code != 200 {
		t.Fatalf("add dave: %d", code)
	}
	d, _ := imtest.Connect(t, s.URL, dave.Token, "d1")
	sendGroup(a, "g3", g.ID, "welcome dave")
	a.Expect("ack", "msg") // group events (kind group_event) may come first
	m := d.Expect("msg")
	for m.Str("kind") == "group_event" {
		m = d.Expect("msg")
	}
	if m.Str("body") != "welcome dave" {
		t.Fatalf("dave got %v", m)
	}
	d.SendJSON(map[string]any{"t": "pull", "id": "p", "conv": g.Conv, "from": 1})
	p := d.Expect("pull_result", "msg")
	var texts []imtest.Frame
	for _, it := range p.Items() {
		if it.Str("kind") != "group_event" {
			texts = append(texts, it)
		}
	}
	if len(texts) != 1 || texts[0].Str("body") != "welcome dave" {
		t.Fatalf("dave's history: %v (earlier history must not be visible)", p.Items())
	}

	// Muted members cannot send; the owner unmutes.
	until := time.Now().Add(time.Hour).UnixMilli()
	if code, _ := api.Do("PATCH", "/api/v1/groups/"+g.ID+"/members/"+dave.ID, alice.Token, map[string]any{"mutedUntil": until}, nil); code != 200 {
		t.Fatalf("mute: %d", code)
	}
	sendGroup(d, "d1", g.ID, "can I talk?")
	if e := d.Expect("error", "msg"); e.Str("code") != "FORBIDDEN" {
		t.Fatalf("muted send: %v", e)
	}
	// Names are trimmed and validated on rename as on create.
	var renamed struct{ Name string }
	if code, _ := api.Do("PATCH", "/api/v1/groups/"+g.ID, alice.Token, map[string]any{"name": "  renamed  "}, &renamed); code != 200 || renamed.Name != "renamed" {
		t.Fatalf("rename: %d %+v", code, renamed)
	}
	if code, _ := api.Do("PATCH", "/api/v1/groups/"+g.ID, alice.Token, map[string]any{"name": "   "}, nil); code != http.StatusBadRequest {
		t.Fatalf("blank name accepted: %d", code)
	}
	// Transfer ownership; the old owner becomes admin; the new owner dismisses.
	if code, _ := api.Do("PATCH", "/api/v1/groups/"+g.ID, alice.Token, map[string]any{"owner": bob.ID}, nil); code != 200 {
		t.Fatalf("transfer: %d", code)
	}
	if code, _ := api.Do("DELETE", "/api/v1/groups/"+g.ID, alice.Token, nil, nil); code != http.StatusForbidden {
		t.Fatalf("old owner dismissing: %d", code)
	}
	if code, _ := api.Do("DELETE", "/api/v1/groups/"+g.ID, bob.Token, nil, nil); code != http.StatusNoContent {
		t.Fatalf("new owner dismissing: %d", code)
	}
	sendGroup(a, "g4", g.ID, "anyone?")
	if e := a.Expect("error", "msg"); e.Str("code") != "NOT_FOUND" {
		t.Fatalf("send to dismissed group: %v", e)
	}
}

func TestLargeGroupFanOutIsOnePushPerGateway(t *testing.T) {
	s := start(t, "", gateway.Config{})
	api := imtest.NewAPI(s.URL)
	owner := api.Register(t, "owner")
	keys, err := auth.LoadKeys(filepath.Join(s.DataDir, "jwt.key"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	const members, online = 10000, 2000
	ctx := context.Background()
	ids := make([]string, 0, members-1)
	for i := range members - 1 {
		u := store.User{ID: "9" + strconv.Itoa(100000+i), Username: "m" + strconv.Itoa(i), DisplayName: "m", PasswordHash: "x", CreatedAt: 1}
		if err := s.Store.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, u.ID)
	}
	g := createGroup(t, api, owner, ids...)
	if g.MemberCount != members {
		t.Fatalf("member count %d", g.MemberCount)
	}
	url2, gw2, err := s.AddGateway("gw2")
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]*imtest.Conn, online)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range online {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			tok, _, _ := keys.Issue(ids[i])
			base := s.URL
			if i%2 == 1 {
				base = url2
			}
			conns[i], _ = imtest.Connect(t, base, tok, "d")
		}()
	}
	wg.Wait()
	if s.Gateway.Connections()+gw2.Connections() != online {
		t.Fatalf("online %d + %d", s.Gateway.Connections(), gw2.Connections())
	}
	p1, p2 := s.Gateway.Stats().Pushes, gw2.Stats().Pushes
	o, _ := imtest.Connect(t, s.URL, owner.Token, "o")
	sendGroup(o, "big", g.ID, "hello everyone")
	ack := o.Expect("ack")
	for i, c := range conns {
		n := c.Expect("notify")
		if n.Str("conv") != g.Conv || n.Int("seq") != ack.Int("seq") {
			t.Fatalf("member %d got %v", i, n)
		}
	}
	for _, c := range conns[:50] {
		c.Quiet(10 * time.Millisecond) // exactly once
	}
	// gw2 got one push for the message; gw1 (the sender's) one for the
	// message plus one carrying the sender's ack.
	if d1, d2 := s.Gateway.Stats().Pushes-p1, gw2.Stats().Pushes-p2; d1 != 2 || d2 != 1 {
		t.Fatalf("pushes per gateway: gw1 %d (want 1 + ack), gw2 %d (want 1)", d1, d2)
	}
}
