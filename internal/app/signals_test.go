package app_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/imkube/imkube/internal/app"
	"github.com/imkube/imkube/internal/imtest"
	"github.com/imkube/imkube/services/gateway"
)

func TestDeliveredReachesTheSendersDevicesAsAReceipt(t *testing.T) {
	s := start(t, "", gateway.Config{})
	api := imtest.NewAPI(s.URL)
	alice, bob, carol := api.Register(t, "alice"), api.Register(t, "bob"), api.Register(t, "carol")
	a1, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	a2, _ := imtest.Connect(t, s.URL, alice.Token, "a2")
	b, _ := imtest.Connect(t, s.URL, bob.Token, "b1")
	c, _ := imtest.Connect(t, s.URL, carol.Token, "c1")
	conv := directConv(alice.ID, bob.ID)

	send(a1, "m1", bob.ID, "hi")
	a1.Expect("ack")
	a2.Expect("msg")
	m := b.Expect("msg")
	b.SendJSON(map[string]any{"t": "delivered", "conv": conv, "seq": m.Int("seq")})
	for name, conn := range map[string]*imtest.Conn{"a1": a1, "a2": a2} {
		r := conn.Expect("receipt")
		if r.Str("kind") != "delivered" || r.Str("user") != bob.ID || r.Str("conv") != conv || r.Int("seq") != 1 {
			t.Fatalf("%s got %v, want a delivered receipt of bob at seq 1", name, r)
		}
	}
	b.Quiet(200 * time.Millisecond) // bob is not told about his own receipt

	// A conversation carol is not in: FORBIDDEN, nothing sent.
	c.SendJSON(map[string]any{"t": "delivered", "conv": conv, "seq": 1})
	if f := c.Expect("error"); f.Str("code") != "FORBIDDEN" {
		t.Fatalf("delivered by a stranger: %v", f)
	}
	// A seq past the conversation's end is cut to it.
	b.SendJSON(map[string]any{"t": "delivered", "conv": conv, "seq": 1000})
	time.Sleep(1100 * time.Millisecond) // the coalescing interval
	b.SendJSON(map[string]any{"t": "delivered", "conv": conv, "seq": 1000})
	if r := a1.Expect("receipt"); r.Int("seq") != 1 {
		t.Fatalf("receipt %v, want seq cut to the last message (1)", r)
	}
	// Bad frames get BAD_FRAME.
	b.SendJSON(map[string]any{"t": "delivered", "conv": "x:1", "seq": 1})
	if f := b.Expect("error"); f.Str("code") != "BAD_FRAME" {
		t.Fatalf("delivered with a malformed conv: %v", f)
	}
	expectAlive(t, b)
}

func TestReadSyncsOtherDevicesAndAnOfflineDeviceConverges(t *testing.T) {
	s := start(t, "", gateway.Config{})
	api := imtest.NewAPI(s.URL)
	alice, bob := api.Register(t, "alice"), api.Register(t, "bob")
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	b1, _ := imtest.Connect(t, s.URL, bob.Token, "b1")
	b2, _ := imtest.Connect(t, s.URL, bob.Token, "b2")
	b3, ok3 := imtest.Connect(t, s.URL, bob.Token, "b3")
	conv := directConv(alice.ID, bob.ID)
	for i := 1; i <= 3; i++ {
		send(a, fmt.Sprintf("m%d", i), bob.ID, "hi")
		a.Expect("ack")
		b1.Expect("msg")
		b2.Expect("msg")
		b3.Expect("msg")
	}
	b3cursor := ok3.Int("inboxSeq") + 3
	b3.Close() // offline while b1 reads

	b1.SendJSON(map[string]any{"t": "read", "conv": conv, "seq": 2})
	rs := b2.Expect("read_sync")
	if rs.Str("conv") != conv || rs.Int("seq") != 2 || rs.Int("inboxSeq") != b3cursor+1 {
		t.Fatalf("b2 got %v, want read_sync of %s at 2 with inboxSeq %d", rs, conv, b3cursor+1)
	}
	if r := a.Expect("receipt"); r.Str("kind") != "read" || r.Int("seq") != 2 {
		t.Fatalf("alice got %v, want a read receipt at 2", r)
	}
	b1.Quiet(200 * time.Millisecond) // the reading device is not told

	// The offline device syncs and finds the read record in its inbox.
	b3, ok := imtest.Connect(t, s.URL, bob.Token, "b3")
	if ok.Int("inboxSeq") != b3cursor+1 {
		t.Fatalf("auth_ok inboxSeq %d, want %d", ok.Int("inboxSeq"), b3cursor+1)
	}
	b3.SendJSON(map[string]any{"t": "sync", "id": "s", "after": b3cursor})
	res := b3.Expect("sync_result")
	items := res.Items()
	if len(items) != 1 || items[0].T() != "read_sync" || items[0].Str("conv") != conv || items[0].Int("seq") != 2 || items[0].Int("inboxSeq") != b3cursor+1 {
		t.Fatalf("sync after %d: %v, want one read_sync record", b3cursor, items)
	}
	if _, has := items[0]["body"]; has {
		t.Fatalf("a read record carries message fields: %v", items[0])
	}
	// Every device ends with the same cursor and unread count.
	var convs []struct {
		Conv            string
		ReadSeq, Unread int64
	}
	if code, _ := api.Do("GET", "/api/v1/conversations", bob.Token, nil, &convs); code != 200 || len(convs) != 1 || convs[0].ReadSeq != 2 || convs[0].Unread != 1 {
		t.Fatalf("bob's conversations: %d %+v, want readSeq 2, unread 1", code, convs)
	}
	// A read that does not move the cursor writes nothing and tells nobody.
	b1.SendJSON(map[string]any{"t": "read", "conv": conv, "seq": 1})
	b2.Quiet(300 * time.Millisecond)
	if _, ok := imtest.Connect(t, s.URL, bob.Token, "b4"); ok.Int("inboxSeq") != b3cursor+1 {
		t.Fatalf("a read that did not move took an inbox place: inboxSeq %d", ok.Int("inboxSeq"))
	}
}

// signalCluster is a dev server whose groups above threshold members use
// read diffusion.
func signalCluster(t *testing.T, threshold int, gw gateway.Config) *app.Server {
	t.Helper()
	cluster := *fastCluster()
	cluster.Groups.ReadDiffusionThreshold = threshold
	s, err := app.StartDev(context.Background(), "127.0.0.1:0", t.TempDir(), app.Options{Cluster: &cluster, BcryptCost: 4, Gateway: gw})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

type readsView struct {
	ReadCount, UnreadCount int64
	Readers                []string
}

func TestGroupReadCountsAtAndAboveTheWriteDiffusionThreshold(t *testing.T) {
	const threshold = 4
	s := signalCluster(t, threshold, gateway.Config{})
	api := imtest.NewAPI(s.URL)
	var users []imtest.Account
	for i := range threshold + 2 {
		users = append(users, api.Register(t, fmt.Sprintf("user%d", i)))
	}
	ids := func(list []imtest.Account) []string {
		var out []string
		for _, u := range list {
			out = append(out, u.ID)
		}
		return out
	}
	stranger := users[threshold+1]
	for _, tt := range []struct {
		name    string
		members []imtest.Account // the first is the owner and sender
		readers bool
	}{
		{"at the threshold (write diffusion)", users[:threshold], true},
		{"above the threshold (read diffusion)", users[:threshold+1], false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			owner := tt.members[0]
			g := createGroup(t, api, owner, ids(tt.members[1:])...)
			o, _ := imtest.Connect(t, s.URL, owner.Token, "o-"+g.ID)
			for i := 1; i <= 3; i++ {
				sendGroup(o, fmt.Sprintf("%s-%d", g.ID, i), g.ID, "hello")
				o.Expect("ack", "msg", "notify")
			}
			// Members 1 and 2 read up to 2 and 3; the rest read nothing.
			for i, upTo := range []int64{2, 3} {
				c, _ := imtest.Connect(t, s.URL, tt.members[i+1].Token, "r-"+g.ID)
				c.SendJSON(map[string]any{"t": "read", "conv": g.Conv, "seq": upTo})
				c.SendJSON(map[string]any{"t": "ping"})
				c.Expect("pong", "msg", "notify")
			}
			others := int64(len(tt.members) - 1)
			for _, q := range []struct {
				seq     int64
				read    int64
				readers []string
			}{
				{1, 2, []string{tt.members[1].ID, tt.members[2].ID}},
				{3, 1, []string{tt.members[2].ID}},
			} {
				var got readsView
				code, err := api.Do("GET", fmt.Sprintf("/api/v1/conversations/%s/reads?seq=%d", g.Conv, q.seq), tt.members[3].Token, nil, &got)
				if err != nil || code != 200 || got.ReadCount != q.read || got.UnreadCount != others-q.read {
					t.Fatalf("reads of seq %d: %d %v %+v, want %d read of %d", q.seq, code, err, got, q.read, others)
				}
				if tt.readers {
					if fmt.Sprint(sorted(got.Readers)) != fmt.Sprint(sorted(q.readers)) {
						t.Fatalf("readers of seq %d: %v, want %v", q.seq, got.Readers, q.readers)
					}
				} else if got.Readers != nil {
					t.Fatalf("readers listed above the threshold: %v", got.Readers)
				}
			}
			// Not a member: 403; no such message: 404; a bad seq: 400.
			if code, _ := api.Do("GET", "/api/v1/conversations/"+g.Conv+"/reads?seq=1", stranger.Token, nil, nil); code != http.StatusForbidden {
				t.Fatalf("reads by a stranger: %d, want 403", code)
			}
			if code, _ := api.Do("GET", "/api/v1/conversations/"+g.Conv+"/reads?seq=99", owner.Token, nil, nil); code != http.StatusNotFound {
				t.Fatalf("reads of a missing message: %d, want 404", code)
			}
			if code, _ := api.Do("GET", "/api/v1/conversations/"+g.Conv+"/reads?seq=x", owner.Token, nil, nil); code != http.StatusBadRequest {
				t.Fatalf("reads with a bad seq: %d, want 400", code)
			}
		})
	}
}

func sorted(list []string) []string {
	out := append([]string(nil), list...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func TestReadsOfADirectChat(t *testing.T) {
	s := start(t, "", gateway.Config{})
	api := imtest.NewAPI(s.URL)
	alice, bob, carol := api.Register(t, "alice"), api.Register(t, "bob"), api.Register(t, "carol")
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	b, _ := imtest.Connect(t, s.URL, bob.Token, "b1")
	conv := directConv(alice.ID, bob.ID)
	send(a, "m1", bob.ID, "one")
	a.Expect("ack")
	b.Expect("msg")
	var got readsView
	if code, _ := api.Do("GET", "/api/v1/conversations/"+conv+"/reads?seq=1", alice.Token, nil, &got); code != 200 || got.ReadCount != 0 || got.UnreadCount != 1 {
		t.Fatalf("before bob read: %d %+v", code, got)
	}
	b.SendJSON(map[string]any{"t": "read", "conv": conv, "seq": 1})
	a.Expect("receipt")
	if code, _ := api.Do("GET", "/api/v1/conversations/"+conv+"/reads?seq=1", alice.Token, nil, &got); code != 200 || got.ReadCount != 1 || got.UnreadCount != 0 || len(got.Readers) != 1 || got.Readers[0] != bob.ID {
		t.Fatalf("after bob read: %d %+v", code, got)
	}
	if code, _ := api.Do("GET", "/api/v1/conversations/"+conv+"/reads?seq=1", carol.Token, nil, nil); code != http.StatusForbidden {
		t.Fatalf("reads of a chat carol is not in: %d, want 403", code)
	}
}

func TestGroupReadsSyncTheReadersDevicesInBothDiffusionModes(t *testing.T) {
	s := signalCluster(t, 3, gateway.Config{})
	api := imtest.NewAPI(s.URL)
	alice, bob, carol, dave := api.Register(t, "alice"), api.Register(t, "bob"), api.Register(t, "carol"), api.Register(t, "dave")
	small := createGroup(t, api, alice, bob.ID, carol.ID)          // write diffusion
	large := createGroup(t, api, alice, bob.ID, carol.ID, dave.ID) // read diffusion
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	for i, g := range []groupView{small, large} {
		sendGroup(a, fmt.Sprintf("g%d", i), g.ID, "hello")
		a.Expect("ack", "msg", "notify")
	}
	b1, _ := imtest.Connect(t, s.URL, bob.Token, "b1")
	b2, _ := imtest.Connect(t, s.URL, bob.Token, "b2")
	for _, g := range []groupView{small, large} {
		b1.SendJSON(map[string]any{"t": "read", "conv": g.Conv, "seq": 1})
		rs := b2.Expect("read_sync")
		if rs.Str("conv") != g.Conv || rs.Int("seq") != 1 {
			t.Fatalf("b2 got %v, want read_sync of %s", rs, g.Conv)
		}
		if _, has := rs["inboxSeq"]; has != (g.ID == small.ID) {
			t.Fatalf("read_sync %v: an inbox place only under write diffusion", rs)
		}
	}
	// A device connecting later: the large group's cursor comes in auth_ok.
	_, ok := imtest.Connect(t, s.URL, bob.Token, "b3")
	convs, _ := ok["convs"].([]any)
	if len(convs) != 1 {
		t.Fatalf("auth_ok convs %v", ok["convs"])
	}
	if c := imtest.Frame(convs[0].(map[string]any)); c.Str("conv") != large.Conv || c.Int("readSeq") != 1 || c.Int("lastSeq") != 1 {
		t.Fatalf("auth_ok conv %v, want readSeq 1", c)
	}
}

func TestTypingReachesOtherMembersOncePerInterval(t *testing.T) {
	s := start(t, "", gateway.Config{})
	api := imtest.NewAPI(s.URL)
	alice, bob, carol := api.Register(t, "alice"), api.Register(t, "bob"), api.Register(t, "carol")
	g := createGroup(t, api, alice, bob.ID)
	a1, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	a2, _ := imtest.Connect(t, s.URL, alice.Token, "a2")
	b, _ := imtest.Connect(t, s.URL, bob.Token, "b1")
	c, _ := imtest.Connect(t, s.URL, carol.Token, "c1")
	conv := directConv(alice.ID, bob.ID)

	for range 5 { // a burst: one gets through
		b.SendJSON(map[string]any{"t": "typing", "conv": conv})
	}
	for name, conn := range map[string]*imtest.Conn{"a1": a1, "a2": a2} {
		f := conn.Expect("typing")
		if f.Str("conv") != conv || f.Str("user") != bob.ID {
			t.Fatalf("%s got %v", name, f)
		}
	}
	b.SendJSON(map[string]any{"t": "typing", "conv": g.Conv}) // another conversation has its own allowance
	if f := a1.Expect("typing"); f.Str("conv") != g.Conv || f.Str("user") != bob.ID {
		t.Fatalf("group typing: %v", f)
	}
	a1.Quiet(300 * time.Millisecond) // the rest of the burst was dropped
	b.Quiet(100 * time.Millisecond)  // the typist hears nothing, not even errors
	c.Quiet(100 * time.Millisecond)  // nor does a stranger

	// Not a member: FORBIDDEN, nobody is told.
	c.SendJSON(map[string]any{"t": "typing", "conv": g.Conv})
	if f := c.Expect("error"); f.Str("code") != "FORBIDDEN" {
		t.Fatalf("typing by a stranger: %v", f)
	}
	c.SendJSON(map[string]any{"t": "typing"})
	if f := c.Expect("error"); f.Str("code") != "BAD_FRAME" {
		t.Fatalf("typing without conv: %v", f)
	}
	a1.Quiet(200 * time.Millisecond)
	// Nothing about typing is stored.
	if n, _ := s.Store.CountInboxRows(context.Background(), conv); n != 0 {
		t.Fatalf("typing stored %d inbox rows", n)
	}
}

// fakeClock runs the gateway's presence timers when the test says so.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at      time.Time
	f       func()
	stopped bool
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		was := !t.stopped
		t.stopped = true
		return was
	}
}

// advance moves the clock and runs the timers that are due.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*fakeTimer
	rest := c.timers[:0]
	for _, t := range c.timers {
		switch {
		case t.stopped:
		case !t.at.After(c.now):
			t.stopped = true
			due = append(due, t)
		default:
			rest = append(rest, t)
		}
	}
	c.timers = rest
	c.mu.Unlock()
	for _, t := range due {
		t.f()
	}
}

// pending is the number of timers waiting.
func (c *fakeClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPresenceIsDebouncedAndLimitedToContacts(t *testing.T) {
	clock := &fakeClock{now: time.UnixMilli(1_700_000_000_000)}
	s := start(t, "", gateway.Config{Clock: clock, MaxPresenceSubs: 3})
	api := imtest.NewAPI(s.URL)
	alice, bob, carol, dave := api.Register(t, "alice"), api.Register(t, "bob"), api.Register(t, "carol"), api.Register(t, "dave")
	createGroup(t, api, alice, dave.ID) // alice and dave share a group
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	send(a, "hi", bob.ID, "hi") // alice and bob share a chat
	a.Expect("ack")

	a.SendJSON(map[string]any{"t": "presence_sub", "id": "p1", "users": []string{bob.ID, dave.ID}})
	if f := a.Expect("ok"); f.Str("id") != "p1" {
		t.Fatalf("presence_sub answer %v", f)
	}
	for range 2 {
		f := a.Expect("presence")
		if f.Bool("online") || f.Int("lastSeen") != 0 || (f.Str("user") != bob.ID && f.Str("user") != dave.ID) {
			t.Fatalf("initial presence %v, want offline, never seen", f)
		}
	}
	// A stranger: FORBIDDEN and nothing subscribed; over the bound: BAD_FRAME.
	a.SendJSON(map[string]any{"t": "presence_sub", "id": "p2", "users": []string{carol.ID}})
	if f := a.Expect("error"); f.Str("code") != "FORBIDDEN" || f.Str("id") != "p2" {
		t.Fatalf("presence of a stranger: %v", f)
	}
	a.SendJSON(map[string]any{"t": "presence_sub", "id": "p3", "users": []string{alice.ID, carol.ID}})
	if f := a.Expect("error"); f.Str("code") != "BAD_FRAME" || f.Str("id") != "p3" {
		t.Fatalf("four subscriptions over the bound of 3: %v", f)
	}
	code, _ := api.Do("GET", "/api/v1/presence?users="+bob.ID+","+carol.ID, alice.Token, nil, nil)
	if code != http.StatusForbidden {
		t.Fatalf("GET presence of a stranger: %d, want 403", code)
	}

	b, _ := imtest.Connect(t, s.URL, bob.Token, "b1")
	if f := a.Expect("presence"); f.Str("user") != bob.ID || !f.Bool("online") {
		t.Fatalf("bob connected: %v", f)
	}
	var rest struct{ Items []map[string]any }
	if code, _ := api.Do("GET", "/api/v1/presence?users="+bob.ID+","+dave.ID, alice.Token, nil, &rest); code != 200 || len(rest.Items) != 2 ||
		rest.Items[0]["online"] != true || rest.Items[1]["online"] != false {
		t.Fatalf("GET presence: %d %+v", code, rest)
	}

	// Bob drops and is back within the grace period: nobody hears "offline".
	b.Close()
	waitFor(t, "the offline check", func() bool { return clock.pending() == 1 })
	clock.advance(5 * time.Second)
	b, _ = imtest.Connect(t, s.URL, bob.Token, "b1")
	clock.advance(10 * time.Second)
	a.Quiet(300 * time.Millisecond)

	// Bob leaves for good: offline after the grace period, last seen when he left.
	left := clock.Now()
	b.Close()
	waitFor(t, "the offline check", func() bool { return clock.pending() == 1 })
	clock.advance(9 * time.Second)
	a.Quiet(200 * time.Millisecond)
	clock.advance(time.Second)
	f := a.Expect("presence")
	if f.Str("user") != bob.ID || f.Bool("online") || f.Int("lastSeen") != left.UnixMilli() {
		t.Fatalf("bob left: %v, want offline with lastSeen %d", f, left.UnixMilli())
	}
	if code, _ := api.Do("GET", "/api/v1/presence?users="+bob.ID, alice.Token, nil, &rest); code != 200 || rest.Items[0]["lastSeen"] != float64(left.UnixMilli()) {
		t.Fatalf("GET presence after bob left: %d %+v", code, rest)
	}

	// After presence_unsub nothing more arrives.
	a.SendJSON(map[string]any{"t": "presence_unsub", "id": "u1", "users": []string{bob.ID}})
	a.Expect("ok")
	imtest.Connect(t, s.URL, bob.Token, "b1")
	a.Quiet(300 * time.Millisecond)
}

func TestPresenceAndTypingCrossGatewaysAndReachOnlyWatchers(t *testing.T) {
	clock := &fakeClock{now: time.UnixMilli(1_700_000_000_000)}
	s := start(t, "", gateway.Config{Clock: clock})
	url2, gw2, err := s.AddGateway("gw2")
	if err != nil {
		t.Fatal(err)
	}
	api := imtest.NewAPI(s.URL)
	alice, bob, carol := api.Register(t, "alice"), api.Register(t, "bob"), api.Register(t, "carol")
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	send(a, "hi", bob.ID, "hi")
	a.Expect("ack")
	a.SendJSON(map[string]any{"t": "presence_sub", "id": "p", "users": []string{bob.ID}})
	a.Expect("ok")
	if f := a.Expect("presence"); f.Bool("online") {
		t.Fatalf("bob before connecting: %v", f)
	}

	// Bob on the other gateway: alice hears it, and his typing too.
	b, _ := imtest.Connect(t, url2, bob.Token, "b1")
	if f := a.Expect("presence"); f.Str("user") != bob.ID || !f.Bool("online") {
		t.Fatalf("bob connected on gw2: %v", f)
	}
	b.SendJSON(map[string]any{"t": "typing", "conv": directConv(alice.ID, bob.ID)})
	if f := a.Expect("typing"); f.Str("user") != bob.ID {
		t.Fatalf("typing from gw2: %v", f)
	}
	b.Close()
	waitFor(t, "the offline check on gw2", func() bool { return clock.pending() == 1 })
	clock.advance(10 * time.Second)
	if f := a.Expect("presence"); f.Bool("online") || f.Int("lastSeen") != clock.Now().Add(-10*time.Second).UnixMilli() {
		t.Fatalf("bob left gw2: %v", f)
	}

	// A user nobody watches comes and goes: no gateway is told.
	before := gw2.Stats().Pushes
	c, _ := imtest.Connect(t, s.URL, carol.Token, "c1")
	c.Close()
	waitFor(t, "carol's offline check", func() bool { return clock.pending() == 1 })
	clock.advance(10 * time.Second)
	time.Sleep(100 * time.Millisecond)
	if n := gw2.Stats().Pushes - before; n != 0 {
		t.Fatalf("gw2 got %d pushes about a user nobody there watches", n)
	}
	a.Quiet(200 * time.Millisecond)
}

func TestPresenceSubscriptionsAreRateLimitedPerConnection(t *testing.T) {
	s := start(t, "", gateway.Config{ReadRate: 0.01, ReadBurst: 2})
	api := imtest.NewAPI(s.URL)
	alice, bob := api.Register(t, "alice"), api.Register(t, "bob")
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	for i := range 2 {
		a.SendJSON(map[string]any{"t": "presence_sub", "id": fmt.Sprint(i), "users": []string{alice.ID}})
		a.Expect("ok")
		a.Expect("presence")
	}
	a.SendJSON(map[string]any{"t": "presence_sub", "id": "over", "users": []string{bob.ID}})
	if f := a.Expect("error"); f.Str("code") != "RATE_LIMITED" || f.Str("id") != "over" || f.Int("retryAfterMs") < 1 {
		t.Fatalf("a presence_sub over the allowance: %v", f)
	}
	expectAlive(t, a)
}
