package messageapi_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/imkube/imkube/api/protocol"
	"github.com/imkube/imkube/internal/auth"
	"github.com/imkube/imkube/internal/messageapi"
)

// recordingBackend counts the calls that reached it.
type recordingBackend struct{ calls int }

func (b *recordingBackend) State(context.Context, string) (int64, []protocol.ConvState, error) {
	b.calls++
	return 0, nil, nil
}
func (b *recordingBackend) Sync(context.Context, string, int64, int, int) (*protocol.SyncResult, error) {
	b.calls++
	return &protocol.SyncResult{}, nil
}
func (b *recordingBackend) Pull(context.Context, string, string, int64, int64, int, int) (*protocol.PullResult, error) {
	b.calls++
	return &protocol.PullResult{}, nil
}
func (b *recordingBackend) Read(context.Context, string, string, string, int64) error {
	b.calls++
	return nil
}
func (b *recordingBackend) PullBefore(context.Context, string, string, int64, int, int) (*protocol.PullResult, error) {
	b.calls++
	return &protocol.PullResult{}, nil
}
func (b *recordingBackend) Delivered(context.Context, string, string, int64) error {
	b.calls++
	return nil
}
func (b *recordingBackend) Typing(context.Context, string, string) error {
	b.calls++
	return nil
}
func (b *recordingBackend) Presence(context.Context, string, []string) ([]protocol.Presence, error) {
	b.calls++
	return nil, nil
}

func mustKeys(t *testing.T, lines ...string) *auth.Keys {
	t.Helper()
	k, err := auth.NewKeys(lines, 0)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Every internal endpoint of the message service (they trust the user id
// in the body) takes only the internal token of the cluster's JWT keys: no
// token, a wrong one or the token of a key rotated out get 401 and reach
// nothing; the previous key's token works while the key file still lists it.
func TestEveryInternalEndpointRequiresTheInternalToken(t *testing.T) {
	const oldKey, newKey = "old-key-0123456789abcdef0123456789abcdef", "new-key-0123456789abcdef0123456789abcdef"
	oldToken := mustKeys(t, oldKey).InternalToken()
	rotating, rotated := mustKeys(t, newKey, oldKey), mustKeys(t, newKey)
	endpoints := map[string]string{ // path -> a valid body
		"/internal/v1/state":       `{"user":"u1"}`,
		"/internal/v1/sync":        `{"user":"u1","after":0,"limit":10}`,
		"/internal/v1/pull":        `{"user":"u1","conv":"u:u1:u2","from":1,"limit":10}`,
		"/internal/v1/read":        `{"user":"u1","conv":"u:u1:u2","seq":1}`,
		"/internal/v1/pull_before": `{"user":"u1","conv":"u:u1:u2","before":10,"limit":10}`,
		// signals (registered in signals.go)
		"/internal/v1/delivered": `{"user":"u1","conv":"u:u1:u2","seq":1}`,
		"/internal/v1/typing":    `{"user":"u1","conv":"u:u1:u2"}`,
		"/internal/v1/presence":  `{"user":"u1","users":["u2"]}`,
	}
	var src []byte
	for _, f := range []string{"http.go", "signals.go"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src = append(src, b...)
	}
	registered := regexp.MustCompile(`handle\("(/internal/[^"]+)"`).FindAllStringSubmatch(string(src), -1)
	if len(registered) < len(endpoints) {
		t.Fatalf("found %d handle(...) registrations in http.go and signals.go, want at least %d: the pattern is stale", len(registered), len(endpoints))
	}
	for _, m := range registered {
		if _, ok := endpoints[m[1]]; !ok {
			t.Errorf("ServeInternal registers %s, which this test does not cover: add it", m[1])
		}
	}
	tests := []struct {
		name   string
		keys   *auth.Keys
		header string
		want   int
	}{
		{"no token", rotating, "", http.StatusUnauthorized},
		{"wrong token", rotating, "Bearer " + strings.Repeat("f", 64), http.StatusUnauthorized},
		{"old token after its key was rotated out", rotated, "Bearer " + oldToken, http.StatusUnauthorized},
		{"old token during the rotation", rotating, "Bearer " + oldToken, http.StatusOK},
		{"current token", rotating, "Bearer " + rotating.InternalToken(), http.StatusOK},
	}
	for ep, body := range endpoints {
		for _, tt := range tests {
			t.Run(ep+"/"+tt.name, func(t *testing.T) {
				b := &recordingBackend{}
				mux := http.NewServeMux()
				messageapi.ServeInternal(mux, tt.keys, b)
				req := httptest.NewRequest(http.MethodPost, ep, strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				if tt.header != "" {
					req.Header.Set("Authorization", tt.header)
				}
				rec := httptest.NewRecorder()
				mux.ServeHTTP(rec, req)
				if rec.Code != tt.want {
					t.Fatalf("status %d, want %d: %s", rec.Code, tt.want, rec.Body)
				}
				if want := map[bool]int{true: 1, false: 0}[tt.want == http.StatusOK]; b.calls != want {
					t.Errorf("backend called %d times, want %d", b.calls, want)
				}
			})
		}
	}
}
