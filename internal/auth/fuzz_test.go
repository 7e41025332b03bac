package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// The fuzz keys and clock are fixed so the checked-in seed tokens (issued
// with them) stay valid.
const (
	fuzzKey1 = "imkube-fuzz-signing-key-one-0123456789abcdef"
	fuzzKey2 = "imkube-fuzz-signing-key-two-0123456789abcdef"
	// attackerKey signs forgeries; it is not one of the verifier's keys.
	attackerKey = "imkube-fuzz-attacker-key-0123456789abcdef"
)

var fuzzNow = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func fuzzKeys(t testing.TB) *Keys {
	k, err := NewKeys([]string{fuzzKey1, fuzzKey2}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return k.WithClock(func() time.Time { return fuzzNow })
}

func hs256(key, signingInput string) []byte {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(signingInput))
	return m.Sum(nil)
}

// FuzzVerify checks that Verify never panics and accepts a token only if
// one of the verifier's keys made its HS256 signature, with a subject and an
// expiry in the future; a token re-signed with a key the verifier does not
// hold is always refused.
func FuzzVerify(f *testing.F) {
	keys := fuzzKeys(f)
	tok, _, err := keys.Issue("u1")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok)
	byKID := map[string]string{KeyID([]byte(fuzzKey1)): fuzzKey1, KeyID([]byte(fuzzKey2)): fuzzKey2}

	f.Fuzz(func(t *testing.T, token string) {
		claims, err := keys.Verify(token)
		parts := strings.Split(token, ".")
		if err == nil {
			if len(parts) != 3 {
				t.Fatalf("accepted a token of %d segments", len(parts))
			}
			hb, herr := base64.RawURLEncoding.DecodeString(parts[0])
			var hdr struct {
				Alg string `json:"alg"`
				KID string `json:"kid"`
			}
			if herr != nil || json.Unmarshal(hb, &hdr) != nil {
				t.Fatalf("accepted a token whose header does not decode: %q", parts[0])
			}
			key, ok := byKID[hdr.KID]
			if hdr.Alg != "HS256" || !ok {
				t.Fatalf("accepted alg %q kid %q", hdr.Alg, hdr.KID)
			}
			sig, serr := base64.RawURLEncoding.DecodeString(parts[2])
			if serr != nil || !hmac.Equal(sig, hs256(key, parts[0]+"."+parts[1])) {
				t.Fatalf("accepted a token not signed by the key of kid %q", hdr.KID)
			}
			if claims.UserID == "" || !claims.ExpiresAt.After(fuzzNow) {
				t.Fatalf("accepted claims %+v", claims)
			}
		} else if err != ErrInvalidToken {
			t.Fatalf("Verify error %v, want ErrInvalidToken (nothing else may leak)", err)
		}
		if len(parts) == 3 {
			forged := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(hs256(attackerKey, parts[0]+"."+parts[1]))
			if _, err := keys.Verify(forged); err == nil {
				t.Fatalf("accepted a token signed with a foreign key: %q", forged)
			}
		}
	})
}
