package messageapi_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/imkube/imkube/api/protocol"
	"github.com/imkube/imkube/internal/messageapi"
)

type internalToken string

func (t internalToken) VerifyInternal(tok string) bool { return tok == string(t) }

// ghostBackend knows no users.
type ghostBackend struct{}

func (ghostBackend) State(context.Context, string) (int64, []protocol.ConvState, error) {
	return 0, nil, messageapi.ErrUnauthenticated
}
func (ghostBackend) Sync(context.Context, string, int64, int, int) (*protocol.SyncResult, error) {
	return nil, messageapi.ErrForbidden
}
func (ghostBackend) Pull(context.Context, string, string, int64, int64, int, int) (*protocol.PullResult, error) {
	return nil, messageapi.ErrForbidden
}
func (ghostBackend) PullBefore(context.Context, string, string, int64, int, int) (*protocol.PullResult, error) {
	return nil, messageapi.ErrForbidden
}
func (ghostBackend) Read(context.Context, string, string, string, int64) error {
	return messageapi.ErrForbidden
}
func (ghostBackend) Delivered(context.Context, string, string, int64) error {
	return messageapi.ErrForbidden
}
func (ghostBackend) Typing(context.Context, string, string) error { return messageapi.ErrForbidden }
func (ghostBackend) Presence(context.Context, string, []string) ([]protocol.Presence, error) {
	return nil, messageapi.ErrForbidden
}

func TestErrorsCrossTheInternalAPI(t *testing.T) {
	mux := http.NewServeMux()
	messageapi.ServeInternal(mux, internalToken("secret"), ghostBackend{})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := messageapi.NewClient(srv.URL, "secret", nil)
	ctx := context.Background()
	if _, _, err := c.State(ctx, "ghost"); !errors.Is(err, messageapi.ErrUnauthenticated) {
		t.Fatalf("State of a user without account: %v, want ErrUnauthenticated", err)
	}
	if _, err := c.Sync(ctx, "ghost", 0, 10, 1024); !errors.Is(err, messageapi.ErrForbidden) {
		t.Fatalf("Sync: %v, want ErrForbidden", err)
	}
	if _, _, err := messageapi.NewClient(srv.URL, "wrong", nil).State(ctx, "u"); errors.Is(err, messageapi.ErrUnauthenticated) {
		t.Fatal("a wrong internal token reads as a user without account")
	}
}
