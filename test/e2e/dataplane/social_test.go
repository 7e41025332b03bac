//go:build dataplane

package dataplane

import (
	"net/http"
	"testing"
	"time"

	"github.com/imkube/imkube/internal/imtest"
)

// expectKind waits for an event frame of kind, skipping other frames.
func expectKind(t *testing.T, c *imtest.Conn, kind string) imtest.Frame {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		f, err := c.NextErr(time.Until(deadline))
		if err != nil {
			t.Fatalf("no %s event: %v", kind, err)
		}
		if f.T() == "event" && f.Str("kind") == kind && f.Int("inboxSeq") > 0 {
			return f
		}
	}
}

// Friend events are written by the user service and delivered by the
// message service to devices on any gateway; a block is enforced by the
// message service; a password change in the user service closes the other
// session's connection on another gateway within seconds, and that
// gateway refuses its token from then on.
func TestFriendsBlocksAndRevocationsCrossProcesses(t *testing.T) {
	c := newCluster(t, 2)
	gw1, gw2 := c.gateways[0].url(), c.gateways[1].url()
	alice, bob := c.api.Register(t, "alice"), c.api.Register(t, "bob")
	warmUp(t, alice, gw1, gw2)
	a, _ := imtest.Connect(t, gw1, alice.Token, "a1")
	b, _ := imtest.Connect(t, gw2, bob.Token, "b1")

	var req struct{ ID, Status string }
	if code, err := c.api.Do("POST", "/api/v1/friends/requests", alice.Token, map[string]string{"userId": bob.ID}, &req); err != nil || code != http.StatusCreated {
		t.Fatalf("friend request: %d %v", code, err)
	}
	expectKind(t, b, "friend_request")
	api2 := imtest.NewAPI(gw2)
	if code, err := api2.Do("POST", "/api/v1/friends/requests/"+req.ID+"/accept", bob.Token, nil, nil); err != nil || code != http.StatusOK {
		t.Fatalf("accept through gateway 2: %d %v", code, err)
	}
	expectKind(t, a, "friend_added")
	expectKind(t, b, "friend_added")

	if code, err := api2.Do("PUT", "/api/v1/blocks/"+alice.ID, bob.Token, nil, nil); err != nil || code != http.StatusNoContent {
		t.Fatalf("block: %d %v", code, err)
	}
	a.SendJSON(map[string]any{"t": "send", "cmid": "blocked-1", "to": map[string]string{"user": bob.ID}, "kind": "text", "body": "hello?"})
	for {
		f := a.Next()
		if f.T() == "error" {
			if f.Str("code") != "FORBIDDEN" || f.Str("message") != "blocked" {
				t.Fatalf("send to a blocker: %v", f)
			}
			break
		}
		if f.T() == "ack" {
			t.Fatalf("a send to a blocker was stored: %v", f)
		}
	}

	// A second session of alice on gateway 2, signed out by a password
	// change made through gateway 1.
	var phone struct{ Token string }
	if code, err := c.api.Do("POST", "/api/v1/sessions", "", map[string]string{"username": "alice", "password": "correct-horse-battery", "device": "phone"}, &phone); err != nil || code != 200 {
		t.Fatalf("second login: %d %v", code, err)
	}
	p, _ := imtest.Connect(t, gw2, phone.Token, "phone")
	start := time.Now()
	if code, err := c.api.Do("POST", "/api/v1/users/me/password", alice.Token, map[string]string{"current": "correct-horse-battery", "new": "another-horse-9"}, nil); err != nil || code != http.StatusNoContent {
		t.Fatalf("password change: %d %v", code, err)
	}
	frames := p.ExpectClosed(5 * time.Second)
	if len(frames) == 0 || frames[len(frames)-1].T() != "kicked" || frames[len(frames)-1].Str("reason") != "password_changed" {
		t.Fatalf("the phone on gateway 2 got %v within %v, want kicked{password_changed}", frames, time.Since(start))
	}
	t.Logf("the phone was kicked %v after the password change", time.Since(start))
	again := imtest.Dial(t, gw2)
	again.SendJSON(map[string]any{"t": "auth", "token": phone.Token, "device": "phone"})
	if f := again.ExpectClosed(5 * time.Second); len(f) != 1 || f[0].Str("code") != "UNAUTHENTICATED" {
		t.Fatalf("gateway 2 accepted the revoked token: %v", f)
	}
	if code, _ := api2.Do("GET", "/api/v1/users/me", phone.Token, nil, nil); code != http.StatusUnauthorized {
		t.Fatalf("REST through gateway 2 with the revoked token: %d", code)
	}
	// The session that changed the password goes on.
	a.SendJSON(map[string]any{"t": "ping"})
	a.Expect("pong", "event", "msg")
}
