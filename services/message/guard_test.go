package message_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imkube/imkube/api/protocol"
	"github.com/imkube/imkube/internal/bus"
	"github.com/imkube/imkube/internal/messageapi"
	"github.com/imkube/imkube/internal/sessions"
	"github.com/imkube/imkube/internal/snowflake"
	"github.com/imkube/imkube/internal/store"
	"github.com/imkube/imkube/services/message"
	"github.com/imkube/imkube/services/sequence"
)

func TestOpenStoreBreakerLeavesTheMessageInTheBus(t *testing.T) {
	ctx := context.Background()
	db, err := store.OpenSQLite(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, id := range []string{"1", "2"} {
		db.CreateUser(ctx, store.User{ID: id, Username: "u" + id, DisplayName: "u", PasswordHash: "x", CreatedAt: 1})
	}
	seq, err := sequence.NewEmbedded(ctx, sequence.Config{}, sequence.Deps{DB: db.SQL(), Dialect: db.Dialect()})
	if err != nil {
		t.Fatal(err)
	}
	defer seq.Close()
	b := bus.NewInProc(bus.InProcOptions{})
	defer b.Close()
	var open atomic.Bool
	open.Store(true)
	calls := 0
	svc, err := message.New(message.Config{}, message.Deps{Store: db, Sequence: seq, Sessions: sessions.NewMemory(time.Now), Push: b,
		IDs: snowflake.New(1), Log: slog.New(slog.DiscardHandler), StoreGuard: func(fn func() error) error {
			calls++
			if open.Load() {
				return errors.New("dep.mysql: circuit breaker open")
			}
			return fn()
		}})
	if err != nil {
		t.Fatal(err)
	}
	up, _ := json.Marshal(messageapi.Upstream{Gateway: "gw", User: "1", Device: "d", CMID: "c1", Conv: protocol.DirectConv("1", "2"),
		To: protocol.Target{User: "2"}, Kind: "text", Body: "hi"})
	m := bus.Message{Key: protocol.DirectConv("1", "2"), Body: up}
	if err := svc.HandleUpstream(ctx, m); err == nil {
		t.Fatal("handled while the store breaker is open: the bus would drop the message")
	}
	if calls == 0 {
		t.Fatal("the store guard was not consulted")
	}
	if n, _ := db.InboxSeq(ctx, "2"); n != 0 {
		t.Fatalf("stored %d while the breaker was open", n)
	}
	open.Store(false)
	for range 2 { // the redelivery, and a client retry with the same cmid
		if err := svc.HandleUpstream(ctx, m); err != nil {
			t.Fatalf("after the breaker closed: %v", err)
		}
	}
	if items, _, _ := db.Sync(ctx, "2", 0, 10); len(items) != 1 {
		t.Fatalf("stored %d messages, want 1", len(items))
	}
}
