package sessionstest

import (
	"fmt"
	"testing"

	"github.com/imkube/imkube/internal/sessions"
)

func presence(t *testing.T, h Harness) sessions.Presence {
	t.Helper()
	p, ok := h.Store.(sessions.Presence)
	if !ok {
		t.Fatalf("%T does not implement sessions.Presence", h.Store)
	}
	return p
}

func watchers(t *testing.T, p sessions.Presence, user string) string {
	t.Helper()
	got, err := p.Watchers(ctx, user)
	if err != nil {
		t.Fatalf("watchers of %s: %v", user, err)
	}
	return fmt.Sprint(got)
}

func presenceWatchers(t *testing.T, h Harness) {
	p := presence(t, h)
	if err := p.Watch(ctx, "gw1", []string{"u1", "u2"}, h.Long); err != nil {
		t.Fatal(err)
	}
	if err := p.Watch(ctx, "gw2", []string{"u1"}, h.Short); err != nil {
		t.Fatal(err)
	}
	if got := watchers(t, p, "u1"); got != "[gw1 gw2]" && got != "[gw2 gw1]" {
		t.Fatalf("watchers of u1: %s, want gw1 and gw2", got)
	}
	if got := watchers(t, p, "nobody"); got != "[]" {
		t.Fatalf("watchers of an unwatched user: %s", got)
	}
	if err := p.Unwatch(ctx, "gw1", []string{"u2"}); err != nil {
		t.Fatal(err)
	}
	if got := watchers(t, p, "u2"); got != "[]" {
		t.Fatalf("watchers of u2 after unwatch: %s", got)
	}
	h.Advance(2 * h.Short)
	if got := watchers(t, p, "u1"); got != "[gw1]" {
		t.Fatalf("watchers of u1 after gw2's entry expired: %s, want [gw1]", got)
	}
}

func presenceLastSeen(t *testing.T, h Harness) {
	p := presence(t, h)
	for _, ms := range []int64{200, 100} {
		if err := p.SetLastSeen(ctx, "u1", ms); err != nil {
			t.Fatal(err)
		}
	}
	got, err := p.LastSeen(ctx, []string{"u1", "u2"})
	if err != nil || len(got) != 1 || got["u1"] != 200 {
		t.Fatalf("last seen: %v %v, want u1 at 200 and u2 absent", got, err)
	}
}
