package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/imkube/imkube/internal/store"
)

func TestRecallEditDeleteMentionsAndConversationPages(t *testing.T) {
	backends(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		conv := "u:a:b"
		in := func(n int64) []store.InboxEntry {
			return []store.InboxEntry{{User: "a", InboxSeq: n}, {User: "b", InboxSeq: n}}
		}
		m1 := msg(conv, 1, "a", "c1", "hello")
		m1.Mentions = "b"
		if err := db.SaveMessage(ctx, m1, in(1), []string{"a", "b"}); err != nil {
			t.Fatal(err)
		}
		m2 := msg(conv, 2, "a", "c2", strings.Repeat("x", 200))
		m2.ReplyTo = 1
		if err := db.SaveMessage(ctx, m2, in(2), []string{"a", "b"}); err != nil {
			t.Fatal(err)
		}
		list, next, err := db.ConversationPage(ctx, "b", nil, 10)
		if err != nil || next != nil || len(list) != 1 || list[0].Mentions != 1 || list[0].Unread != 2 || len(list[0].Last.Preview) != 120 {
			t.Fatalf("b's list: %+v %v %v", list, next, err)
		}
		edit := msg(conv, 3, "a", "c3", "hello!")
		edit.Kind, edit.Ref = "edit", 1
		if err := db.SaveEdit(ctx, edit, in(3)); err != nil {
			t.Fatal(err)
		}
		recall := msg(conv, 4, "a", "c4", "")
		recall.Kind, recall.Ref = "recall", 1
		if err := db.SaveRecall(ctx, recall, in(4)); err != nil {
			t.Fatal(err)
		}
		recall.Seq, recall.CMID, recall.MID = 5, "c5", "again"
		if err := db.SaveRecall(ctx, recall, in(5)); !errors.Is(err, store.ErrRecalled) {
			t.Fatalf("second recall: %v", err)
		}
		edit.Seq, edit.CMID, edit.MID = 5, "c5", "late"
		if err := db.SaveEdit(ctx, edit, in(5)); !errors.Is(err, store.ErrRecalled) {
			t.Fatalf("edit after recall: %v", err)
		}
		got, _ := db.MessageAt(ctx, conv, 1)
		e, _ := db.MessageAt(ctx, conv, 3)
		if got.Flags != store.FlagRecalled|store.FlagEdited || got.Body != "" || got.Mentions != "" || e.Body != "" {
			t.Fatalf("recalled message %+v, its edit %+v", got, e)
		}
		// The edit and recall records change message 1: they are no unread
		// messages of their own (the recalled message still counts, as the
		// SDK counts it); a's own messages never count for a.
		if list, _, _ := db.ConversationPage(ctx, "b", nil, 10); list[0].Mentions != 0 || list[0].Last.Kind != "recall" || list[0].Unread != 2 {
			t.Fatalf("after recall: %+v", list[0])
		}
		if list, _, _ := db.ConversationPage(ctx, "a", nil, 10); list[0].Unread != 0 || list[0].LastSeq != 4 {
			t.Fatalf("a's own messages as unread: %+v", list[0])
		}
		del := store.Message{Conv: store.DeleteConv("b"), Seq: 1, MID: "d1", Sender: "b", CMID: "d1", Kind: "delete", Body: `{"conv":"u:a:b","seqs":[2]}`, TS: 9}
		if err := db.SaveDelete(ctx, del, []store.InboxEntry{{User: "b", InboxSeq: 5}}, "b", conv, []int64{2}); err != nil {
			t.Fatal(err)
		}
		items, _, _ := db.Sync(ctx, "b", 0, 10)
		if len(items) != 5 || !items[1].Hidden || items[4].Kind != "delete" {
			t.Fatalf("b's inbox: %+v", items)
		}
		msgs, more, _ := db.PullVisible(ctx, "b", conv, 1, 0, 0, 10)
		if len(msgs) != 3 || more {
			t.Fatalf("b's visible messages: %+v", msgs)
		}
		msgs, more, _ = db.PullVisible(ctx, "a", conv, 1, 0, 4, 2)
		if len(msgs) != 2 || msgs[0].Seq != 2 || msgs[1].Seq != 3 || !more {
			t.Fatalf("a's page before 4: %+v %v", msgs, more)
		}
		if list, _, _ := db.ConversationPage(ctx, "b", nil, 10); len(list) != 1 {
			t.Fatalf("the delete record made a conversation: %+v", list)
		}
		// Pinned first, paging by cursor.
		if err := db.SaveMessage(ctx, msg("u:b:c", 1, "c", "x1", "newer"), nil, []string{"b", "c"}); err != nil {
			t.Fatal(err)
		}
		pin := true
		if err := db.SetConvSettings(ctx, "b", conv, store.ConvSettings{Pinned: &pin, Muted: &pin}); err != nil {
			t.Fatal(err)
		}
		if err := db.SetConvSettings(ctx, "z", conv, store.ConvSettings{Pinned: &pin}); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a stranger's settings: %v", err)
		}
		page, next, _ := db.ConversationPage(ctx, "b", nil, 1)
		if len(page) != 1 || page[0].Conv != conv || !page[0].Pinned || !page[0].Muted || next == nil {
			t.Fatalf("first page: %+v %v", page, next)
		}
		cur, err := store.ParseConvCursor(next.String())
		if err != nil {
			t.Fatal(err)
		}
		page, next, _ = db.ConversationPage(ctx, "b", &cur, 1)
		if len(page) != 1 || page[0].Conv != "u:b:c" || next != nil {
			t.Fatalf("second page: %+v %v", page, next)
		}
		if muted, _ := db.MutedIn(ctx, conv); !muted["b"] || muted["a"] {
			t.Fatalf("muted: %v", muted)
		}
	})
}
