package auth

import (
	"context"
	"strings"
	"testing"
	"time"
)

type fakeRevocations struct{ list []Revoked }

func (f *fakeRevocations) RevokedSince(_ context.Context, since int64) ([]Revoked, error) {
	var out []Revoked
	for _, r := range f.list {
		if r.RevokedAt >= since {
			out = append(out, r)
		}
	}
	return out, nil
}

func TestRefreshKeepsTheSessionAndRevokedTokensAreRefused(t *testing.T) {
	k, err := NewKeys([]string{strings.Repeat("k", 40)}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	src := &fakeRevocations{}
	r := NewRevocations(src, time.Hour, nil)
	k.SetRevocations(r)
	tok, _, _ := k.Issue("u1")
	c, err := k.Verify(tok)
	if err != nil || c.SessionID == "" || c.TokenID == "" || c.SessionStart.IsZero() {
		t.Fatalf("claims %+v %v", c, err)
	}
	end := time.Now().Add(10 * time.Minute)
	next, exp, err := k.Refresh(c, end)
	if err != nil || exp.After(end) {
		t.Fatalf("refresh: exp %v after the session end %v (%v)", exp, end, err)
	}
	n, err := k.Verify(next)
	if err != nil || n.SessionID != c.SessionID || n.TokenID == c.TokenID || !n.SessionStart.Equal(c.SessionStart) {
		t.Fatalf("refreshed claims %+v vs %+v (%v)", n, c, err)
	}
	// Revoked in another process: refused after the next poll.
	src.list = append(src.list, Revoked{TokenID: c.TokenID, ExpiresAt: c.ExpiresAt.UnixMilli(), RevokedAt: time.Now().UnixMilli()})
	if _, err := k.Verify(tok); err != nil {
		t.Fatal("refused before the revocation was polled")
	}
	if err := r.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Verify(tok); err == nil {
		t.Fatal("a revoked token was accepted")
	}
	if _, err := k.Verify(next); err != nil {
		t.Fatalf("the new token was refused: %v", err)
	}
}

func TestUserRevocationEndsTheUsersEarlierSessionsOnly(t *testing.T) {
	base := time.Unix(1_800_000_000, 0)
	now := base
	k, err := NewKeys([]string{strings.Repeat("k", 40)}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	k = k.WithClock(func() time.Time { return now })
	src := &fakeRevocations{}
	r := NewRevocations(src, time.Hour, nil)
	r.now = func() time.Time { return now }
	k.SetRevocations(r)
	old, _, _ := k.Issue("u1")
	other, _, _ := k.Issue("u2")
	now = base.Add(2 * time.Second)
	src.list = append(src.list, Revoked{TokenID: UserRevocationID("u1", now), ExpiresAt: now.Add(24 * time.Hour).UnixMilli(), RevokedAt: now.UnixMilli()})
	if err := r.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	now = base.Add(3 * time.Second)
	fresh, _, _ := k.Issue("u1")
	if _, err := k.Verify(old); err == nil {
		t.Error("a token of a session started before the logout is accepted")
	}
	if _, err := k.Verify(fresh); err != nil {
		t.Errorf("a token of a session started after the logout is refused: %v", err)
	}
	if _, err := k.Verify(other); err != nil {
		t.Errorf("another user's token is refused: %v", err)
	}
}
