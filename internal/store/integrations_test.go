package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/imkube/imkube/internal/store"
)

func TestOutboxEntriesAreWrittenWithTheMessageAndTrimmedToTheBound(t *testing.T) {
	backends(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		db.SetOutboxHook(func(m store.Message) (store.OutboxEntry, bool) {
			return store.OutboxEntry{Target: store.OutboxEvents, Key: m.Conv, Kind: "message.stored", Payload: m.Body}, m.Body != "no event"
		})
		for i, body := range []string{"one", "no event", "two", "three"} {
			if err := db.SaveMessage(ctx, msg("u:1:2", int64(i+1), "1", "c"+body, body), nil, nil); err != nil {
				t.Fatal(err)
			}
		}
		// A message that is not stored (duplicate cmid) writes no entry.
		if err := db.SaveMessage(ctx, msg("u:1:2", 9, "1", "cone", "one again"), nil, nil); !errors.Is(err, store.ErrDuplicate) {
			t.Fatalf("duplicate: %v", err)
		}
		list, err := db.PendingOutbox(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range list {
			got = append(got, e.Payload)
		}
		if len(got) != 3 || got[0] != "one" || got[1] != "two" || got[2] != "three" {
			t.Fatalf("outbox %v, want one, two, three in order", got)
		}
		if err := db.RetryOutbox(ctx, list[0].ID, 12345); err != nil {
			t.Fatal(err)
		}
		if n, err := db.TrimOutbox(ctx, 2); err != nil || n != 1 {
			t.Fatalf("trim to 2: %d %v", n, err)
		}
		list, _ = db.PendingOutbox(ctx, 10)
		if len(list) != 2 || list[0].Payload != "two" {
			t.Fatalf("after trim: %+v, want the newest two", list)
		}
	})
}

func TestOneReplicaHoldsTheOutboxLease(t *testing.T) {
	backends(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if ok, err := db.TakeLease(ctx, "l", "a", time.Minute); !ok || err != nil {
			t.Fatalf("first taker: %v %v", ok, err)
		}
		if ok, err := db.TakeLease(ctx, "l", "b", time.Minute); ok || err != nil {
			t.Fatalf("second taker while held: %v %v", ok, err)
		}
		if ok, _ := db.TakeLease(ctx, "l", "a", time.Minute); !ok {
			t.Fatal("the holder cannot renew")
		}
		if err := db.ReleaseLease(ctx, "l", "a"); err != nil {
			t.Fatal(err)
		}
		if ok, _ := db.TakeLease(ctx, "l", "b", time.Minute); !ok {
			t.Fatal("a released lease is not taken over")
		}
	})
}

func TestPushTokensAreBoundedPerUser(t *testing.T) {
	backends(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		for _, d := range []string{"a", "b", "a"} { // a again: replaced, not counted twice
			if err := db.SetPushToken(ctx, "u", store.PushToken{Device: d, Provider: "fcm", Token: "t-" + d}, 2); err != nil {
				t.Fatalf("device %s: %v", d, err)
			}
		}
		if err := db.SetPushToken(ctx, "u", store.PushToken{Device: "c", Provider: "fcm", Token: "t"}, 2); !errors.Is(err, store.ErrTooMany) {
			t.Fatalf("third device: %v, want ErrTooMany", err)
		}
		got, err := db.PushTokens(ctx, []string{"u", "nobody"})
		if err != nil || len(got["u"]) != 2 || len(got["nobody"]) != 0 {
			t.Fatalf("tokens: %v %v", got, err)
		}
		if err := db.DeletePushToken(ctx, "u", "a"); err != nil {
			t.Fatal(err)
		}
		if err := db.DeletePushToken(ctx, "u", "a"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("second delete: %v", err)
		}
	})
}
