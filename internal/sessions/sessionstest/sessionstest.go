// Package sessionstest is the conformance suite of the session stores: the
// in-memory and the Redis adapter run the same Run.
package sessionstest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imkube/imkube/internal/sessions"
)

// Harness is one fresh, isolated store plus the means to age and wipe it.
type Harness struct {
	Store sessions.Store
	// Advance lets d pass for the store (a fake clock, or a real sleep).
	Advance func(d time.Duration)
	// Wipe loses all registry data, like a Redis restart without persistence.
	Wipe func()
	// Short is a TTL that Advance(2*Short) reliably outlives; Long one that
	// outlives the whole test.
	Short, Long time.Duration
}

// Run runs the suite; newHarness returns a fresh store per subtest.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	tests := []struct {
		name string
		run  func(t *testing.T, h Harness)
	}{
		{"lookup returns every device of each registered user", lookupDevices},
		{"lookup of unknown users returns nothing", lookupUnknown},
		{"register replaces the entry of the same device", registerReplaces},
		{"unregister removes only the entry of its gateway", unregisterOwnGateway},
		{"entries expire after their ttl", entriesExpire},
		{"heartbeat refreshes the sessions of its gateway", heartbeatRefreshes},
		{"sessions on a gateway whose liveness expired are not returned", gatewayLiveness},
		{"heartbeat restores the registry after data loss", heartbeatAfterWipe},
		{"lookup serves many users at once", lookupMany},
		{"invalid sessions are refused", invalid},
		{"presence watchers are per gateway and expire", presenceWatchers},
		{"last seen never moves back", presenceLastSeen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, newHarness(t)) })
	}
}

var ctx = context.Background()

func sess(user, device, gw string) sessions.Session {
	return sessions.Session{User: user, Device: device, Gateway: gw}
}

func mustRegister(t *testing.T, h Harness, ttl time.Duration, list ...sessions.Session) {
	t.Helper()
	for _, s := range list {
		if err := h.Store.Register(ctx, s, ttl); err != nil {
			t.Fatalf("Register(%v): %v", s, err)
		}
	}
}

func lookup(t *testing.T, h Harness, users ...string) map[string][]sessions.Session {
	t.Helper()
	got, err := h.Store.Lookup(ctx, users)
	if err != nil {
		t.Fatalf("Lookup(%v): %v", users, err)
	}
	return got
}

func want(t *testing.T, got, want map[string][]sessions.Session) {
	t.Helper()
	if want == nil {
		want = map[string][]sessions.Session{}
	}
	if got == nil {
		got = map[string][]sessions.Session{}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Lookup (-want +got):\n%s", diff)
	}
}

func lookupDevices(t *testing.T, h Harness) {
	mustRegister(t, h, h.Long, sess("alice", "phone", "gw-1"), sess("alice", "web", "gw-2"), sess("bob", "phone", "gw-1"))
	want(t, lookup(t, h, "alice", "bob", "carol"), map[string][]sessions.Session{
		"alice": {sess("alice", "phone", "gw-1"), sess("alice", "web", "gw-2")},
		"bob":   {sess("bob", "phone", "gw-1")},
	})
}

func lookupUnknown(t *testing.T, h Harness) {
	want(t, lookup(t, h, "nobody", "nobody-else"), nil)
	want(t, lookup(t, h), nil)
}

func registerReplaces(t *testing.T, h Harness) {
	mustRegister(t, h, h.Long, sess("alice", "phone", "gw-1"), sess("alice", "phone", "gw-2"))
	want(t, lookup(t, h, "alice"), map[string][]sessions.Session{"alice": {sess("alice", "phone", "gw-2")}})
}

func unregisterOwnGateway(t *testing.T, h Harness) {
	mustRegister(t, h, h.Long, sess("alice", "phone", "gw-1"), sess("alice", "phone", "gw-2"), sess("alice", "web", "gw-1"))
	// A late unregister from the gateway the phone left must not remove its new entry.
	if err := h.Store.Unregister(ctx, sess("alice", "phone", "gw-1")); err != nil {
		t.Fatal(err)
	}
	want(t, lookup(t, h, "alice"), map[string][]sessions.Session{
		"alice": {sess("alice", "phone", "gw-2"), sess("alice", "web", "gw-1")},
	})
	for _, s := range []sessions.Session{sess("alice", "phone", "gw-2"), sess("alice", "web", "gw-1")} {
		if err := h.Store.Unregister(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	want(t, lookup(t, h, "alice"), nil)
}

func entriesExpire(t *testing.T, h Harness) {
	mustRegister(t, h, h.Long, sess("alice", "phone", "gw-1"))
	mustRegister(t, h, h.Short, sess("alice", "web", "gw-1"), sess("bob", "phone", "gw-1"))
	h.Advance(2 * h.Short)
	want(t, lookup(t, h, "alice", "bob"), map[string][]sessions.Session{"alice": {sess("alice", "phone", "gw-1")}})
}

func heartbeatRefreshes(t *testing.T, h Harness) {
	live := []sessions.Session{sess("alice", "phone", "gw-1"), sess("bob", "phone", "gw-1")}
	mustRegister(t, h, h.Short, live...)
	if err := h.Store.Heartbeat(ctx, "gw-1", live, h.Long); err != nil {
		t.Fatal(err)
	}
	h.Advance(2 * h.Short)
	want(t, lookup(t, h, "alice", "bob"), map[string][]sessions.Session{
		"alice": {sess("alice", "phone", "gw-1")},
		"bob":   {sess("bob", "phone", "gw-1")},
	})
}

func gatewayLiveness(t *testing.T, h Harness) {
	mustRegister(t, h, h.Long, sess("alice", "phone", "gw-dead"), sess("alice", "web", "gw-alive"))
	// gw-dead's last heartbeat says "alive for Short", then it stops.
	if err := h.Store.Heartbeat(ctx, "gw-dead", []sessions.Session{sess("alice", "phone", "gw-dead")}, h.Short); err != nil {
		t.Fatal(err)
	}
	if err := h.Store.Heartbeat(ctx, "gw-alive", []sessions.Session{sess("alice", "web", "gw-alive")}, h.Long); err != nil {
		t.Fatal(err)
	}
	h.Advance(2 * h.Short)
	want(t, lookup(t, h, "alice"), map[string][]sessions.Session{"alice": {sess("alice", "web", "gw-alive")}})
}

func heartbeatAfterWipe(t *testing.T, h Harness) {
	live := []sessions.Session{sess("alice", "phone", "gw-1"), sess("alice", "web", "gw-1")}
	mustRegister(t, h, h.Long, live...)
	h.Wipe()
	want(t, lookup(t, h, "alice"), nil)
	if err := h.Store.Heartbeat(ctx, "gw-1", live, h.Long); err != nil {
		t.Fatal(err)
	}
	want(t, lookup(t, h, "alice"), map[string][]sessions.Session{"alice": live})
}

func lookupMany(t *testing.T, h Harness) {
	const n = 500
	var live []sessions.Session
	users := make([]string, 0, n+1)
	wantAll := map[string][]sessions.Session{}
	for i := range n {
		u := fmt.Sprintf("user-%03d", i)
		s := sess(u, "phone", fmt.Sprintf("gw-%d", i%3))
		live = append(live, s)
		users = append(users, u)
		if i%2 == 0 {
			wantAll[u] = []sessions.Session{s}
		}
	}
	users = append(users, "absent")
	mustRegister(t, h, h.Long, live...)
	for i := 1; i < n; i += 2 {
		if err := h.Store.Unregister(ctx, live[i]); err != nil {
			t.Fatal(err)
		}
	}
	want(t, lookup(t, h, users...), wantAll)
}

func invalid(t *testing.T, h Harness) {
	tests := []struct {
		name string
		give sessions.Session
	}{
		{"without user", sess("", "phone", "gw-1")},
		{"without device", sess("alice", "", "gw-1")},
		{"without gateway", sess("alice", "phone", "")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := h.Store.Register(ctx, tt.give, h.Long); err == nil {
				t.Errorf("Register(%v) succeeded, want an error", tt.give)
			}
		})
	}
	if err := h.Store.Register(ctx, sess("alice", "phone", "gw-1"), 0); err == nil {
		t.Errorf("Register with ttl 0 succeeded, want an error")
	}
}
