package auth_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/imkube/imkube/internal/auth"
)

func TestKeyRotationKeepsLiveTokensValid(t *testing.T) {
	oldKey, newKey := strings.Repeat("o", 40), strings.Repeat("n", 40)
	before, err := auth.NewKeys([]string{oldKey}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := before.Issue("42")
	if err != nil {
		t.Fatal(err)
	}
	// Rotation: the new key signs, the old one still verifies.
	during, err := auth.NewKeys([]string{newKey, oldKey}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := during.Verify(tok); err != nil || c.UserID != "42" {
		t.Fatalf("token of the old key after rotation: %+v %v", c, err)
	}
	fresh, _, _ := during.Issue("42")
	// After the old key is dropped, its tokens stop working; new ones work.
	after, _ := auth.NewKeys([]string{newKey}, time.Hour)
	if _, err := after.Verify(tok); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("token of a removed key accepted: %v", err)
	}
	if _, err := after.Verify(fresh); err != nil {
		t.Fatalf("token of the new key: %v", err)
	}
}

func TestTokensAreRejectedWhenTheyShouldBe(t *testing.T) {
	keys, _ := auth.NewKeys([]string{strings.Repeat("k", 40)}, time.Hour)
	good, _, _ := keys.Issue("7")
	expired, _, _ := keys.WithClock(func() time.Time { return time.Now().Add(-2 * time.Hour) }).Issue("7")
	other, _ := auth.NewKeys([]string{strings.Repeat("x", 40)}, time.Hour)
	forged, _, _ := other.Issue("7")
	parts := strings.Split(good, ".")
	tests := []struct {
		name string
		give string
	}{
		{"expired", expired},
		{"signed by another key", forged},
		{"alg none", "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + parts[1] + "."},
		{"tampered payload", parts[0] + ".eyJzdWIiOiIxIn0." + parts[2]},
		{"garbage", "not-a-token"},
		{"empty", ""},
		{"huge", strings.Repeat("a", 5000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := keys.Verify(tt.give); !errors.Is(err, auth.ErrInvalidToken) {
				t.Fatalf("accepted: %v", err)
			}
		})
	}
	if c, err := keys.Verify(good); err != nil || c.UserID != "7" {
		t.Fatalf("good token: %+v %v", c, err)
	}
	if _, err := auth.NewKeys([]string{"short"}, time.Hour); err == nil {
		t.Fatal("a short key was accepted")
	}
}
