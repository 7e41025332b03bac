package auth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The user service's internal endpoint (GET /internal/v1/revocations) takes
// only the internal token: no token, a wrong one or the token of a key
// rotated out get 401 without touching the source; the previous key's token
// works while the key file still lists it.
func TestRevocationsEndpointRequiresTheInternalToken(t *testing.T) {
	const oldKey, newKey = "old-key-0123456789abcdef0123456789abcdef", "new-key-0123456789abcdef0123456789abcdef"
	mk := func(lines ...string) *Keys {
		k, err := NewKeys(lines, 0)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	oldToken := mk(oldKey).InternalToken()
	rotating, rotated := mk(newKey, oldKey), mk(newKey)
	tests := []struct {
		name   string
		keys   *Keys
		header string
		want   int
	}{
		{"no token", rotating, "", http.StatusUnauthorized},
		{"wrong token", rotating, "Bearer " + strings.Repeat("a", 64), http.StatusUnauthorized},
		{"old token after its key was rotated out", rotated, "Bearer " + oldToken, http.StatusUnauthorized},
		{"old token during the rotation", rotating, "Bearer " + oldToken, http.StatusOK},
		{"current token", rotating, "Bearer " + rotating.InternalToken(), http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &countingSource{}
			req := httptest.NewRequest(http.MethodGet, RevocationsPath+"?since=0", nil)
			if tt.header != "" {
				req.Header.Set("Authorization", tt.header)
			}
			rec := httptest.NewRecorder()
			RevocationsHandler(tt.keys, src).ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d", rec.Code, tt.want)
			}
			if (src.calls > 0) != (tt.want == http.StatusOK) {
				t.Errorf("source read %d times for status %d", src.calls, rec.Code)
			}
		})
	}
}

type countingSource struct{ calls int }

func (s *countingSource) RevokedSince(context.Context, int64) ([]Revoked, error) {
	s.calls++
	return nil, nil
}
