package message_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
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

// failingStore fails the recipient lookup of sends to failTo (a store
// outage that hits one record of a batch).
type failingStore struct {
	*store.DB
	mu     sync.Mutex
	failTo string
}

func (f *failingStore) CheckDirect(ctx context.Context, sender, recipient string) (store.DirectCheck, error) {
	f.mu.Lock()
	fail := recipient == f.failTo
	f.mu.Unlock()
	if fail {
		return store.DirectCheck{}, errors.New("store unavailable")
	}
	return f.DB.CheckDirect(ctx, sender, recipient)
}

// pushLog records what the service publishes, per gateway, batches opened.
type pushLog struct {
	mu      sync.Mutex
	records map[string]int
	pushes  []messageapi.Push
}

func (p *pushLog) PublishPush(ctx context.Context, gw string, m bus.Message) error {
	b, err := m.Encoded() // as a bus between processes sends it
	if err != nil {
		return err
	}
	var push messageapi.Push
	if err := json.Unmarshal(b, &push); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.records[gw]++
	if push.Kind == messageapi.PushBatch {
		p.pushes = append(p.pushes, push.Batch...)
	} else {
		p.pushes = append(p.pushes, push)
	}
	return nil
}

// frames returns the frames pushed to user's device, decoded.
func (p *pushLog) frames(t *testing.T, user string) []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []map[string]any
	for _, push := range p.pushes {
		for _, tg := range push.Targets {
			if tg.User != user {
				continue
			}
			var f map[string]any
			if err := json.Unmarshal(messageapi.FrameForTarget(push.Frame, tg), &f); err != nil {
				t.Fatal(err)
			}
			out = append(out, f)
		}
	}
	return out
}

type batchEnv struct {
	db     *store.DB
	fs     *failingStore
	svc    *message.Service
	pushes *pushLog
}

func newBatchEnv(t *testing.T) *batchEnv {
	t.Helper()
	ctx := context.Background()
	db, err := store.OpenSQLite(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for _, id := range []string{"1", "2", "3", "4"} {
		db.CreateUser(ctx, store.User{ID: id, Username: "u" + id, DisplayName: "u", PasswordHash: "x", CreatedAt: 1})
	}
	seq, err := sequence.NewEmbedded(ctx, sequence.Config{}, sequence.Deps{DB: db.SQL(), Dialect: db.Dialect()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { seq.Close() })
	sess := sessions.NewMemory(time.Now)
	for _, id := range []string{"1", "2", "3", "4"} {
		if err := sess.Register(ctx, sessions.Session{User: id, Device: "d", Gateway: "gw" + id}, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	e := &batchEnv{db: db, fs: &failingStore{DB: db}, pushes: &pushLog{records: map[string]int{}}}
	e.svc, err = message.New(message.Config{}, message.Deps{Store: e.fs, Sequence: seq, Sessions: sess, Push: e.pushes,
		IDs: snowflake.New(1), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func send(from, to, cmid string) bus.Message {
	conv := protocol.DirectConv(from, to)
	body, _ := json.Marshal(messageapi.Upstream{Gateway: "gw" + from, User: from, Device: "d", CMID: cmid, Conv: conv,
		To: protocol.Target{User: to}, Kind: "text", Body: cmid})
	return bus.Message{Key: conv, Body: body}
}

// stored returns the cmids stored in conv, in seq order, checking seqs 1..n.
func (e *batchEnv) stored(t *testing.T, conv string) []string {
	t.Helper()
	msgs, _, err := e.db.Pull(context.Background(), conv, 1, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for i, m := range msgs {
		if m.Seq != int64(i+1) {
			t.Fatalf("%s: seqs %v, want 1..n", conv, seqs(msgs))
		}
		out = append(out, m.CMID)
	}
	return out
}

func acksByCMID(frames []map[string]any) map[string][]string {
	out := map[string][]string{}
	for _, f := range frames {
		if f["t"] == protocol.TypeAck {
			out[f["cmid"].(string)] = append(out[f["cmid"].(string)], f["mid"].(string))
		}
	}
	return out
}

func TestBatchWithTheSameCMIDTwiceStoresItOnceAndAcksBothWithOneMID(t *testing.T) {
	e := newBatchEnv(t)
	ctx := context.Background()
	batch := []bus.Message{send("1", "2", "a"), send("1", "2", "b"), send("1", "2", "a"), send("1", "2", "c")}
	if done, err := e.svc.HandleUpstreamBatch(ctx, batch); err != nil || done != len(batch) {
		t.Fatalf("batch: done %d, err %v", done, err)
	}
	// and across batches: the same cmid again later
	if done, err := e.svc.HandleUpstreamBatch(ctx, []bus.Message{send("1", "2", "c"), send("1", "2", "d")}); err != nil || done != 2 {
		t.Fatalf("second batch: done %d, err %v", done, err)
	}
	if got, want := e.stored(t, protocol.DirectConv("1", "2")), []string{"a", "b", "c", "d"}; !equal(got, want) {
		t.Fatalf("stored %v, want %v", got, want)
	}
	acks := acksByCMID(e.pushes.frames(t, "1"))
	for cmid, n := range map[string]int{"a": 2, "b": 1, "c": 2, "d": 1} {
		if len(acks[cmid]) != n {
			t.Fatalf("cmid %s: %d acks, want %d (%v)", cmid, len(acks[cmid]), n, acks)
		}
		for _, mid := range acks[cmid] {
			if mid != acks[cmid][0] {
				t.Fatalf("cmid %s acked with mids %v, want one mid", cmid, acks[cmid])
			}
		}
	}
	var got []string
	for _, f := range e.pushes.frames(t, "2") {
		if f["t"] == protocol.TypeMsg {
			got = append(got, f["body"].(string))
		}
	}
	// the recipient gets every message in order (a retry's message again:
	// clients drop it by mid)
	if want := []string{"a", "b", "a", "c", "c", "d"}; !equal(got, want) {
		t.Fatalf("recipient got %v, want %v", got, want)
	}
}

func TestBatchOfMixedConversationsKeepsEachConversationsOrderAndOnePushPerGateway(t *testing.T) {
	e := newBatchEnv(t)
	ctx := context.Background()
	var batch []bus.Message
	want := map[string][]string{}
	for i := range 12 {
		from, to := []string{"1", "3", "1", "2"}[i%4], []string{"2", "4", "3", "4"}[i%4]
		cmid := from + to + string(rune('a'+i))
		batch = append(batch, send(from, to, cmid))
		want[protocol.DirectConv(from, to)] = append(want[protocol.DirectConv(from, to)], cmid)
	}
	if done, err := e.svc.HandleUpstreamBatch(ctx, batch); err != nil || done != len(batch) {
		t.Fatalf("batch: done %d, err %v", done, err)
	}
	for conv, cmids := range want {
		if got := e.stored(t, conv); !equal(got, cmids) {
			t.Fatalf("%s: stored %v, want %v", conv, got, cmids)
		}
	}
	for gw, n := range e.pushes.records {
		if n != 1 {
			t.Errorf("gateway %s got %d push records for one batch, want 1", gw, n)
		}
	}
	// every inbox is numbered 1..n in the order of the batch
	for _, u := range []string{"1", "2", "3", "4"} {
		items, _, err := e.db.Sync(ctx, u, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		var last int64
		for i, it := range items {
			if it.InboxSeq != int64(i+1) || (i > 0 && it.Conv == items[i-1].Conv && it.Seq <= last) {
				t.Fatalf("inbox of %s out of order at %d: %+v", u, i, items)
			}
			last = it.Seq
		}
	}
}

func TestBatchWithAFailingRecordProcessesThoseBeforeItAndRetriesFromIt(t *testing.T) {
	e := newBatchEnv(t)
	ctx := context.Background()
	e.fs.failTo = "3"
	batch := []bus.Message{send("1", "2", "x1"), send("1", "4", "refused"), send("1", "3", "y1"), send("1", "2", "x2")}
	// a send to a user who does not exist: answered to its sender only
	batch[1] = send("1", "9", "refused")
	done, err := e.svc.HandleUpstreamBatch(ctx, batch)
	if err == nil || done != 2 {
		t.Fatalf("batch with a store failure at record 2: done %d, err %v; want 2 and the error", done, err)
	}
	if got := e.stored(t, protocol.DirectConv("1", "2")); !equal(got, []string{"x1"}) {
		t.Fatalf("stored before the failure: %v, want [x1]", got)
	}
	var errs []string
	for _, f := range e.pushes.frames(t, "1") {
		if f["t"] == protocol.TypeError {
			errs = append(errs, f["cmid"].(string)+":"+f["code"].(string))
		}
	}
	if !equal(errs, []string{"refused:" + protocol.CodeNotFound}) {
		t.Fatalf("error frames to the sender: %v", errs)
	}
	if n := len(e.pushes.frames(t, "9")); n != 0 {
		t.Fatalf("the refused record reached someone else: %d frames", n)
	}
	// the consumer hands over the rest again; the outage is over
	e.fs.mu.Lock()
	e.fs.failTo = ""
	e.fs.mu.Unlock()
	if done, err := e.svc.HandleUpstreamBatch(ctx, batch[done:]); err != nil || done != 2 {
		t.Fatalf("retry: done %d, err %v", done, err)
	}
	if got := e.stored(t, protocol.DirectConv("1", "2")); !equal(got, []string{"x1", "x2"}) {
		t.Fatalf("stored in 1:2: %v, want [x1 x2]", got)
	}
	if got := e.stored(t, protocol.DirectConv("1", "3")); !equal(got, []string{"y1"}) {
		t.Fatalf("stored in 1:3: %v, want [y1]", got)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A batch whose records number more keys than one sequence call carries
// (sequence.MaxKeys: every conversation and every inbox is a key) is stored
// whole: the allocation is split into calls. Without that the batch failed on
// every redelivery and held its lane.
func TestBatchNeedingMoreSequenceKeysThanOneCallIsStored(t *testing.T) {
	e := newBatchEnv(t)
	ctx := context.Background()
	const users = 150 // 11,175 pairs
	for i := range users {
		id := "m" + strconv.Itoa(i)
		if err := e.db.CreateUser(ctx, store.User{ID: id, Username: "user" + id, DisplayName: "u", PasswordHash: "x", CreatedAt: 1}); err != nil {
			t.Fatal(err)
		}
	}
	var batch []bus.Message
	for a := 0; a < users && len(batch) <= sequence.MaxKeys; a++ {
		for b := a + 1; b < users && len(batch) <= sequence.MaxKeys; b++ {
			batch = append(batch, send("m"+strconv.Itoa(a), "m"+strconv.Itoa(b), "p"+strconv.Itoa(len(batch))))
		}
	}
	// len(batch) conversations + 150 inboxes > MaxKeys keys
	if done, err := e.svc.HandleUpstreamBatch(ctx, batch); err != nil || done != len(batch) {
		t.Fatalf("batch of %d sends: done %d, err %v", len(batch), done, err)
	}
	for _, i := range []int{0, len(batch) / 2, len(batch) - 1} {
		var up messageapi.Upstream
		if err := json.Unmarshal(batch[i].Body, &up); err != nil {
			t.Fatal(err)
		}
		if got := e.stored(t, up.Conv); !equal(got, []string{up.CMID}) {
			t.Fatalf("%s: stored %v, want [%s]", up.Conv, got, up.CMID)
		}
	}
}
