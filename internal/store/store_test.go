package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/imkube/imkube/internal/mysqltest"
	"github.com/imkube/imkube/internal/store"
)

// backends runs each test against the embedded SQLite store and against
// real MariaDB (started by hack/deps.sh).
func backends(t *testing.T, fn func(t *testing.T, db *store.DB)) {
	t.Run("sqlite", func(t *testing.T) {
		db, err := store.OpenSQLite(context.Background(), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		fn(t, db)
	})
	t.Run("mysql", func(t *testing.T) {
		dsn := mysqltest.NewDatabase(t)
		db, err := store.OpenMySQL(context.Background(), dsn, store.PoolConfig{MaxOpen: 8})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		fn(t, db)
	})
}

func TestUsersAreUniqueByUsername(t *testing.T) {
	backends(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if err := db.CreateUser(ctx, store.User{ID: "1", Username: "alice", DisplayName: "Alice 🐱", PasswordHash: "h", CreatedAt: 1}); err != nil {
			t.Fatal(err)
		}
		if err := db.CreateUser(ctx, store.User{ID: "2", Username: "alice", DisplayName: "x", PasswordHash: "h", CreatedAt: 1}); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("duplicate username: %v", err)
		}
		u, err := db.UserByUsername(ctx, "alice")
		if err != nil || u.ID != "1" || u.DisplayName != "Alice 🐱" {
			t.Fatalf("lookup: %+v %v", u, err)
		}
		if _, err := db.UserByID(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("missing user: %v", err)
		}
	})
}

func msg(conv string, seq int64, sender, cmid, body string) store.Message {
	return store.Message{Conv: conv, Seq: seq, MID: fmt.Sprintf("m%s%d", conv, seq), Sender: sender, CMID: cmid, Kind: "text", Body: body, TS: seq}
}

func TestMessagesInboxesAndCursors(t *testing.T) {
	backends(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		conv := "u:a:b"
		for i := int64(1); i <= 5; i++ {
			body := fmt.Sprintf("m%d '; DROP TABLE messages; -- \x01", i)
			if err := db.SaveMessage(ctx, msg(conv, i, "a", fmt.Sprintf("c%d", i), body), []store.InboxEntry{{User: "a", InboxSeq: i}, {User: "b", InboxSeq: i}}, []string{"a", "b"}); err != nil {
				t.Fatal(err)
			}
		}
		// (sender, cmid) is unique: a retry stores nothing.
		if err := db.SaveMessage(ctx, msg(conv, 6, "a", "c1", "dup"), []store.InboxEntry{{User: "b", InboxSeq: 6}}, nil); !errors.Is(err, store.ErrDuplicate) {
			t.Fatalf("duplicate cmid: %v", err)
		}
		if n, _ := db.InboxSeq(ctx, "b"); n != 5 {
			t.Fatalf("inbox seq %d after a rejected duplicate (transaction not rolled back?)", n)
		}
		prev, err := db.MessageByCMID(ctx, "a", "c3")
		if err != nil || prev.Seq != 3 || prev.Body != "m3 '; DROP TABLE messages; -- \x01" {
			t.Fatalf("by cmid: %+v %v (strings must be stored verbatim)", prev, err)
		}
		items, more, err := db.Sync(ctx, "b", 1, 2)
		if err != nil || !more || len(items) != 2 || items[0].InboxSeq != 2 || items[1].Seq != 3 {
			t.Fatalf("sync page: %+v more=%v err=%v", items, more, err)
		}
		msgs, more, err := db.Pull(ctx, conv, 4, 0, 10)
		if err != nil || more || len(msgs) != 2 || msgs[0].Seq != 4 {
			t.Fatalf("pull: %+v %v %v", msgs, more, err)
		}
		if got, moved, _ := db.SetRead(ctx, "b", conv, 99); got != 5 || !moved {
			t.Fatalf("read cursor clamps to the last seq: %d (moved %v)", got, moved)
		}
		if _, moved, _ := db.SetRead(ctx, "b", conv, 2); moved { // never moves back
			t.Fatal("read cursor moved back")
		}
		if _, moved, _ := db.SetRead(ctx, "b", conv, 5); moved {
			t.Fatal("read cursor reported as moved when it stayed")
		}
		if _, moved, _ := db.SetRead(ctx, "b", "u:b:zz", 3); moved {
			t.Fatal("read cursor stored for a conversation b does not have")
		}
		convs, err := db.Conversations(ctx, "b")
		if err != nil || len(convs) != 1 || convs[0].ReadSeq != 5 || convs[0].Unread != 0 || convs[0].LastSeq != 5 {
			t.Fatalf("conversations: %+v %v", convs, err)
		}
		if ca, _ := db.Conversations(ctx, "a"); len(ca) != 1 || ca[0].Unread != 0 {
			t.Fatalf("sender's conversation: %+v", ca)
		}
		entries, err := db.InboxEntries(ctx, conv, 2)
		if err != nil || len(entries) != 2 {
			t.Fatalf("inbox entries: %+v %v", entries, err)
		}
	})
}

func TestGroupMembershipVersionsAndLimits(t *testing.T) {
	backends(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		g := store.Group{ID: "g1", Name: "team", Owner: "a", CreatedAt: 1}
		if err := db.CreateGroup(ctx, g, []store.Member{{UserID: "a", Role: store.RoleOwner}, {UserID: "b", Role: store.RoleMember}}); err != nil {
			t.Fatal(err)
		}
		v1, _ := db.GroupVersion(ctx, "g1")
		db.SaveMessage(ctx, msg("g:g1", 1, "a", "x1", "hi"), nil, nil)
		if _, err := db.AddMembers(ctx, "g1", []store.Member{{UserID: "c", Role: store.RoleMember}, {UserID: "d", Role: store.RoleMember}}, 3); !errors.Is(err, store.ErrGroupFull) {
			t.Fatalf("over max members: %v", err)
		}
		if n, err := db.AddMembers(ctx, "g1", []store.Member{{UserID: "c", Role: store.RoleMember}, {UserID: "b", Role: store.RoleMember}}, 3); err != nil || n != 1 {
			t.Fatalf("add: %d %v", n, err)
		}
		m, err := db.GroupMember(ctx, "g1", "c")
		if err != nil || m.JoinedSeq != 1 {
			t.Fatalf("joined seq: %+v %v", m, err)
		}
		members, v2, err := db.GroupMembers(ctx, "g1")
		if err != nil || len(members) != 3 || v2 <= v1 {
			t.Fatalf("members %d version %d -> %d: %v", len(members), v1, v2, err)
		}
		if err := db.RemoveMember(ctx, "g1", "b"); err != nil {
			t.Fatal(err)
		}
		if v3, _ := db.GroupVersion(ctx, "g1"); v3 <= v2 {
			t.Fatalf("version did not move on removal")
		}
		if convs, _ := db.Conversations(ctx, "b"); len(convs) != 0 {
			t.Fatalf("removed member keeps the conversation: %+v", convs)
		}
		owner := store.RoleOwner
		if err := db.UpdateMember(ctx, "g1", "c", store.MemberUpdate{Role: &owner}); err != nil {
			t.Fatal(err)
		}
		if a, _ := db.GroupMember(ctx, "g1", "a"); a.Role != store.RoleAdmin {
			t.Fatalf("old owner role %q", a.Role)
		}
		large, err := db.LargeGroupsOf(ctx, "c", 1)
		if err != nil || len(large) != 1 || large[0].Conv != "g:g1" || large[0].LastSeq != 1 {
			t.Fatalf("large groups: %+v %v", large, err)
		}
		if err := db.DeleteGroup(ctx, "g1"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.GroupVersion(ctx, "g1"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("dismissed group: %v", err)
		}
	})
}

func TestConcurrentStartsMigrateOnce(t *testing.T) {
	dsn := mysqltest.NewDatabase(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db, err := store.OpenMySQL(context.Background(), dsn, store.PoolConfig{MaxOpen: 2})
			if err == nil {
				db.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("concurrent migration: %v", err)
		}
	}
}

func TestACMIDIsClaimedForOneConversation(t *testing.T) {
	backends(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		tests := []struct {
			name      string
			give      string // conversation claiming cmid "c1" of sender "a"
			wantFresh bool
			wantOwner string
		}{
			{name: "the first claim wins", give: "u:a:b", wantFresh: true, wantOwner: "u:a:b"},
			{name: "a retry for the same conversation finds its own claim", give: "u:a:b", wantFresh: false, wantOwner: "u:a:b"},
			{name: "another conversation finds the owner", give: "u:a:c", wantFresh: false, wantOwner: "u:a:b"},
		}
		for _, tt := range tests {
			fresh, owner, err := db.ClaimCMID(ctx, "a", "c1", tt.give)
			if err != nil || fresh != tt.wantFresh || owner != tt.wantOwner {
				t.Fatalf("%s: fresh %v owner %q err %v; want %v %q", tt.name, fresh, owner, err, tt.wantFresh, tt.wantOwner)
			}
		}
		if fresh, _, _ := db.ClaimCMID(ctx, "b", "c1", "u:a:b"); !fresh {
			t.Fatal("cmids are per sender")
		}
	})
}

func TestUsernamesAreUniqueByTheirNormalisedKey(t *testing.T) {
	backends(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if err := db.CreateUser(ctx, store.User{ID: "1", Username: "vict_x", DisplayName: "V", PasswordHash: "h", CreatedAt: 1}); err != nil {
			t.Fatal(err)
		}
		for _, twin := range []string{"VICT_X", "Vict_X", "ｖｉｃｔ_ｘ"} {
			if err := db.CreateUser(ctx, store.User{ID: "2", Username: twin, DisplayName: "x", PasswordHash: "h", CreatedAt: 2}); !errors.Is(err, store.ErrConflict) {
				t.Fatalf("twin %q of vict_x: %v, want ErrConflict", twin, err)
			}
			u, err := db.UserByUsername(ctx, twin)
			if err != nil || u.ID != "1" || u.Username != "vict_x" {
				t.Fatalf("lookup by %q: %+v %v, want vict_x as registered", twin, u, err)
			}
		}
		if err := db.CreateUser(ctx, store.User{ID: "3", Username: "Display_Case", DisplayName: "D", PasswordHash: "h", CreatedAt: 3}); err != nil {
			t.Fatal(err)
		}
		if u, err := db.UserByUsername(ctx, "display_case"); err != nil || u.Username != "Display_Case" {
			t.Fatalf("display case: %+v %v", u, err)
		}
	})
}

// Accounts created before usernames had keys migrate: every account gets
// its key, old case twins stay reachable by their exact spelling, and no new
// twin can register.
func TestUsernameKeyMigrationKeepsExistingAccounts(t *testing.T) {
	check := func(t *testing.T, old *store.DB, open func() (*store.DB, error)) {
		ctx := context.Background()
		for i, name := range []string{"vict_x", "VICT_X", "bob"} {
			if _, err := old.SQL().ExecContext(ctx, "INSERT INTO users (id, username, display_name, password_hash, created_at) VALUES (?, ?, ?, ?, ?)",
				fmt.Sprint(i+1), name, name, "h", i+1); err != nil {
				t.Fatal(err)
			}
		}
		old.Close()
		reopen, err := open()
		if err != nil {
			t.Fatalf("migrate existing accounts: %v", err)
		}
		defer reopen.Close()
		for name, want := range map[string]string{"vict_x": "1", "VICT_X": "2", "Vict_X": "1", "BOB": "3"} {
			u, err := reopen.UserByUsername(ctx, name)
			if err != nil || u.ID != want {
				t.Fatalf("after migration, %q finds %+v %v, want user %s", name, u, err, want)
			}
		}
		if err := reopen.CreateUser(ctx, store.User{ID: "9", Username: "Bob", DisplayName: "b", PasswordHash: "h", CreatedAt: 9}); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("twin of a migrated account: %v", err)
		}
	}
	t.Run("sqlite", func(t *testing.T) {
		dir := t.TempDir()
		old, err := store.OpenSQLiteAt(context.Background(), dir, 2)
		if err != nil {
			t.Fatal(err)
		}
		check(t, old, func() (*store.DB, error) { return store.OpenSQLite(context.Background(), dir) })
	})
	t.Run("mysql", func(t *testing.T) {
		dsn := mysqltest.NewDatabase(t)
		old, err := store.OpenMySQLAt(context.Background(), dsn, 2)
		if err != nil {
			t.Fatal(err)
		}
		check(t, old, func() (*store.DB, error) {
			return store.OpenMySQL(context.Background(), dsn, store.PoolConfig{MaxOpen: 2})
		})
	})
}

func TestGroupJoinPolicyMuteAllRemarkAndJoinRequests(t *testing.T) {
	backends(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if err := db.CreateGroup(ctx, store.Group{ID: "g1", Name: "team", Owner: "a", CreatedAt: 1}, []store.Member{{UserID: "a", Role: store.RoleOwner}}); err != nil {
			t.Fatal(err)
		}
		g, err := db.GroupByID(ctx, "g1")
		if err != nil || g.JoinPolicy != store.JoinInvite || g.MuteAll {
			t.Fatalf("defaults: %+v %v", g, err)
		}
		policy, on := store.JoinByRequest, true
		if err := db.UpdateGroup(ctx, "g1", store.GroupUpdate{JoinPolicy: &policy, MuteAll: &on}); err != nil {
			t.Fatal(err)
		}
		if g, _ := db.GroupByID(ctx, "g1"); g.JoinPolicy != store.JoinByRequest || !g.MuteAll {
			t.Fatalf("after update: %+v", g)
		}
		remark := "my team"
		if err := db.UpdateMember(ctx, "g1", "a", store.MemberUpdate{Remark: &remark}); err != nil {
			t.Fatal(err)
		}
		if gs, _ := db.GroupsOf(ctx, "a"); len(gs) != 1 || gs[0].Remark != remark || !gs[0].MuteAll {
			t.Fatalf("groups of a: %+v", gs)
		}
		req := func(id, uid string) error {
			return db.CreateJoinRequest(ctx, store.JoinRequest{ID: id, GroupID: "g1", UserID: uid, Message: "hi", CreatedAt: 2}, 2, 5)
		}
		if err := req("r1", "b"); err != nil {
			t.Fatal(err)
		}
		if err := req("r1b", "b"); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("second pending request: %v", err)
		}
		if err := req("rx", "a"); !errors.Is(err, store.ErrAlreadyMember) {
			t.Fatalf("member requesting: %v", err)
		}
		if err := req("r2", "c"); err != nil {
			t.Fatal(err)
		}
		if err := req("r3", "d"); !errors.Is(err, store.ErrGroupRequestsFull) {
			t.Fatalf("over the group's pending limit: %v", err)
		}
		list, err := db.JoinRequests(ctx, "g1", store.RequestPending, 100)
		if err != nil || len(list) != 2 || list[0].ID != "r1" || list[0].Status != store.RequestPending {
			t.Fatalf("pending: %+v %v", list, err)
		}
		if _, err := db.DecideJoinRequest(ctx, "g1", "r1", "a", true, 3, 1); !errors.Is(err, store.ErrGroupFull) {
			t.Fatalf("accept beyond max members: %v", err)
		}
		if r, _ := db.JoinRequestByID(ctx, "g1", "r1"); r.Status != store.RequestPending {
			t.Fatalf("failed accept changed the request: %+v", r)
		}
		r, err := db.DecideJoinRequest(ctx, "g1", "r1", "a", true, 3, 10)
		if err != nil || r.Status != store.RequestAccepted || r.UserID != "b" {
			t.Fatalf("accept: %+v %v", r, err)
		}
		if _, err := db.GroupMember(ctx, "g1", "b"); err != nil {
			t.Fatalf("accepted requester is not a member: %v", err)
		}
		if _, err := db.DecideJoinRequest(ctx, "g1", "r1", "a", false, 3, 10); !errors.Is(err, store.ErrRequestAlreadyClosed) {
			t.Fatalf("decide twice: %v", err)
		}
		if _, err := db.DecideJoinRequest(ctx, "g1", "r2", "a", false, 3, 10); err != nil {
			t.Fatal(err)
		}
		if _, err := db.GroupMember(ctx, "g1", "c"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("declined requester is a member: %v", err)
		}
		if _, err := db.DecideJoinRequest(ctx, "g1", "nope", "a", true, 3, 10); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown request: %v", err)
		}
		if err := db.DeleteGroup(ctx, "g1"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.JoinRequestByID(ctx, "g1", "r2"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a dismissed group's requests stay: %v", err)
		}
		for i := range 5 {
			gid := fmt.Sprintf("h%d", i)
			db.CreateGroup(ctx, store.Group{ID: gid, Name: "x", Owner: "a", CreatedAt: 1}, []store.Member{{UserID: "a", Role: store.RoleOwner}})
			if err := db.CreateJoinRequest(ctx, store.JoinRequest{ID: "q" + gid, GroupID: gid, UserID: "e", CreatedAt: 2}, 10, 3); (i < 3) != (err == nil) || (i >= 3 && !errors.Is(err, store.ErrUserRequestsFull)) {
				t.Fatalf("request %d of one user: %v", i, err)
			}
		}
	})
}

func TestGroupColumnsMigrationKeepsExistingGroups(t *testing.T) {
	check := func(t *testing.T, old *store.DB, open func() (*store.DB, error)) {
		ctx := context.Background()
		if _, err := old.SQL().ExecContext(ctx, "INSERT INTO im_groups (id, name, owner, announcement, allow_invites, member_count, version, created_at) VALUES ('g1', 'old', 'a', '', 1, 1, 3, 1)"); err != nil {
			t.Fatal(err)
		}
		if _, err := old.SQL().ExecContext(ctx, "INSERT INTO group_members (group_id, user_id, role, muted_until, nickname, joined_seq, joined_at) VALUES ('g1', 'a', 'owner', 0, '', 0, 1)"); err != nil {
			t.Fatal(err)
		}
		old.Close()
		db, err := open()
		if err != nil {
			t.Fatalf("migrate existing groups: %v", err)
		}
		defer db.Close()
		g, err := db.GroupByID(ctx, "g1")
		if err != nil || g.JoinPolicy != store.JoinInvite || g.MuteAll || g.Name != "old" || !g.AllowInvites {
			t.Fatalf("migrated group: %+v %v", g, err)
		}
		if m, err := db.GroupMember(ctx, "g1", "a"); err != nil || m.Remark != "" || m.Role != store.RoleOwner {
			t.Fatalf("migrated member: %+v %v", m, err)
		}
	}
	t.Run("sqlite", func(t *testing.T) {
		dir := t.TempDir()
		old, err := store.OpenSQLiteAt(context.Background(), dir, 10)
		if err != nil {
			t.Fatal(err)
		}
		check(t, old, func() (*store.DB, error) { return store.OpenSQLite(context.Background(), dir) })
	})
	t.Run("mysql", func(t *testing.T) {
		dsn := mysqltest.NewDatabase(t)
		old, err := store.OpenMySQLAt(context.Background(), dsn, 10)
		if err != nil {
			t.Fatal(err)
		}
		check(t, old, func() (*store.DB, error) {
			return store.OpenMySQL(context.Background(), dsn, store.PoolConfig{MaxOpen: 2})
		})
	})
}

func TestConcurrentJoinRequestsMakeOnePending(t *testing.T) {
	backends(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if err := db.CreateGroup(ctx, store.Group{ID: "g1", Name: "team", Owner: "a", CreatedAt: 1}, []store.Member{{UserID: "a", Role: store.RoleOwner}}); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make([]error, 8)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = db.CreateJoinRequest(ctx, store.JoinRequest{ID: fmt.Sprintf("r%d", i), GroupID: "g1", UserID: "b", CreatedAt: 1}, 500, 50)
			}()
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, store.ErrConflict):
				t.Fatalf("concurrent request: %v", err)
			}
		}
		if list, _ := db.JoinRequests(ctx, "g1", store.RequestPending, 100); ok != 1 || len(list) != 1 {
			t.Fatalf("%d requests succeeded, %d pending; want 1", ok, len(list))
		}
	})
}
