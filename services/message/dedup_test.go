package message_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
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

// meetingAllocator holds each of the first two allocations until both have
// arrived (or a while has passed): the two sends of a race are then both
// past whatever check comes before the allocation.
type meetingAllocator struct {
	sequence.Allocator
	mu      sync.Mutex
	arrived int
	met     chan struct{}
}

func (m *meetingAllocator) Allocate(ctx context.Context, reqs []sequence.Request) ([]sequence.Range, error) {
	m.mu.Lock()
	m.arrived++
	n := m.arrived
	if n == 2 {
		close(m.met)
	}
	m.mu.Unlock()
	if n <= 2 {
		select {
		case <-m.met:
		case <-time.After(300 * time.Millisecond):
		}
	}
	return m.Allocator.Allocate(ctx, reqs)
}

func TestSameCMIDToTwoConversationsAtOnceLeavesNoGaps(t *testing.T) {
	ctx := context.Background()
	db, err := store.OpenSQLite(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, id := range []string{"1", "2", "3"} {
		db.CreateUser(ctx, store.User{ID: id, Username: "u" + id, DisplayName: "u", PasswordHash: "x", CreatedAt: 1})
	}
	seq, err := sequence.NewEmbedded(ctx, sequence.Config{}, sequence.Deps{DB: db.SQL(), Dialect: db.Dialect()})
	if err != nil {
		t.Fatal(err)
	}
	defer seq.Close()
	b := bus.NewInProc(bus.InProcOptions{})
	defer b.Close()
	svc, err := message.New(message.Config{}, message.Deps{Store: db, Sequence: &meetingAllocator{Allocator: seq, met: make(chan struct{})},
		Sessions: sessions.NewMemory(time.Now), Push: b, IDs: snowflake.New(1), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	upstream := func(cmid, to string) bus.Message {
		conv := protocol.DirectConv("1", to)
		body, _ := json.Marshal(messageapi.Upstream{Gateway: "gw", User: "1", Device: "d", CMID: cmid, Conv: conv,
			To: protocol.Target{User: to}, Kind: "text", Body: cmid})
		return bus.Message{Key: conv, Body: body}
	}

	var wg sync.WaitGroup
	for _, to := range []string{"2", "3"} {
		wg.Go(func() {
			if err := svc.HandleUpstream(ctx, upstream("same", to)); err != nil {
				t.Errorf("send to %s: %v", to, err)
			}
		})
	}
	wg.Wait()
	for _, to := range []string{"2", "3"} {
		if err := svc.HandleUpstream(ctx, upstream("next-"+to, to)); err != nil {
			t.Fatal(err)
		}
	}

	stored := 0
	for _, to := range []string{"2", "3"} {
		msgs, _, err := db.Pull(ctx, protocol.DirectConv("1", to), 1, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range msgs {
			if m.Seq != int64(i+1) {
				t.Fatalf("conversation with %s: seqs %v, want 1, 2, ... without gaps", to, seqs(msgs))
			}
			if m.CMID == "same" {
				stored++
			}
		}
	}
	if stored != 1 {
		t.Fatalf("the shared cmid was stored %d times, want once", stored)
	}
	for _, u := range []string{"1", "2", "3"} {
		items, _, err := db.Sync(ctx, u, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		for i, it := range items {
			if it.InboxSeq != int64(i+1) {
				t.Fatalf("inbox of %s has a gap at item %d (inboxSeq %d)", u, i, it.InboxSeq)
			}
		}
	}
}

func seqs(msgs []store.Message) []int64 {
	out := make([]int64, len(msgs))
	for i, m := range msgs {
		out[i] = m.Seq
	}
	return out
}
