package app_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/imkube/imkube/internal/config"
	"github.com/imkube/imkube/internal/imtest"
	"github.com/imkube/imkube/services/gateway"
)

type friendRequest struct {
	apiErr
	ID, From, To, Message, Status string
	CreatedAt                     int64
}

type friend struct {
	UserID, Username, DisplayName, Remark string
	Since                                 int64
}

// wantAPI calls the API and fails unless the answer has status want (and,
// for errors, code).
func wantAPI(t *testing.T, api *imtest.API, method, path, token string, body any, want int, code string) {
	t.Helper()
	var e apiErr
	got, err := api.Do(method, path, token, body, &e)
	if err != nil || got != want || (code != "" && e.Code != code) {
		t.Fatalf("%s %s: %d %q (%s) %v, want %d %s", method, path, got, e.Code, e.Message, err, want, code)
	}
}

// expectEvent waits for an event frame of kind, skipping other frames.
func expectEvent(t *testing.T, c *imtest.Conn, kind string) imtest.Frame {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		f, err := c.NextErr(time.Until(deadline))
		if err != nil {
			break
		}
		if f.T() == "event" && f.Str("kind") == kind {
			if f.Int("inboxSeq") <= 0 {
				t.Fatalf("event %v has no inboxSeq: it must be an inbox record", f)
			}
			return f
		}
	}
	t.Fatalf("no %s event within 10 s", kind)
	return nil
}

func data(f imtest.Frame) imtest.Frame {
	m, _ := f["data"].(map[string]any)
	return imtest.Frame(m)
}

func TestFriendRequestsAreAnsweredByTheRecipientAndBothSidesConverge(t *testing.T) {
	s := start(t, "", gateway.Config{})
	api := imtest.NewAPI(s.URL)
	alice, bob, carol := api.Register(t, "alice"), api.Register(t, "bob"), api.Register(t, "carol")
	b, _ := imtest.Connect(t, s.URL, bob.Token, "b1")

	var req friendRequest
	code, err := api.Do("POST", "/api/v1/friends/requests", alice.Token, map[string]string{"userId": bob.ID, "message": "hi, it's alice"}, &req)
	if err != nil || code != http.StatusCreated || req.ID == "" || req.From != alice.ID || req.To != bob.ID || req.Message != "hi, it's alice" || req.Status != "pending" || req.CreatedAt == 0 {
		t.Fatalf("friend request: %d %+v %v", code, req, err)
	}
	ev := expectEvent(t, b, "friend_request")
	if d := data(ev); d.Str("id") != req.ID || d.Str("from") != alice.ID || d.Str("status") != "pending" {
		t.Fatalf("bob's friend_request event: %v", ev)
	}

	// Bad and repeated requests change nothing.
	wantAPI(t, api, "POST", "/api/v1/friends/requests", alice.Token, map[string]string{"userId": bob.ID}, http.StatusConflict, "REQUEST_PENDING")
	wantAPI(t, api, "POST", "/api/v1/friends/requests", bob.Token, map[string]string{"userId": alice.ID}, http.StatusConflict, "REQUEST_PENDING")
	wantAPI(t, api, "POST", "/api/v1/friends/requests", alice.Token, map[string]string{"userId": alice.ID}, http.StatusBadRequest, "BAD_FRAME")
	wantAPI(t, api, "POST", "/api/v1/friends/requests", alice.Token, map[string]string{"userId": "424242"}, http.StatusNotFound, "NOT_FOUND")
	wantAPI(t, api, "POST", "/api/v1/friends/requests", alice.Token, map[string]string{"userId": carol.ID, "message": strings.Repeat("x", 201)}, http.StatusBadRequest, "BAD_FRAME")
	wantAPI(t, api, "GET", "/api/v1/friends/requests?direction=sideways", bob.Token, nil, http.StatusBadRequest, "BAD_FRAME")

	var in, out []friendRequest
	if code, err := api.Do("GET", "/api/v1/friends/requests?direction=in&status=pending", bob.Token, nil, &in); err != nil || code != 200 || len(in) != 1 || in[0].ID != req.ID {
		t.Fatalf("bob's incoming pending requests: %d %+v %v", code, in, err)
	}
	if code, err := api.Do("GET", "/api/v1/friends/requests?direction=out&status=pending", alice.Token, nil, &out); err != nil || code != 200 || len(out) != 1 || out[0].ID != req.ID {
		t.Fatalf("alice's outgoing pending requests: %d %+v %v", code, out, err)
	}

	// Strangers (no chat, no group) see no presence until they are friends.
	if code, _ := api.Do("GET", "/api/v1/presence?users="+bob.ID, alice.Token, nil, nil); code != http.StatusForbidden {
		t.Fatalf("presence of a stranger with a pending request: %d, want 403", code)
	}

	// Only the recipient answers.
	wantAPI(t, api, "POST", "/api/v1/friends/requests/"+req.ID+"/accept", carol.Token, nil, http.StatusNotFound, "NOT_FOUND")
	wantAPI(t, api, "POST", "/api/v1/friends/requests/"+req.ID+"/accept", alice.Token, nil, http.StatusForbidden, "FORBIDDEN")
	wantAPI(t, api, "POST", "/api/v1/friends/requests/nope/accept", bob.Token, nil, http.StatusNotFound, "NOT_FOUND")
	var got friendRequest
	if code, err := api.Do("POST", "/api/v1/friends/requests/"+req.ID+"/accept", bob.Token, nil, &got); err != nil || code != 200 || got.Status != "accepted" {
		t.Fatalf("bob accepts: %d %+v %v", code, got, err)
	}
	wantAPI(t, api, "POST", "/api/v1/friends/requests/"+req.ID+"/decline", bob.Token, nil, http.StatusConflict, "REQUEST_ANSWERED")
	if ev := expectEvent(t, b, "friend_added"); data(ev).Str("userId") != alice.ID {
		t.Fatalf("bob's friend_added: %v", ev)
	}
	wantAPI(t, api, "POST", "/api/v1/friends/requests", alice.Token, map[string]string{"userId": bob.ID}, http.StatusConflict, "ALREADY_FRIENDS")
	var pres struct{ Items []map[string]any }
	if code, _ := api.Do("GET", "/api/v1/presence?users="+bob.ID, alice.Token, nil, &pres); code != 200 || len(pres.Items) != 1 || pres.Items[0]["online"] != true {
		t.Fatalf("presence of a friend (no conversation shared): %d %+v", code, pres)
	}

	var friends []friend
	if code, err := api.Do("GET", "/api/v1/friends", alice.Token, nil, &friends); err != nil || code != 200 || len(friends) != 1 ||
		friends[0].UserID != bob.ID || friends[0].Username != "bob" || friends[0].DisplayName != "bob" || friends[0].Since == 0 {
		t.Fatalf("alice's friends: %d %+v %v", code, friends, err)
	}
	wantAPI(t, api, "PATCH", "/api/v1/friends/"+bob.ID, alice.Token, map[string]string{"remark": "Bobby"}, http.StatusNoContent, "")
	wantAPI(t, api, "PATCH", "/api/v1/friends/"+carol.ID, alice.Token, map[string]string{"remark": "who"}, http.StatusNotFound, "NOT_FOUND")
	wantAPI(t, api, "PATCH", "/api/v1/friends/"+bob.ID, alice.Token, map[string]string{"remark": "a\x00b"}, http.StatusBadRequest, "BAD_FRAME")
	api.Do("GET", "/api/v1/friends", alice.Token, nil, &friends)
	if len(friends) != 1 || friends[0].Remark != "Bobby" {
		t.Fatalf("remark not kept (or the bad one stored): %+v", friends)
	}
	var bobs []friend
	api.Do("GET", "/api/v1/friends", bob.Token, nil, &bobs)
	if len(bobs) != 1 || bobs[0].UserID != alice.ID || bobs[0].Remark != "" {
		t.Fatalf("bob's friends: %+v (a remark is private)", bobs)
	}

	// Declined: the sender's list shows it; friends unchanged.
	var creq friendRequest
	api.Do("POST", "/api/v1/friends/requests", carol.Token, map[string]string{"userId": bob.ID}, &creq)
	expectEvent(t, b, "friend_request")
	wantAPI(t, api, "POST", "/api/v1/friends/requests/"+creq.ID+"/decline", bob.Token, nil, http.StatusOK, "")
	api.Do("GET", "/api/v1/friends/requests?direction=out", carol.Token, nil, &out)
	if len(out) != 1 || out[0].Status != "declined" {
		t.Fatalf("carol's outgoing requests: %+v", out)
	}

	// Unfriend: both sides' devices hear it.
	wantAPI(t, api, "DELETE", "/api/v1/friends/"+alice.ID, bob.Token, nil, http.StatusNoContent, "")
	wantAPI(t, api, "DELETE", "/api/v1/friends/"+alice.ID, bob.Token, nil, http.StatusNotFound, "NOT_FOUND")
	if ev := expectEvent(t, b, "friend_removed"); data(ev).Str("userId") != alice.ID {
		t.Fatalf("bob's friend_removed: %v", ev)
	}
	api.Do("GET", "/api/v1/friends", alice.Token, nil, &friends)
	if len(friends) != 0 {
		t.Fatalf("alice still lists %+v", friends)
	}

	// Alice was never online: her device gets every event by the normal
	// sync, in order, exactly once.
	a, ok := imtest.Connect(t, s.URL, alice.Token, "a1")
	a.SendJSON(map[string]any{"t": "sync", "id": "s", "after": 0, "limit": 100})
	res := a.Expect("sync_result")
	var kinds []string
	for _, it := range res.Items() {
		if it.T() != "event" {
			t.Fatalf("sync item %v, want only events", it)
		}
		kinds = append(kinds, it.Str("kind"))
	}
	if strings.Join(kinds, ",") != "friend_request,friend_added,friend_removed" || res.Int("inboxSeq") != ok.Int("inboxSeq") {
		t.Fatalf("alice synced %v up to %d (auth_ok %d), want her request, the friendship and its end", kinds, res.Int("inboxSeq"), ok.Int("inboxSeq"))
	}
}

func TestBlockedUserCannotMessageRequestOrSeeYou(t *testing.T) {
	s := start(t, "", gateway.Config{})
	api := imtest.NewAPI(s.URL)
	alice, bob := api.Register(t, "alice"), api.Register(t, "bob")
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	b, _ := imtest.Connect(t, s.URL, bob.Token, "b1")
	send(b, "hello", alice.ID, "hello")
	b.Expect("ack")
	a.Expect("msg")
	before, _ := s.Store.InboxSeq(context.Background(), alice.ID)

	wantAPI(t, api, "PUT", "/api/v1/blocks/"+bob.ID, alice.Token, nil, http.StatusNoContent, "")
	wantAPI(t, api, "PUT", "/api/v1/blocks/"+bob.ID, alice.Token, nil, http.StatusNoContent, "") // again: no change
	wantAPI(t, api, "PUT", "/api/v1/blocks/"+alice.ID, alice.Token, nil, http.StatusBadRequest, "BAD_FRAME")
	wantAPI(t, api, "PUT", "/api/v1/blocks/424242", alice.Token, nil, http.StatusNotFound, "NOT_FOUND")
	var blocks []struct{ UserID, Username string }
	if code, err := api.Do("GET", "/api/v1/blocks", alice.Token, nil, &blocks); err != nil || code != 200 || len(blocks) != 1 || blocks[0].UserID != bob.ID {
		t.Fatalf("alice's blocks: %d %+v %v", code, blocks, err)
	}

	send(b, "after-block", alice.ID, "can you hear me")
	wantErr(t, b.Expect("error"), "FORBIDDEN", "blocked")
	// Alice blocked him: she cannot message him either (unblock first).
	send(a, "to-bob", bob.ID, "hi")
	wantErr(t, a.Expect("error"), "FORBIDDEN", "blocked")
	if n, _ := s.Store.InboxSeq(context.Background(), alice.ID); n != before {
		t.Fatalf("alice's inbox moved from %d to %d: something was stored", before, n)
	}
	// Friend requests either way: 403 BLOCKED, without saying who blocked.
	wantAPI(t, api, "POST", "/api/v1/friends/requests", bob.Token, map[string]string{"userId": alice.ID}, http.StatusForbidden, "BLOCKED")
	wantAPI(t, api, "POST", "/api/v1/friends/requests", alice.Token, map[string]string{"userId": bob.ID}, http.StatusForbidden, "BLOCKED")
	// Typing and presence do not cross the block.
	conv := directConv(alice.ID, bob.ID)
	b.SendJSON(map[string]any{"t": "typing", "conv": conv})
	b.SendJSON(map[string]any{"t": "presence_sub", "id": "p", "users": []string{alice.ID}})
	if f := b.Expect("error"); f.Str("id") != "p" || f.Str("code") != "FORBIDDEN" {
		t.Fatalf("bob's presence_sub of alice: %v, want FORBIDDEN", f)
	}
	a.Quiet(500 * time.Millisecond)

	wantAPI(t, api, "DELETE", "/api/v1/blocks/"+bob.ID, alice.Token, nil, http.StatusNoContent, "")
	api.Do("GET", "/api/v1/blocks", alice.Token, nil, &blocks)
	if len(blocks) != 0 {
		t.Fatalf("blocks after unblocking: %+v", blocks)
	}
	send(b, "after-unblock", alice.ID, "hello again")
	b.Expect("ack")
	if m := a.Expect("msg"); m.Str("body") != "hello again" {
		t.Fatalf("alice got %v", m)
	}
	time.Sleep(2 * time.Second) // the typing gate: one per 2 s per user and conversation
	b.SendJSON(map[string]any{"t": "typing", "conv": conv})
	a.Expect("typing")
}

func TestFriendsOnlyUsersTakeDirectMessagesFromFriendsOnly(t *testing.T) {
	s := start(t, "", gateway.Config{})
	api := imtest.NewAPI(s.URL)
	alice, bob, carol := api.Register(t, "alice"), api.Register(t, "bob"), api.Register(t, "carol")
	var me struct{ ID, DMPolicy string }
	if code, err := api.Do("GET", "/api/v1/users/me", alice.Token, nil, &me); err != nil || code != 200 || me.DMPolicy != "anyone" {
		t.Fatalf("default policy: %d %+v %v", code, me, err)
	}
	wantAPI(t, api, "PATCH", "/api/v1/users/me", alice.Token, map[string]string{"dmPolicy": "nobody"}, http.StatusBadRequest, "BAD_FRAME")
	wantAPI(t, api, "PATCH", "/api/v1/users/me", alice.Token, map[string]string{"displayName": ""}, http.StatusBadRequest, "INVALID_DISPLAY_NAME")
	wantAPI(t, api, "PATCH", "/api/v1/users/me", alice.Token, map[string]any{}, http.StatusBadRequest, "BAD_FRAME")
	if code, err := api.Do("PATCH", "/api/v1/users/me", alice.Token, map[string]string{"dmPolicy": "friends", "displayName": "Alice A."}, &me); err != nil || code != 200 || me.DMPolicy != "friends" {
		t.Fatalf("set policy: %d %+v %v", code, me, err)
	}
	var other struct{ DisplayName string }
	api.Do("GET", "/api/v1/users/"+alice.ID, bob.Token, nil, &other)
	if other.DisplayName != "Alice A." {
		t.Fatalf("display name %q", other.DisplayName)
	}

	var req friendRequest
	api.Do("POST", "/api/v1/friends/requests", bob.Token, map[string]string{"userId": alice.ID}, &req)
	wantAPI(t, api, "POST", "/api/v1/friends/requests/"+req.ID+"/accept", alice.Token, nil, http.StatusOK, "")

	c, _ := imtest.Connect(t, s.URL, carol.Token, "c1")
	send(c, "stranger", alice.ID, "hello stranger")
	wantErr(t, c.Expect("error"), "FORBIDDEN", "not a friend")
	b, _ := imtest.Connect(t, s.URL, bob.Token, "b1")
	send(b, "friend", alice.ID, "hello friend")
	b.Expect("ack", "event")
	// Alice may still write to carol (carol takes anyone).
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	send(a, "to-carol", carol.ID, "hi carol")
	a.Expect("ack", "event", "msg")
	var hist struct{ Items []map[string]any }
	api.Do("GET", "/api/v1/conversations/"+directConv(alice.ID, carol.ID)+"/messages", carol.Token, nil, &hist)
	if len(hist.Items) != 1 || hist.Items[0]["body"] != "hi carol" {
		t.Fatalf("alice-carol history %v: the stranger's message must not be stored", hist.Items)
	}

	// The cluster default applies to users who chose nothing.
	cl := config.DefaultCluster()
	cl.Users.DefaultDMPolicy = "friends"
	s2 := startWith(t, cl)
	api2 := imtest.NewAPI(s2.URL)
	dave, erin := api2.Register(t, "dave"), api2.Register(t, "erin")
	api2.Do("GET", "/api/v1/users/me", dave.Token, nil, &me)
	if me.DMPolicy != "friends" {
		t.Fatalf("cluster default friends: dave's policy %q", me.DMPolicy)
	}
	e, _ := imtest.Connect(t, s2.URL, erin.Token, "e1")
	send(e, "x", dave.ID, "hi")
	wantErr(t, e.Expect("error"), "FORBIDDEN", "not a friend")
	wantAPI(t, api2, "PATCH", "/api/v1/users/me", dave.Token, map[string]string{"dmPolicy": "anyone"}, http.StatusOK, "")
	send(e, "y", dave.ID, "hi")
	e.Expect("ack")
}

func loginDevice(t *testing.T, api *imtest.API, name, password, device string) session {
	t.Helper()
	var out session
	code, err := api.Do("POST", "/api/v1/sessions", "", map[string]string{"username": name, "password": password, "device": device}, &out)
	if err != nil || code != 200 {
		t.Fatalf("login %s: %d %+v %v", name, code, out, err)
	}
	return out
}

type sessionItem struct {
	ID, Device string
	Current    bool
}

func TestLogoutPasswordChangeAndSignOutEndSessionsEverywhere(t *testing.T) {
	s := start(t, "", gateway.Config{})
	api := imtest.NewAPI(s.URL)
	alice := api.Register(t, "alice")
	phone := loginDevice(t, api, "alice", "correct-horse-battery", "phone")
	p, _ := imtest.Connect(t, s.URL, phone.Token, "phone")

	var list []sessionItem
	if code, err := api.Do("GET", "/api/v1/sessions", alice.Token, nil, &list); err != nil || code != 200 || len(list) != 2 {
		t.Fatalf("sessions: %d %+v %v", code, list, err)
	}
	var current int
	for _, x := range list {
		if x.Current {
			current++
		}
	}
	if current != 1 || (list[0].Device != "phone" && list[1].Device != "phone") {
		t.Fatalf("sessions %+v: want one current and the phone", list)
	}

	// A wrong or bad password changes nothing.
	wantAPI(t, api, "POST", "/api/v1/users/me/password", alice.Token, map[string]string{"current": "wrong-password", "new": "new-password-1"}, http.StatusUnauthorized, "BAD_CREDENTIALS")
	wantAPI(t, api, "POST", "/api/v1/users/me/password", alice.Token, map[string]string{"current": "correct-horse-battery", "new": "short"}, http.StatusBadRequest, "INVALID_PASSWORD")
	wantAPI(t, api, "GET", "/api/v1/users/me", phone.Token, nil, http.StatusOK, "")

	start := time.Now()
	wantAPI(t, api, "POST", "/api/v1/users/me/password", alice.Token, map[string]string{"current": "correct-horse-battery", "new": "new-password-1"}, http.StatusNoContent, "")
	frames := p.ExpectClosed(5 * time.Second)
	if len(frames) == 0 || frames[len(frames)-1].T() != "kicked" || frames[len(frames)-1].Str("reason") != "password_changed" || time.Since(start) > 5*time.Second {
		t.Fatalf("the phone got %v in %v, want kicked{password_changed} within 5 s", frames, time.Since(start))
	}
	wantAPI(t, api, "GET", "/api/v1/users/me", phone.Token, nil, http.StatusUnauthorized, "UNAUTHENTICATED")
	wantAPI(t, api, "GET", "/api/v1/users/me", alice.Token, nil, http.StatusOK, "") // the changing session stays
	if code, e, _ := login(api, "alice", "correct-horse-battery"); code != http.StatusUnauthorized || e.Code != "BAD_CREDENTIALS" {
		t.Fatalf("old password: %d %v", code, e)
	}

	// Sign out another session by id.
	tablet := loginDevice(t, api, "alice", "new-password-1", "tablet")
	api.Do("GET", "/api/v1/sessions", alice.Token, nil, &list)
	var tabletID string
	for _, x := range list {
		if x.Device == "tablet" {
			tabletID = x.ID
		}
	}
	if len(list) != 2 || tabletID == "" {
		t.Fatalf("sessions after the password change and a new login: %+v", list)
	}
	tc, _ := imtest.Connect(t, s.URL, tablet.Token, "tablet")
	wantAPI(t, api, "DELETE", "/api/v1/sessions/nope", alice.Token, nil, http.StatusNotFound, "NOT_FOUND")
	wantAPI(t, api, "DELETE", "/api/v1/sessions/"+tabletID, alice.Token, nil, http.StatusNoContent, "")
	if f := tc.ExpectClosed(5 * time.Second); len(f) == 0 || f[len(f)-1].Str("reason") != "session_revoked" {
		t.Fatalf("the tablet got %v, want kicked{session_revoked}", f)
	}
	wantAPI(t, api, "GET", "/api/v1/users/me", tablet.Token, nil, http.StatusUnauthorized, "UNAUTHENTICATED")

	// Logout: the token is dead on REST, refresh and WebSocket.
	a, _ := imtest.Connect(t, s.URL, alice.Token, "laptop")
	wantAPI(t, api, "POST", "/api/v1/sessions/logout", alice.Token, nil, http.StatusNoContent, "")
	if f := a.ExpectClosed(5 * time.Second); len(f) == 0 || f[len(f)-1].Str("reason") != "logged_out" {
		t.Fatalf("the laptop got %v, want kicked{logged_out}", f)
	}
	wantAPI(t, api, "GET", "/api/v1/users/me", alice.Token, nil, http.StatusUnauthorized, "UNAUTHENTICATED")
	wantAPI(t, api, "POST", "/api/v1/sessions/refresh", alice.Token, nil, http.StatusUnauthorized, "UNAUTHENTICATED")
	c := imtest.Dial(t, s.URL)
	c.SendJSON(map[string]any{"t": "auth", "token": alice.Token, "device": "laptop"})
	if f := c.ExpectClosed(5 * time.Second); len(f) != 1 || f[0].Str("code") != "UNAUTHENTICATED" {
		t.Fatalf("auth with a logged-out token: %v", f)
	}
}

func TestDeletedAccountCannotLogInAndItsMessagesStay(t *testing.T) {
	s := start(t, "", gateway.Config{})
	api := imtest.NewAPI(s.URL)
	alice, bob := api.Register(t, "alice"), api.Register(t, "bob")
	var req friendRequest
	api.Do("POST", "/api/v1/friends/requests", alice.Token, map[string]string{"userId": bob.ID}, &req)
	wantAPI(t, api, "POST", "/api/v1/friends/requests/"+req.ID+"/accept", bob.Token, nil, http.StatusOK, "")
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	b, _ := imtest.Connect(t, s.URL, bob.Token, "b1")
	send(a, "last", bob.ID, "goodbye")
	a.Expect("ack", "event")
	b.Expect("msg", "event")

	wantAPI(t, api, "DELETE", "/api/v1/users/me", alice.Token, map[string]string{"password": "wrong-password"}, http.StatusUnauthorized, "BAD_CREDENTIALS")
	wantAPI(t, api, "GET", "/api/v1/users/me", alice.Token, nil, http.StatusOK, "")
	wantAPI(t, api, "DELETE", "/api/v1/users/me", alice.Token, map[string]string{"password": "correct-horse-battery"}, http.StatusNoContent, "")
	if f := a.ExpectClosed(5 * time.Second); len(f) == 0 || f[len(f)-1].Str("reason") != "account_deleted" {
		t.Fatalf("alice's device got %v, want kicked{account_deleted}", f)
	}
	wantAPI(t, api, "GET", "/api/v1/users/me", alice.Token, nil, http.StatusUnauthorized, "UNAUTHENTICATED")
	if code, e, _ := login(api, "alice", "correct-horse-battery"); code != http.StatusUnauthorized || e.Code != "BAD_CREDENTIALS" {
		t.Fatalf("login to a deleted account: %d %v", code, e)
	}
	// The name is never given to anyone else.
	wantAPI(t, api, "POST", "/api/v1/users", "", map[string]string{"username": "alice", "password": "correct-horse-battery"}, http.StatusConflict, "USERNAME_TAKEN")
	var u struct {
		ID, Username, DisplayName string
		Deleted                   bool
	}
	if code, err := api.Do("GET", "/api/v1/users/"+alice.ID, bob.Token, nil, &u); err != nil || code != 200 || !u.Deleted || u.DisplayName != "Deleted user" || u.Username != "" {
		t.Fatalf("the deleted user as seen by bob: %d %+v %v", code, u, err)
	}
	wantAPI(t, api, "GET", "/api/v1/users?username=alice", bob.Token, nil, http.StatusNotFound, "NOT_FOUND")
	// Her messages stay, from her id; the friendship ended on bob's side.
	var hist struct{ Items []map[string]any }
	api.Do("GET", "/api/v1/conversations/"+directConv(alice.ID, bob.ID)+"/messages", bob.Token, nil, &hist)
	if len(hist.Items) != 1 || hist.Items[0]["from"] != alice.ID || hist.Items[0]["body"] != "goodbye" {
		t.Fatalf("bob's history with the deleted user: %v", hist.Items)
	}
	if ev := expectEvent(t, b, "friend_removed"); data(ev).Str("userId") != alice.ID {
		t.Fatalf("bob's friend_removed: %v", ev)
	}
	var friends []friend
	api.Do("GET", "/api/v1/friends", bob.Token, nil, &friends)
	if len(friends) != 0 {
		t.Fatalf("bob still lists %+v", friends)
	}
	send(b, "to-ghost", alice.ID, "are you there")
	wantErr(t, b.Expect("error"), "NOT_FOUND", "does not exist")
}
