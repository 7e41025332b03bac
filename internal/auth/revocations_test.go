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

func TestARevokedSessionRefusesEveryTokenOfItWithItsReason(t *testing.T) {
	k, err := NewKeys([]string{strings.Repeat("k", 40)}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	src := &fakeRevocations{}
	r := NewRevocations(src, time.Hour, nil)
	k.SetRevocations(r)
	tok, _, _ := k.Issue("u1")
	c, _ := k.Verify(tok)
	next, _, _ := k.Refresh(c, time.Now().Add(time.Hour))
	other, _, _ := k.Issue("u1")
	gen := k.RevocationGeneration()

	// Revoked elsewhere: seen at the next poll, with the reason.
	src.list = append(src.list, Revoked{TokenID: SessionKey(c.SessionID), ExpiresAt: time.Now().Add(time.Hour).UnixMilli(), RevokedAt: time.Now().UnixMilli(), Reason: "password_changed"})
	if err := r.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if k.RevocationGeneration() == gen {
		t.Fatal("the generation did not change with a new revocation")
	}
	for _, tk := range []string{tok, next} {
		if _, err := k.Verify(tk); err == nil {
			t.Fatal("a token of the revoked session verifies")
		}
	}
	if why, ok := k.RevokedReason(c); !ok || why != "password_changed" {
		t.Fatalf("reason %q %v", why, ok)
	}
	if _, err := k.Verify(other); err != nil {
		t.Fatalf("another session of the same user: %v", err)
	}
	gen = k.RevocationGeneration()
	if err := r.Sync(context.Background()); err != nil || k.RevocationGeneration() != gen {
		t.Fatalf("a poll with nothing new changed the generation (%v)", err)
	}
}
