package store_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/imkube/imkube/internal/store"
)

func TestReadRecordsReadCountsAndSharedConversations(t *testing.T) {
	backends(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		// A group of four; "d" joins after message 1.
		if err := db.CreateGroup(ctx, store.Group{ID: "g1", Name: "team", Owner: "a", CreatedAt: 1},
			[]store.Member{{UserID: "a", Role: store.RoleOwner}, {UserID: "b", Role: store.RoleMember}, {UserID: "c", Role: store.RoleMember}}); err != nil {
			t.Fatal(err)
		}
		db.SaveMessage(ctx, msg("g:g1", 1, "a", "x1", "one"), nil, nil)
		if _, err := db.AddMembers(ctx, "g1", []store.Member{{UserID: "d", Role: store.RoleMember}}, 10); err != nil {
			t.Fatal(err)
		}
		db.SaveMessage(ctx, msg("g:g1", 2, "a", "x2", "two"), nil, nil)

		// b reads up to 2 with a read record at inbox place 5; reading
		// again or backwards neither moves nor writes.
		if got, moved, err := db.SetReadRecord(ctx, "b", "g:g1", 9, 5); err != nil || !moved || got != 2 {
			t.Fatalf("read: %d %v %v, want 2 (cut to the last message), moved", got, moved, err)
		}
		if _, moved, _ := db.SetReadRecord(ctx, "b", "g:g1", 1, 6); moved {
			t.Fatal("a read backwards moved the cursor")
		}
		items, _, err := db.Sync(ctx, "b", 0, 10)
		if err != nil || len(items) != 1 || items[0].Record != store.RecordRead || items[0].InboxSeq != 5 || items[0].Seq != 2 || items[0].Conv != "g:g1" {
			t.Fatalf("b's inbox: %+v %v, want the one read record", items, err)
		}
		if n, _ := db.InboxSeq(ctx, "b"); n != 5 {
			t.Fatalf("inbox seq %d, want 5", n)
		}
		if n, _ := db.CountInboxRows(ctx, "g:g1"); n != 0 {
			t.Fatalf("a read record counts as %d message rows", n)
		}
		if r, _ := db.ReadSeq(ctx, "b", "g:g1"); r != 2 {
			t.Fatalf("read seq %d", r)
		}
		db.SetReadRecord(ctx, "c", "g:g1", 1, 0)
		db.SetReadRecord(ctx, "d", "g:g1", 2, 0)

		for _, tt := range []struct {
			seq          int64
			read, unread int64
			readers      string
		}{
			{1, 2, 0, "[b c]"}, // d joined after message 1: not counted
			{2, 2, 1, "[b d]"}, // c read only up to 1
		} {
			r, u, err := db.GroupReadCounts(ctx, "g1", tt.seq, "a")
			readers, err2 := db.GroupReaders(ctx, "g1", tt.seq, "a")
			if err != nil || err2 != nil || r != tt.read || u != tt.unread || fmt.Sprint(readers) != tt.readers {
				t.Fatalf("seq %d: read %d unread %d readers %v (%v %v), want %d %d %s", tt.seq, r, u, readers, err, err2, tt.read, tt.unread, tt.readers)
			}
		}
		if m, err := db.MessageAt(ctx, "g:g1", 2); err != nil || m.Sender != "a" {
			t.Fatalf("message at 2: %+v %v", m, err)
		}

		// a shares the group with b, c, d and a chat with e; is a friend of
		// h (no conversation yet); shares nothing with f.
		db.SaveMessage(ctx, msg("u:a:e", 1, "e", "y1", "hi"), nil, []string{"e", "a"})
		users(t, db, "a", "h")
		lim := store.SocialLimits{MaxFriends: 10, MaxPendingRequests: 10, MaxBlocks: 10}
		if err := db.CreateFriendRequest(ctx, store.FriendRequest{ID: "r1", From: "h", To: "a", Status: store.RequestPending, CreatedAt: 10}, lim, events("friend_request")); err != nil {
			t.Fatal(err)
		}
		if _, err := db.RespondFriendRequest(ctx, "r1", "a", true, 20, lim, events("friend_added")); err != nil {
			t.Fatal(err)
		}
		shared, err := db.SharedWith(ctx, "a", []string{"a", "b", "d", "e", "f", "h"})
		if err != nil || fmt.Sprint(shared) != "map[a:true b:true d:true e:true h:true]" {
			t.Fatalf("shared with a: %v %v", shared, err)
		}
		if large, _ := db.LargeGroupsOf(ctx, "b", 1); len(large) != 1 || large[0].ReadSeq != 2 {
			t.Fatalf("large groups of b carry his cursor: %+v", large)
		}
	})
}
