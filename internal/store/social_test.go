package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/imkube/imkube/internal/auth"
	"github.com/imkube/imkube/internal/mysqltest"
	"github.com/imkube/imkube/internal/store"
)

func users(t *testing.T, db *store.DB, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if err := db.CreateUser(context.Background(), store.User{ID: id, Username: "user" + id, DisplayName: "U" + id, PasswordHash: "h", CreatedAt: 1}); err != nil {
			t.Fatal(err)
		}
	}
}

func events(kind string) store.EventsFunc {
	return func(r store.FriendRequest) []store.SocialEvent {
		return []store.SocialEvent{{User: r.To, Kind: kind, Body: `{"id":"` + r.ID + `"}`, CreatedAt: r.CreatedAt}}
	}
}

func TestFriendRequestsFriendsBlocksAndTheirBounds(t *testing.T) {
	backends(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		users(t, db, "a", "b", "c", "d")
		lim := store.SocialLimits{MaxFriends: 1, MaxPendingRequests: 2, MaxBlocks: 1}
		req := func(id, from, to string) error {
			return db.CreateFriendRequest(ctx, store.FriendRequest{ID: id, From: from, To: to, Status: store.RequestPending, CreatedAt: 10}, lim, events("friend_request"))
		}
		if err := req("r1", "a", "b"); err != nil {
			t.Fatal(err)
		}
		for _, tt := range []struct {
			give     [3]string
			want     error
			wantText string
		}{
			{give: [3]string{"r2", "a", "b"}, want: store.ErrRequestPending},
			{give: [3]string{"r2", "b", "a"}, want: store.ErrRequestPending},
			{give: [3]string{"r2", "a", "nobody"}, want: store.ErrNotFound},
		} {
			if err := req(tt.give[0], tt.give[1], tt.give[2]); !errors.Is(err, tt.want) {
				t.Fatalf("request %v: %v, want %v", tt.give, err, tt.want)
			}
		}
		if err := req("r3", "a", "c"); err != nil {
			t.Fatal(err)
		}
		var le *store.LimitError
		if err := req("r4", "a", "d"); !errors.As(err, &le) || le.Max != 2 || le.Other {
			t.Fatalf("a third pending request: %v, want the pending limit of 2", err)
		}
		// Only the recipient answers; an answered request stays answered.
		if _, err := db.RespondFriendRequest(ctx, "r1", "a", true, 20, lim, events("friend_added")); !errors.Is(err, store.ErrForbidden) {
			t.Fatalf("the sender accepting: %v", err)
		}
		if _, err := db.RespondFriendRequest(ctx, "r1", "c", true, 20, lim, events("friend_added")); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a stranger accepting: %v", err)
		}
		if r, err := db.RespondFriendRequest(ctx, "r1", "b", true, 20, lim, events("friend_added")); err != nil || r.Status != store.RequestAccepted {
			t.Fatalf("accept: %+v %v", r, err)
		}
		if _, err := db.RespondFriendRequest(ctx, "r1", "b", false, 20, lim, events("x")); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("declining an accepted request: %v", err)
		}
		if ok, _ := db.AreFriends(ctx, "b", "a"); !ok {
			t.Fatal("not friends after accepting")
		}
		if err := req("r5", "b", "a"); !errors.Is(err, store.ErrAlreadyFriends) {
			t.Fatalf("request between friends: %v", err)
		}
		// a has the most friends (1): c's acceptance is refused, nothing changes.
		if _, err := db.RespondFriendRequest(ctx, "r3", "c", true, 20, lim, events("friend_added")); !errors.As(err, &le) || !le.Other {
			t.Fatalf("accepting a user at the friend limit: %v", err)
		}
		if in, _ := db.FriendRequests(ctx, "c", true, store.RequestPending, 10); len(in) != 1 {
			t.Fatalf("c's pending requests after a refused accept: %+v", in)
		}
		if err := db.SetRemark(ctx, "a", "b", "Bee"); err != nil {
			t.Fatal(err)
		}
		if err := db.SetRemark(ctx, "a", "c", "x"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("remark on a non-friend: %v", err)
		}
		fs, err := db.Friends(ctx, "a")
		if err != nil || len(fs) != 1 || fs[0].UserID != "b" || fs[0].Remark != "Bee" || fs[0].Username != "userb" || fs[0].Since != 20 {
			t.Fatalf("a's friends: %+v %v", fs, err)
		}

		// Blocks: drop pending requests, refuse new ones both ways, bounded.
		if err := db.BlockUser(ctx, "c", "a", 30, lim); err != nil {
			t.Fatal(err)
		}
		if err := db.BlockUser(ctx, "c", "a", 31, lim); err != nil {
			t.Fatalf("blocking again: %v", err)
		}
		if err := db.BlockUser(ctx, "c", "d", 30, lim); !errors.As(err, &le) {
			t.Fatalf("a second block over the limit of 1: %v", err)
		}
		if in, _ := db.FriendRequests(ctx, "c", true, store.RequestPending, 10); len(in) != 0 {
			t.Fatalf("pending requests survive a block: %+v", in)
		}
		if err := req("r6", "a", "c"); !errors.Is(err, store.ErrBlocked) {
			t.Fatalf("request to a blocker: %v", err)
		}
		if err := req("r6", "c", "a"); !errors.Is(err, store.ErrBlocked) {
			t.Fatalf("request from a blocker: %v", err)
		}
		if chk, err := db.CheckDirect(ctx, "a", "c"); err != nil || !chk.Exists || !chk.Blocked {
			t.Fatalf("check a->c: %+v %v", chk, err)
		}
		if chk, _ := db.CheckDirect(ctx, "b", "a"); !chk.Exists || chk.Blocked || !chk.Friends || chk.Policy != "" {
			t.Fatalf("check b->a: %+v", chk)
		}
		if m, _ := db.BlockedBetween(ctx, "a", []string{"b", "c", "d"}); len(m) != 1 || !m["c"] {
			t.Fatalf("blocked between a and b,c,d: %v", m)
		}
		if bl, _ := db.Blocks(ctx, "c"); len(bl) != 1 || bl[0].UserID != "a" || bl[0].CreatedAt != 30 {
			t.Fatalf("c's blocks: %+v", bl)
		}
		if err := db.UnblockUser(ctx, "c", "a"); err != nil {
			t.Fatal(err)
		}
		if chk, _ := db.CheckDirect(ctx, "a", "c"); chk.Blocked {
			t.Fatal("still blocked after unblocking")
		}

		if err := db.RemoveFriend(ctx, "b", "a", []store.SocialEvent{{User: "a", Kind: "friend_removed", Body: "{}", CreatedAt: 40}}); err != nil {
			t.Fatal(err)
		}
		if err := db.RemoveFriend(ctx, "b", "a", nil); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("removing again: %v", err)
		}
	})
}

func TestSocialEventsBecomeInboxRecordsOnce(t *testing.T) {
	backends(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		users(t, db, "a", "b")
		lim := store.SocialLimits{MaxFriends: 10, MaxPendingRequests: 10, MaxBlocks: 10}
		if err := db.CreateFriendRequest(ctx, store.FriendRequest{ID: "r1", From: "a", To: "b", Status: store.RequestPending, CreatedAt: 10}, lim, events("friend_request")); err != nil {
			t.Fatal(err)
		}
		db.SaveMessage(ctx, msg("u:a:b", 1, "a", "c1", "hello"), []store.InboxEntry{{User: "b", InboxSeq: 1}}, []string{"a", "b"})
		pending, err := db.PendingSocialEvents(ctx, 10)
		if err != nil || len(pending) != 1 || pending[0].User != "b" || pending[0].Kind != "friend_request" {
			t.Fatalf("pending events: %+v %v", pending, err)
		}
		if ok, err := db.ClaimSocialEvent(ctx, pending[0].ID, 100, 200); err != nil || !ok {
			t.Fatalf("claim: %v %v", ok, err)
		}
		if ok, _ := db.ClaimSocialEvent(ctx, pending[0].ID, 150, 250); ok {
			t.Fatal("a second replica claimed a leased event")
		}
		if ok, _ := db.ClaimSocialEvent(ctx, pending[0].ID, 201, 300); !ok {
			t.Fatal("an expired lease was not given to another replica")
		}
		if ok, err := db.DeliverSocialEvent(ctx, pending[0], 2); err != nil || !ok {
			t.Fatalf("deliver: %v %v", ok, err)
		}
		if ok, err := db.DeliverSocialEvent(ctx, pending[0], 3); err != nil || ok {
			t.Fatalf("delivering again (another replica): %v %v, want nothing written", ok, err)
		}
		if p, _ := db.PendingSocialEvents(ctx, 10); len(p) != 0 {
			t.Fatalf("still pending: %+v", p)
		}
		if ok, _ := db.ClaimSocialEvent(ctx, pending[0].ID, 1000, 2000); ok {
			t.Fatal("a delivered event was claimed")
		}
		items, more, err := db.Sync(ctx, "b", 0, 10)
		if err != nil || more || len(items) != 2 {
			t.Fatalf("sync: %+v %v %v", items, more, err)
		}
		if it := items[1]; it.Record != store.RecordEvent || it.InboxSeq != 2 || it.Kind != "friend_request" || it.Body != `{"id":"r1"}` || it.TS != 10 {
			t.Fatalf("event item: %+v", it)
		}
		if items[0].Record != store.RecordMessage || items[0].Body != "hello" {
			t.Fatalf("message item: %+v", items[0])
		}
	})
}

func TestSessionsRevocationsProfileAndDeletion(t *testing.T) {
	backends(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		users(t, db, "a", "b")
		now := time.Now()
		end := now.Add(time.Hour).UnixMilli()
		for i := range 3 {
			id := fmt.Sprintf("s%d", i)
			if err := db.SaveSession(ctx, store.Session{ID: id, User: "a", Device: "dev" + id, CreatedAt: now.UnixMilli(), LastUsedAt: now.UnixMilli() + int64(i), ExpiresAt: end}); err != nil {
				t.Fatal(err)
			}
		}
		db.SaveSession(ctx, store.Session{ID: "s0", User: "a", Device: "ignored", LastUsedAt: now.UnixMilli() + 10, ExpiresAt: end}) // a refresh
		list, err := db.Sessions(ctx, "a", now)
		if err != nil || len(list) != 3 || list[0].ID != "s0" || list[0].Device != "devs0" {
			t.Fatalf("sessions: %+v %v, want s0 first (last used) with its login device", list, err)
		}
		rev, err := db.RevokeSessions(ctx, "a", "", "s1", "password_changed", now)
		if err != nil || len(rev) != 2 {
			t.Fatalf("revoke all but s1: %+v %v", rev, err)
		}
		if list, _ := db.Sessions(ctx, "a", now); len(list) != 1 || list[0].ID != "s1" {
			t.Fatalf("sessions left: %+v", list)
		}
		got, err := db.RevokedSince(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		found := map[string]string{}
		for _, r := range got {
			found[r.TokenID] = r.Reason
		}
		if found[auth.SessionKey("s0")] != "password_changed" || found[auth.SessionKey("s2")] != "password_changed" || len(found) != 2 {
			t.Fatalf("revocations: %+v", got)
		}
		if rev, _ := db.RevokeSessions(ctx, "b", "s1", "", "session_revoked", now); len(rev) != 0 {
			t.Fatal("b revoked a's session")
		}

		friends := "friends"
		if err := db.UpdateProfile(ctx, "a", nil, &friends); err != nil {
			t.Fatal(err)
		}
		if err := db.UpdateProfile(ctx, "a", nil, &friends); err != nil {
			t.Fatalf("setting the same value again: %v", err)
		}
		if u, _ := db.UserByID(ctx, "a"); u.DMPolicy != "friends" {
			t.Fatalf("policy %q", u.DMPolicy)
		}
		lim := store.SocialLimits{MaxFriends: 10, MaxPendingRequests: 10, MaxBlocks: 10}
		db.CreateFriendRequest(ctx, store.FriendRequest{ID: "r1", From: "b", To: "a", CreatedAt: 1}, lim, events("x"))
		db.RespondFriendRequest(ctx, "r1", "a", true, 2, lim, events("x"))
		if err := db.DeleteUser(ctx, "a", now, func(f string) []store.SocialEvent {
			return []store.SocialEvent{{User: f, Kind: "friend_removed", Body: "{}", CreatedAt: 3}}
		}); err != nil {
			t.Fatal(err)
		}
		if err := db.DeleteUser(ctx, "a", now, nil); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("deleting twice: %v", err)
		}
		if ok, _ := db.UserExists(ctx, "a"); ok {
			t.Fatal("a deleted account exists")
		}
		if _, err := db.UserByUsername(ctx, "usera"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("login lookup of a deleted account: %v", err)
		}
		if u, err := db.UserByID(ctx, "a"); err != nil || !u.Deleted || u.DisplayName != store.DeletedDisplayName || u.PasswordHash != "" {
			t.Fatalf("deleted account row: %+v %v", u, err)
		}
		if err := db.CreateUser(ctx, store.User{ID: "z", Username: "usera", PasswordHash: "h", CreatedAt: 1}); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("reusing a deleted username: %v", err)
		}
		if fs, _ := db.Friends(ctx, "b"); len(fs) != 0 {
			t.Fatalf("b's friends after a's deletion: %+v", fs)
		}
		pending, _ := db.PendingSocialEvents(ctx, 100)
		var removed int
		for _, e := range pending {
			if e.Kind == "friend_removed" && e.User == "b" {
				removed++
			}
		}
		if removed != 1 {
			t.Fatalf("b's friend_removed events: %d", removed)
		}
		if chk, _ := db.CheckDirect(ctx, "b", "a"); chk.Exists {
			t.Fatal("a deleted user takes messages")
		}
		if n, err := db.PruneSessions(ctx, now.Add(2*time.Hour)); err != nil || n < 3 {
			t.Fatalf("prune: %d %v, want the three ended sessions (and answered requests) gone", n, err)
		}
		if n, _ := db.PruneSessions(ctx, now.Add(2*time.Hour)); n != 0 {
			t.Fatalf("pruning again deleted %d", n)
		}
	})
}

// Migration 9 keeps existing accounts and tokens working, and running it
// again (a crash before its version row was written) changes nothing.
func TestSocialMigrationKeepsAccountsAndCanRunAgain(t *testing.T) {
	check := func(t *testing.T, old *store.DB, open func() (*store.DB, error)) {
		ctx := context.Background()
		if err := old.CreateUser(ctx, store.User{ID: "1", Username: "old", DisplayName: "Old", PasswordHash: "h", CreatedAt: 1}); err != nil {
			t.Fatal(err)
		}
		if err := old.RevokeToken(ctx, "jti-1", time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		old.Close()
		db, err := open()
		if err != nil {
			t.Fatalf("migrate: %v", err)
		}
		if _, err := db.SQL().ExecContext(ctx, "DELETE FROM schema_migrations WHERE version = 9"); err != nil {
			t.Fatal(err)
		}
		db.Close()
		if db, err = open(); err != nil {
			t.Fatalf("migration 9 run again: %v", err)
		}
		defer db.Close()
		u, err := db.UserByUsername(ctx, "old")
		if err != nil || u.ID != "1" || u.Deleted || u.DMPolicy != "" {
			t.Fatalf("the existing account: %+v %v", u, err)
		}
		got, err := db.RevokedSince(ctx, 0)
		if err != nil || len(got) != 1 || got[0].TokenID != "jti-1" || got[0].Reason != "" {
			t.Fatalf("existing revocations: %+v %v", got, err)
		}
	}
	t.Run("sqlite", func(t *testing.T) {
		dir := t.TempDir()
		old, err := store.OpenSQLiteAt(context.Background(), dir, 8)
		if err != nil {
			t.Fatal(err)
		}
		check(t, old, func() (*store.DB, error) { return store.OpenSQLite(context.Background(), dir) })
	})
	t.Run("mysql", func(t *testing.T) {
		dsn := mysqltest.NewDatabase(t)
		old, err := store.OpenMySQLAt(context.Background(), dsn, 8)
		if err != nil {
			t.Fatal(err)
		}
		check(t, old, func() (*store.DB, error) {
			return store.OpenMySQL(context.Background(), dsn, store.PoolConfig{MaxOpen: 2})
		})
	})
}
