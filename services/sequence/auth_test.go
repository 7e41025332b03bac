package sequence

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/imkube/imkube/internal/auth"
)

const (
	oldKey = "old-key-0123456789abcdef0123456789abcdef"
	newKey = "new-key-0123456789abcdef0123456789abcdef"
)

func keys(t *testing.T, lines ...string) *auth.Keys {
	t.Helper()
	k, err := auth.NewKeys(lines, 0)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// POST /v1/seq, the sequence service's one internal endpoint, takes only the
// internal token of the cluster's JWT keys: during a rotation (key file
// "new\nold") the previous key's token still works; once the old key is
// removed its token is refused. A refused call allocates nothing.
func TestAllocateRequiresTheInternalToken(t *testing.T) {
	rotating := keys(t, newKey, oldKey) // new signs, both verify
	rotated := keys(t, newKey)          // old key removed
	oldToken := keys(t, oldKey).InternalToken()
	tests := []struct {
		name   string
		keys   *auth.Keys
		header string // Authorization
		want   int
	}{
		{name: "no token is refused", keys: rotating, header: "", want: http.StatusUnauthorized},
		{name: "a wrong token is refused", keys: rotating, header: "Bearer " + strings.Repeat("0", 64), want: http.StatusUnauthorized},
		{name: "the token without the Bearer scheme is refused", keys: rotating, header: rotating.InternalToken(), want: http.StatusUnauthorized},
		{name: "a user JWT is refused", keys: rotating, header: "Bearer " + userJWT(t, rotating), want: http.StatusUnauthorized},
		{name: "the old token after its key was rotated out is refused", keys: rotated, header: "Bearer " + oldToken, want: http.StatusUnauthorized},
		{name: "the old token during the rotation is accepted", keys: rotating, header: "Bearer " + oldToken, want: http.StatusOK},
		{name: "the current token is accepted", keys: rotating, header: "Bearer " + rotating.InternalToken(), want: http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &fakeAllocator{}
			h := NewHandler(a, tt.keys, nil, nil)
			req := httptest.NewRequest(http.MethodPost, "/v1/seq", strings.NewReader(`[{"key":"c:1","count":3}]`))
			if tt.header != "" {
				req.Header.Set("Authorization", tt.header)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.want, rec.Body)
			}
			allocated := a.last["c:1"]
			if tt.want == http.StatusUnauthorized {
				if allocated != 0 {
					t.Errorf("a refused call advanced c:1 to %d", allocated)
				}
				if !strings.Contains(rec.Body.String(), CodeUnauthenticated) {
					t.Errorf("body %s lacks %s", rec.Body, CodeUnauthenticated)
				}
			} else if allocated != 3 {
				t.Errorf("c:1 at %d after an accepted call, want 3", allocated)
			}
		})
	}
}

func userJWT(t *testing.T, k *auth.Keys) string {
	t.Helper()
	tok, _, err := k.Issue("u1")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// A nil verifier refuses everything (fail closed), never allows everything.
func TestHandlerWithoutVerifierRefusesEveryCall(t *testing.T) {
	a := &fakeAllocator{}
	req := httptest.NewRequest(http.MethodPost, "/v1/seq", strings.NewReader(`[{"key":"c:1","count":1}]`))
	req.Header.Set("Authorization", "Bearer ")
	rec := httptest.NewRecorder()
	NewHandler(a, nil, nil, nil).ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized || len(a.last) != 0 {
		t.Fatalf("status %d, allocated %v; want 401 and nothing", rec.Code, a.last)
	}
}

// The client sends its token; a service holding other keys refuses it, and
// the client says so (retryable: a rotation may be rolling out).
func TestClientSendsTheInternalToken(t *testing.T) {
	srv := httptest.NewServer(NewHandler(&fakeAllocator{}, keys(t, newKey), nil, nil))
	defer srv.Close()
	good := newTestClient(t, ClientConfig{URL: srv.URL, Token: keys(t, newKey, oldKey).InternalToken()})
	if got, err := good.Allocate(context.Background(), []Request{{Key: "c:1", Count: 1}}); err != nil || got[0].First != 1 {
		t.Fatalf("with the token: %+v, %v", got, err)
	}
	stale := newTestClient(t, ClientConfig{URL: srv.URL, Token: keys(t, oldKey).InternalToken()})
	_, err := stale.Allocate(context.Background(), []Request{{Key: "c:1", Count: 1}})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "refused the internal token") {
		t.Fatalf("with a rotated-out token: err = %v, want ErrUnavailable naming the refused token", err)
	}
}
