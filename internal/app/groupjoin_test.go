package app_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/imkube/imkube/internal/imtest"
	"github.com/imkube/imkube/services/gateway"
)

type groupSettings struct {
	ID         string
	JoinPolicy string
	MuteAll    bool
	MyRole     string
	Remark     string
}

type joinRequest struct {
	ID, GroupID, UserID, Message, Status string
	CreatedAt                            int64
}

type apiError struct{ Code, Message string }

// groupHistory returns the items of conv readable by token.
func groupHistory(t *testing.T, api *imtest.API, token, conv string) []struct{ Kind, Body, Sender string } {
	t.Helper()
	var res struct {
		Items []struct{ Kind, Body, Sender string }
	}
	if code, err := api.Do("GET", "/api/v1/conversations/"+url.PathEscape(conv)+"/messages?fromSeq=1&limit=100", token, nil, &res); code != 200 {
		t.Fatalf("history of %s: %d %v", conv, code, err)
	}
	return res.Items
}

// waitGroupEvents waits until conv holds a group_event record of each of
// the given events (in this order, others between) and returns their
// bodies.
func waitGroupEvents(t *testing.T, api *imtest.API, token, conv string, events ...string) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var got []map[string]any
		var names []string
		for _, it := range groupHistory(t, api, token, conv) {
			if it.Kind != "group_event" {
				continue
			}
			var b map[string]any
			if err := json.Unmarshal([]byte(it.Body), &b); err != nil {
				t.Fatalf("group event body %q: %v", it.Body, err)
			}
			if len(got) < len(events) && b["event"] == events[len(got)] {
				got = append(got, b)
			}
			names = append(names, b["event"].(string))
		}
		if len(got) == len(events) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("group events of %s: %v, want %v in order", conv, names, events)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestJoinPolicyDefaultsToInviteAndOnlyManagersChangeIt(t *testing.T) {
	s := start(t, "", gateway.Config{})
	api := imtest.NewAPI(s.URL)
	alice, bob := api.Register(t, "alice"), api.Register(t, "bob")
	g := createGroup(t, api, alice, bob.ID)
	var got groupSettings
	if code, _ := api.Do("GET", "/api/v1/groups/"+g.ID, bob.Token, nil, &got); code != 200 || got.JoinPolicy != "invite" || got.MuteAll {
		t.Fatalf("new group: %d %+v, want joinPolicy invite, muteAll false", code, got)
	}
	var e apiError
	if code, _ := api.Do("PATCH", "/api/v1/groups/"+g.ID, bob.Token, map[string]any{"joinPolicy": "open"}, &e); code != http.StatusForbidden || e.Code != "FORBIDDEN" {
		t.Fatalf("member changing joinPolicy: %d %+v", code, e)
	}
	if code, _ := api.Do("PATCH", "/api/v1/groups/"+g.ID, bob.Token, map[string]any{"muteAll": true}, nil); code != http.StatusForbidden {
		t.Fatalf("member changing muteAll: %d", code)
	}
	if code, _ := api.Do("PATCH", "/api/v1/groups/"+g.ID, alice.Token, map[string]any{"joinPolicy": "anyone", "name": "new"}, &e); code != http.StatusBadRequest || e.Code != "BAD_FRAME" {
		t.Fatalf("bad joinPolicy: %d %+v", code, e)
	}
	var after struct {
		groupSettings
		Name string
	}
	if api.Do("GET", "/api/v1/groups/"+g.ID, alice.Token, nil, &after); after.JoinPolicy != "invite" || after.Name != "team" {
		t.Fatalf("a refused change changed the group: %+v", after)
	}
	if code, _ := api.Do("PATCH", "/api/v1/groups/"+g.ID, alice.Token, map[string]any{"joinPolicy": "request"}, &got); code != 200 || got.JoinPolicy != "request" {
		t.Fatalf("owner setting joinPolicy: %d %+v", code, got)
	}
	var mine []groupSettings
	if api.Do("GET", "/api/v1/groups", bob.Token, nil, &mine); len(mine) != 1 || mine[0].JoinPolicy != "request" {
		t.Fatalf("bob's groups: %+v", mine)
	}
	ev := waitGroupEvents(t, api, bob.Token, g.Conv, "group_updated")
	if ev[0]["joinPolicy"] != "request" {
		t.Fatalf("settings event: %v", ev[0])
	}
}

func TestJoinRequestsAreAcceptedAndDeclinedByManagersOnly(t *testing.T) {
	s := start(t, "", gateway.Config{})
	api := imtest.NewAPI(s.URL)
	alice, bob, carol, dave := api.Register(t, "alice"), api.Register(t, "bob"), api.Register(t, "carol"), api.Register(t, "dave")
	g := createGroup(t, api, alice, bob.ID)
	base := "/api/v1/groups/" + g.ID + "/join-requests"
	var e apiError
	if code, _ := api.Do("POST", base, carol.Token, map[string]any{"message": "hi"}, &e); code != http.StatusForbidden || e.Code != "JOIN_POLICY" {
		t.Fatalf("request to an invite-only group: %d %+v", code, e)
	}
	if code, _ := api.Do("PATCH", "/api/v1/groups/"+g.ID, alice.Token, map[string]any{"joinPolicy": "request"}, nil); code != 200 {
		t.Fatalf("set joinPolicy: %d", code)
	}
	if code, _ := api.Do("POST", base, carol.Token, map[string]any{"message": strings.Repeat("x", 501)}, &e); code != http.StatusBadRequest {
		t.Fatalf("overlong message: %d %+v", code, e)
	}
	var r joinRequest
	if code, _ := api.Do("POST", base, carol.Token, map[string]any{"message": "let me in"}, &r); code != http.StatusCreated ||
		r.ID == "" || r.GroupID != g.ID || r.UserID != carol.ID || r.Message != "let me in" || r.Status != "pending" || r.CreatedAt == 0 {
		t.Fatalf("request: %d %+v", code, r)
	}
	if code, _ := api.Do("POST", base, carol.Token, nil, &e); code != http.StatusConflict || e.Code != "REQUEST_PENDING" {
		t.Fatalf("duplicate request: %d %+v", code, e)
	}
	if code, _ := api.Do("POST", base, bob.Token, nil, &e); code != http.StatusConflict || e.Code != "ALREADY_MEMBER" {
		t.Fatalf("member requesting: %d %+v", code, e)
	}
	if code, _ := api.Do("POST", "/api/v1/groups/"+g.ID+"/join", carol.Token, nil, &e); code != http.StatusForbidden || e.Code != "JOIN_POLICY" {
		t.Fatalf("open join of a request group: %d %+v", code, e)
	}
	// Bob is a plain member: he neither lists nor answers requests.
	if code, _ := api.Do("GET", base, bob.Token, nil, nil); code != http.StatusForbidden {
		t.Fatalf("member listing requests: %d", code)
	}
	if code, _ := api.Do("POST", base+"/"+r.ID+"/accept", bob.Token, nil, nil); code != http.StatusForbidden {
		t.Fatalf("member accepting: %d", code)
	}
	if code, _ := api.Do("GET", base, carol.Token, nil, nil); code != http.StatusForbidden {
		t.Fatalf("requester listing requests: %d", code)
	}
	var list []joinRequest
	if code, _ := api.Do("GET", base, alice.Token, nil, &list); code != 200 || len(list) != 1 || list[0].ID != r.ID || list[0].Status != "pending" {
		t.Fatalf("owner's list: %d %+v", code, list)
	}
	if code, _ := api.Do("GET", base+"?status=maybe", alice.Token, nil, nil); code != http.StatusBadRequest {
		t.Fatalf("bad status filter: %d", code)
	}
	if code, _ := api.Do("GET", "/api/v1/groups/"+g.ID, carol.Token, nil, nil); code != http.StatusForbidden {
		t.Fatalf("requester reads the group before acceptance: %d", code)
	}
	var accepted joinRequest
	if code, _ := api.Do("POST", base+"/"+r.ID+"/accept", alice.Token, nil, &accepted); code != 200 || accepted.Status != "accepted" {
		t.Fatalf("accept: %d %+v", code, accepted)
	}
	if code, _ := api.Do("POST", base+"/"+r.ID+"/decline", alice.Token, nil, &e); code != http.StatusConflict || e.Code != "REQUEST_ANSWERED" {
		t.Fatalf("answer twice: %d %+v", code, e)
	}
	var got groupSettings
	if code, _ := api.Do("GET", "/api/v1/groups/"+g.ID, carol.Token, nil, &got); code != 200 || got.MyRole != "member" {
		t.Fatalf("carol after acceptance: %d %+v", code, got)
	}
	// Carol gets the group's messages now.
	c, _ := imtest.Connect(t, s.URL, carol.Token, "c1")
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	sendGroup(a, "w1", g.ID, "welcome carol")
	a.Expect("ack", "msg")
	m := c.Expect("msg")
	for m.Str("kind") == "group_event" {
		m = c.Expect("msg")
	}
	if m.Str("body") != "welcome carol" {
		t.Fatalf("carol got %v", m)
	}

	// Dave's request is declined: he stays out.
	var dr joinRequest
	if code, _ := api.Do("POST", base, dave.Token, map[string]any{}, &dr); code != http.StatusCreated {
		t.Fatalf("dave's request: %d", code)
	}
	var declined joinRequest
	if code, _ := api.Do("POST", base+"/"+dr.ID+"/decline", alice.Token, nil, &declined); code != 200 || declined.Status != "declined" {
		t.Fatalf("decline: %d %+v", code, declined)
	}
	if code, _ := api.Do("GET", "/api/v1/groups/"+g.ID, dave.Token, nil, nil); code != http.StatusForbidden {
		t.Fatalf("declined requester reads the group: %d", code)
	}
	if code, _ := api.Do("POST", base+"/nope/accept", alice.Token, nil, nil); code != http.StatusNotFound {
		t.Fatalf("unknown request: %d", code)
	}
	if api.Do("GET", base+"?status=declined", alice.Token, nil, &list); len(list) != 1 || list[0].ID != dr.ID {
		t.Fatalf("declined list: %+v", list)
	}
	if api.Do("GET", base, alice.Token, nil, &list); len(list) != 0 {
		t.Fatalf("pending after answers: %+v", list)
	}
	ev := waitGroupEvents(t, api, alice.Token, g.Conv, "group_updated", "join_requested", "join_request_accepted", "join_requested", "join_request_declined")
	if ev[1]["requestId"] != r.ID || ev[1]["message"] != "let me in" || ev[2]["requestId"] != r.ID || ev[4]["requestId"] != dr.ID {
		t.Fatalf("join request events: %v", ev)
	}
	// Dave may ask again after the decline.
	if code, _ := api.Do("POST", base, dave.Token, map[string]any{"message": "please"}, nil); code != http.StatusCreated {
		t.Fatalf("request after a decline: %d", code)
	}
}

func TestJoinOpenGroupAddsTheCaller(t *testing.T) {
	s := start(t, "", gateway.Config{})
	api := imtest.NewAPI(s.URL)
	alice, carol := api.Register(t, "alice"), api.Register(t, "carol")
	g := createGroup(t, api, alice)
	join := "/api/v1/groups/" + g.ID + "/join"
	var e apiError
	if code, _ := api.Do("POST", join, carol.Token, nil, &e); code != http.StatusForbidden || e.Code != "JOIN_POLICY" {
		t.Fatalf("join an invite-only group: %d %+v", code, e)
	}
	if code, _ := api.Do("POST", "/api/v1/groups/nosuch/join", carol.Token, nil, nil); code != http.StatusNotFound {
		t.Fatalf("join a missing group: %d", code)
	}
	if code, _ := api.Do("PATCH", "/api/v1/groups/"+g.ID, alice.Token, map[string]any{"joinPolicy": "open"}, nil); code != 200 {
		t.Fatalf("open the group: %d", code)
	}
	if code, _ := api.Do("POST", "/api/v1/groups/"+g.ID+"/join-requests", carol.Token, nil, &e); code != http.StatusForbidden || e.Code != "JOIN_POLICY" {
		t.Fatalf("request to an open group: %d %+v", code, e)
	}
	var got struct {
		groupSettings
		MemberCount int
	}
	if code, _ := api.Do("POST", join, carol.Token, nil, &got); code != 200 || got.MyRole != "member" || got.MemberCount != 2 {
		t.Fatalf("join: %d %+v", code, got)
	}
	if code, _ := api.Do("POST", join, carol.Token, nil, &e); code != http.StatusConflict || e.Code != "ALREADY_MEMBER" {
		t.Fatalf("join twice: %d %+v", code, e)
	}
	ev := waitGroupEvents(t, api, carol.Token, g.Conv, "member_joined")
	if ts, _ := ev[0]["targets"].([]any); len(ts) != 1 || ts[0] != carol.ID {
		t.Fatalf("member_joined: %v", ev[0])
	}
	// Alice was offline throughout: her device gets both events by sync.
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	a.SendJSON(map[string]any{"t": "sync", "id": "s", "after": 0, "limit": 100})
	var synced []string
	for _, it := range a.Expect("sync_result").Items() {
		if it.Str("kind") == "group_event" && it.Str("conv") == g.Conv {
			var b map[string]any
			json.Unmarshal([]byte(it.Str("body")), &b)
			synced = append(synced, b["event"].(string))
		}
	}
	if strings.Join(synced, ",") != "group_updated,member_joined" {
		t.Fatalf("alice synced group events %v, want group_updated, member_joined", synced)
	}
	// members/me also works for leaving.
	if code, _ := api.Do("DELETE", "/api/v1/groups/"+g.ID+"/members/me", carol.Token, nil, nil); code != http.StatusNoContent {
		t.Fatalf("leave with members/me: %d", code)
	}
	if code, _ := api.Do("GET", "/api/v1/groups/"+g.ID, carol.Token, nil, nil); code != http.StatusForbidden {
		t.Fatalf("carol after leaving: %d", code)
	}
}

func TestMuteAllLetsOnlyOwnerAndAdminsSend(t *testing.T) {
	s := start(t, "", gateway.Config{})
	api := imtest.NewAPI(s.URL)
	alice, bob, carol := api.Register(t, "alice"), api.Register(t, "bob"), api.Register(t, "carol")
	g := createGroup(t, api, alice, bob.ID, carol.ID)
	if code, _ := api.Do("PATCH", "/api/v1/groups/"+g.ID+"/members/"+bob.ID, alice.Token, map[string]any{"role": "admin"}, nil); code != 200 {
		t.Fatalf("make bob admin: %d", code)
	}
	var got groupSettings
	if code, _ := api.Do("PATCH", "/api/v1/groups/"+g.ID, bob.Token, map[string]any{"muteAll": true}, &got); code != 200 || !got.MuteAll {
		t.Fatalf("admin mutes all: %d %+v", code, got)
	}
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	b, _ := imtest.Connect(t, s.URL, bob.Token, "b1")
	c, _ := imtest.Connect(t, s.URL, carol.Token, "c1")
	sendGroup(c, "c1", g.ID, "can I talk?")
	if e := c.Expect("error", "msg"); e.Str("code") != "FORBIDDEN" || e.Str("cmid") != "c1" || !strings.Contains(e.Str("message"), "muted") {
		t.Fatalf("member send to a muted group: %v", e)
	}
	sendGroup(a, "a1", g.ID, "owner speaks")
	a.Expect("ack", "msg")
	sendGroup(b, "b1", g.ID, "admin speaks")
	b.Expect("ack", "msg")
	for _, it := range groupHistory(t, api, alice.Token, g.Conv) {
		if it.Body == "can I talk?" {
			t.Fatalf("a refused send was stored: %+v", it)
		}
	}
	if code, _ := api.Do("PATCH", "/api/v1/groups/"+g.ID, alice.Token, map[string]any{"muteAll": false}, &got); code != 200 || got.MuteAll {
		t.Fatalf("unmute: %d %+v", code, got)
	}
	sendGroup(c, "c2", g.ID, "thanks")
	if ack := c.Expect("ack", "msg"); ack.Str("cmid") != "c2" {
		t.Fatalf("member send after unmute: %v", ack)
	}
	ev := waitGroupEvents(t, api, carol.Token, g.Conv, "group_updated", "group_updated")
	if ev[0]["muteAll"] != true || ev[1]["muteAll"] != false {
		t.Fatalf("mute events: %v", ev)
	}
}

func TestGroupRemarkIsSeenOnlyByItsMember(t *testing.T) {
	s := start(t, "", gateway.Config{})
	api := imtest.NewAPI(s.URL)
	alice, bob, carol := api.Register(t, "alice"), api.Register(t, "bob"), api.Register(t, "carol")
	g := createGroup(t, api, alice, bob.ID)
	me := "/api/v1/groups/" + g.ID + "/members/me"
	var got groupSettings
	if code, _ := api.Do("PATCH", me, bob.Token, map[string]any{"remark": " work chat "}, &got); code != 200 || got.Remark != "work chat" || got.MyRole != "member" {
		t.Fatalf("set remark: %d %+v", code, got)
	}
	if code, _ := api.Do("PATCH", me, bob.Token, map[string]any{"remark": strings.Repeat("r", 65)}, nil); code != http.StatusBadRequest {
		t.Fatalf("overlong remark: %d", code)
	}
	if code, _ := api.Do("PATCH", me, bob.Token, map[string]any{}, nil); code != http.StatusBadRequest {
		t.Fatalf("no remark: %d", code)
	}
	if code, _ := api.Do("PATCH", me, carol.Token, map[string]any{"remark": "x"}, nil); code != http.StatusForbidden {
		t.Fatalf("non-member remark: %d", code)
	}
	if api.Do("GET", "/api/v1/groups/"+g.ID, bob.Token, nil, &got); got.Remark != "work chat" {
		t.Fatalf("bob's group: %+v", got)
	}
	var mine []groupSettings
	if api.Do("GET", "/api/v1/groups", bob.Token, nil, &mine); len(mine) != 1 || mine[0].Remark != "work chat" {
		t.Fatalf("bob's groups: %+v", mine)
	}
	// Alice sees neither bob's remark nor one of her own.
	var raw map[string]any
	if api.Do("GET", "/api/v1/groups/"+g.ID, alice.Token, nil, &raw); strings.Contains(mustJSON(t, raw), "work chat") {
		t.Fatalf("alice sees bob's remark: %v", raw)
	}
	var list []map[string]any
	if api.Do("GET", "/api/v1/groups", alice.Token, nil, &list); strings.Contains(mustJSON(t, list), "work chat") {
		t.Fatalf("alice's groups show bob's remark: %v", list)
	}
	// Role changes by user id still work beside members/me.
	if code, _ := api.Do("PATCH", "/api/v1/groups/"+g.ID+"/members/"+bob.ID, alice.Token, map[string]any{"role": "admin"}, nil); code != 200 {
		t.Fatalf("role change: %d", code)
	}
	if api.Do("GET", "/api/v1/groups/"+g.ID, bob.Token, nil, &got); got.MyRole != "admin" || got.Remark != "work chat" {
		t.Fatalf("bob after the role change: %+v", got)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
