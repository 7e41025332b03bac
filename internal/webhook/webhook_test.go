package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/imkube/imkube/internal/config"
	"github.com/imkube/imkube/internal/store"
)

func TestSignatureIsSha256HexOfTheBody(t *testing.T) {
	key, body := []byte("k3y"), []byte(`{"event":"message.stored"}`)
	m := hmac.New(sha256.New, key)
	m.Write(body)
	want := "sha256=" + hex.EncodeToString(m.Sum(nil))
	if got := Sign(key, body); got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
	if !Verify(key, body, want) || Verify(key, append(body, ' '), want) || Verify([]byte("other"), body, want) {
		t.Fatal("Verify accepts a changed body or key")
	}
}

// memOutbox is an in-memory OutboxStore.
type memOutbox struct {
	mu      sync.Mutex
	entries []store.OutboxEntry
	nextID  int64
}

func (m *memOutbox) add(target, key, payload string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nextID++
	m.entries = append(m.entries, store.OutboxEntry{ID: m.nextID, Target: target, Key: key, Kind: "message.stored", Payload: payload})
}

func (m *memOutbox) PendingOutbox(_ context.Context, limit int) ([]store.OutboxEntry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.entries[:min(limit, len(m.entries))]), nil
}

func (m *memOutbox) DoneOutbox(_ context.Context, id int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.entries = slices.DeleteFunc(m.entries, func(e store.OutboxEntry) bool { return e.ID == id })
	return nil
}

func (m *memOutbox) RetryOutbox(_ context.Context, id int64, nextAt int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.entries {
		if m.entries[i].ID == id {
			m.entries[i].Attempts++
			m.entries[i].NextAt = nextAt
		}
	}
	return nil
}

func (m *memOutbox) CountOutbox(context.Context) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return int64(len(m.entries)), nil
}

func (m *memOutbox) TrimOutbox(_ context.Context, max int64) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := int64(len(m.entries)) - max
	if n <= 0 {
		return 0, nil
	}
	m.entries = m.entries[n:]
	return n, nil
}

func (m *memOutbox) TakeLease(context.Context, string, string, time.Duration) (bool, error) {
	return true, nil
}
func (m *memOutbox) ReleaseLease(context.Context, string, string) error { return nil }

func (m *memOutbox) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries)
}

func TestOutboxKeepsOrderPerKeyWhileAFailingKeyDoesNotBlockOthers(t *testing.T) {
	var mu sync.Mutex
	var got []string
	failsLeft := 3 // the first three attempts for key "a" fail
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if string(b)[0] == 'a' && failsLeft > 0 {
			failsLeft--
			w.WriteHeader(503)
			return
		}
		got = append(got, string(b))
	}))
	defer srv.Close()
	st := &memOutbox{}
	for i := 1; i <= 3; i++ {
		st.add(store.OutboxEvents, "a", "a"+string(rune('0'+i)))
		st.add(store.OutboxEvents, "b", "b"+string(rune('0'+i)))
	}
	hooks := New(Deps{Config: func() config.Webhooks { return config.Webhooks{Events: config.Events{URL: srv.URL}} }, Secret: []byte("k")})
	o := NewOutbox(OutboxConfig{RetryBase: 10 * time.Millisecond, Poll: 5 * time.Millisecond}, hooks, st, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- o.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for st.len() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	var a, b []string
	for _, g := range got {
		if g[0] == 'a' {
			a = append(a, g)
		} else {
			b = append(b, g)
		}
	}
	if !slices.Equal(a, []string{"a1", "a2", "a3"}) || !slices.Equal(b, []string{"b1", "b2", "b3"}) {
		t.Fatalf("delivered a=%v b=%v, want each key complete and in order", a, b)
	}
	if idx := slices.Index(got, "b3"); idx > slices.Index(got, "a1") {
		t.Fatalf("delivery order %v: key b waited for the failing key a", got)
	}
}

func TestOutboxDeadLettersAfterMaxAttemptsAndMovesOn(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if string(b) == "poison" {
			w.WriteHeader(500)
		}
	}))
	defer srv.Close()
	st := &memOutbox{}
	st.add(store.OutboxEvents, "c", "poison")
	st.add(store.OutboxEvents, "c", "after")
	hooks := New(Deps{Config: func() config.Webhooks { return config.Webhooks{Events: config.Events{URL: srv.URL}} }})
	o := NewOutbox(OutboxConfig{RetryBase: time.Millisecond, RetryMax: 5 * time.Millisecond, MaxAttempts: 3, Poll: time.Millisecond}, hooks, st, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go o.Run(ctx)
	for st.len() > 0 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	if st.len() != 0 {
		t.Fatalf("outbox still holds %d entries: the poison entry was not dead-lettered", st.len())
	}
}

func TestBackoffDoublesUpToTheCap(t *testing.T) {
	o := NewOutbox(OutboxConfig{RetryBase: 100 * time.Millisecond, RetryMax: time.Second}, nil, &memOutbox{}, nil, nil)
	var ds []time.Duration
	for a := 0; a < 8; a++ {
		ds = append(ds, o.backoff(a))
	}
	if !sort.SliceIsSorted(ds[:4], func(i, j int) bool { return ds[i] < ds[j] }) {
		t.Errorf("backoff not increasing: %v", ds)
	}
	for _, d := range ds {
		if d < 80*time.Millisecond || d > 1200*time.Millisecond {
			t.Errorf("backoff %v outside base-20%%..cap+20%%", d)
		}
	}
}

// pushStore records the outbox entries of offline pushes; every user has a
// token.
type pushStore struct {
	mu      sync.Mutex
	entries []store.OutboxEntry
}

func (p *pushStore) PushTokens(_ context.Context, users []string) (map[string][]store.PushToken, error) {
	out := map[string][]store.PushToken{}
	for _, u := range users {
		out[u] = []store.PushToken{{Provider: "fcm", Token: "tok-" + u}}
	}
	return out, nil
}

func (p *pushStore) AddOutbox(_ context.Context, e store.OutboxEntry) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.entries = append(p.entries, e)
	return nil
}

// Conversations' lanes deliver in parallel, so notices can be added out of
// storage order; the batch lists them by message id (storage order).
func TestOfflinePushBatchListsMessagesInStorageOrder(t *testing.T) {
	hooks := New(Deps{Config: func() config.Webhooks {
		return config.Webhooks{OfflinePush: config.OfflinePush{URL: "http://127.0.0.1:1/push"}}
	}, Secret: []byte("s")})
	st := &pushStore{}
	p := NewPusher(PushConfig{Window: time.Hour}, hooks, st, nil, nil)
	for _, n := range []Notice{
		{MID: "1000", Preview: "hi 1", TS: 5},
		{MID: "1001", Preview: "hi 2", TS: 5},
		{MID: "999999", Preview: "direct", TS: 6}, // stored after "hi 3", added before it
		{MID: "99999", Preview: "hi 3", TS: 6},
	} {
		p.Add("bob", n)
	}
	p.flush(context.Background(), true)
	if len(st.entries) != 1 {
		t.Fatalf("%d outbox entries, want 1", len(st.entries))
	}
	var req PushRequest
	if err := json.Unmarshal([]byte(st.entries[0].Payload), &req); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range req.Messages {
		got = append(got, m.Preview)
	}
	if want := []string{"hi 1", "hi 2", "hi 3", "direct"}; !slices.Equal(got, want) {
		t.Fatalf("batch %v, want %v", got, want)
	}
}
