package bus_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/imkube/imkube/internal/bus"
	"github.com/imkube/imkube/internal/bus/bustest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newInProc(t *testing.T) bustest.Bus {
	b := bus.NewInProc(bus.InProcOptions{RetryPause: 10 * time.Millisecond})
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func TestInProcConformance(t *testing.T) {
	bustest.Run(t, newInProc, bustest.Options{Keys: 50, PerKey: 200})
}

func TestInProcPublishFails(t *testing.T) {
	tests := []struct {
		name    string
		give    func(t *testing.T) *bus.InProc
		wantErr error
	}{
		{
			name: "after Close with ErrUnavailable",
			give: func(t *testing.T) *bus.InProc {
				b := bus.NewInProc(bus.InProcOptions{})
				_ = b.Close()
				return b
			},
			wantErr: bus.ErrUnavailable,
		},
		{
			name: "when MaxPending messages wait with ErrUnavailable",
			give: func(t *testing.T) *bus.InProc {
				b := bus.NewInProc(bus.InProcOptions{MaxPending: 2})
				t.Cleanup(func() { _ = b.Close() })
				for range 2 {
					if err := b.PublishUpstream(context.Background(), bus.Message{Key: "k"}); err != nil {
						t.Fatal(err)
					}
				}
				return b
			},
			wantErr: bus.ErrUnavailable,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.give(t)
			err := b.PublishUpstream(context.Background(), bus.Message{Key: "k"})
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("PublishUpstream = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestInProcCloseStopsConsumers(t *testing.T) {
	b := bus.NewInProc(bus.InProcOptions{})
	done := make(chan error, 2)
	go func() {
		done <- b.ConsumeUpstream(context.Background(), func(context.Context, bus.Message) error { return nil })
	}()
	go func() {
		done <- b.ConsumePush(context.Background(), "gw", func(context.Context, bus.Message) error { return nil })
	}()
	if err := b.PublishPush(context.Background(), "gw", bus.Message{Key: "k"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := <-done; err != nil {
			t.Errorf("consumer returned %v after Close, want nil", err)
		}
	}
}

func TestInProcConformanceWithLinger(t *testing.T) {
	bustest.Run(t, func(t *testing.T) bustest.Bus {
		b := bus.NewInProc(bus.InProcOptions{RetryPause: 10 * time.Millisecond, Linger: time.Millisecond})
		t.Cleanup(func() { _ = b.Close() })
		return b
	}, bustest.Options{Keys: 50, PerKey: 200})
}

// A batch consumer woken on an empty lane waits Linger for more: a message
// published while it waits joins the first batch.
func TestInProcLingerJoinsBatch(t *testing.T) {
	b := bus.NewInProc(bus.InProcOptions{Lanes: 1, Linger: 2 * time.Second})
	t.Cleanup(func() { _ = b.Close() })
	ctx, cancel := context.WithCancel(t.Context())
	batches := make(chan int, 4)
	done := make(chan error, 1)
	go func() {
		done <- b.ConsumeUpstreamBatch(ctx, 8, func(_ context.Context, msgs []bus.Message) (int, error) {
			batches <- len(msgs)
			return len(msgs), nil
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	time.Sleep(50 * time.Millisecond) // the consumer waits on the empty lane
	if err := b.PublishUpstream(ctx, bus.Message{Key: "k", Body: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the consumer is lingering now
	if err := b.PublishUpstream(ctx, bus.Message{Key: "k", Body: []byte("2")}); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-batches:
		if n != 2 {
			t.Fatalf("first batch has %d messages, want 2 (the second joined while lingering)", n)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no batch")
	}
}

// A batch takes the heads of every free lane, not one lane's: eight keys
// with one message each, waiting before the consumer starts, come as one
// batch (a batch per lane would be eight batches of one).
func TestInProcBatchSpansLanes(t *testing.T) {
	b := bus.NewInProc(bus.InProcOptions{Lanes: 16, BatchWorkers: 1})
	t.Cleanup(func() { _ = b.Close() })
	lanes := map[uint32]bool{}
	var keys []string
	for i := 0; len(keys) < 8; i++ {
		k := fmt.Sprintf("conv%d", i)
		if l := bus.KeyHash(k) % 16; !lanes[l] {
			lanes[l] = true
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		if err := b.PublishUpstream(t.Context(), bus.Message{Key: k, Body: []byte(k)}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	batches := make(chan []string, 8)
	done := make(chan error, 1)
	go func() {
		done <- b.ConsumeUpstreamBatch(ctx, 64, func(_ context.Context, msgs []bus.Message) (int, error) {
			var got []string
			for _, m := range msgs {
				got = append(got, m.Key)
			}
			batches <- got
			return len(msgs), nil
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case got := <-batches:
		if len(got) != len(keys) {
			t.Fatalf("first batch has keys %v, want all of %v", got, keys)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no batch")
	}
}

// A failed message pauses its lane only: the other lanes' messages are
// handled during the pause, the failed one comes again after it.
func TestInProcBatchFailurePausesOnlyItsLane(t *testing.T) {
	b := bus.NewInProc(bus.InProcOptions{Lanes: 16, BatchWorkers: 1, RetryPause: time.Hour})
	t.Cleanup(func() { _ = b.Close() })
	ctx, cancel := context.WithCancel(t.Context())
	handled := make(chan string, 16)
	done := make(chan error, 1)
	go func() {
		done <- b.ConsumeUpstreamBatch(ctx, 64, func(_ context.Context, msgs []bus.Message) (int, error) {
			for i, m := range msgs {
				if string(m.Body) == "fail" {
					return i, errors.New("transient")
				}
				handled <- string(m.Body)
			}
			return len(msgs), nil
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	pub := func(k, body string) {
		if err := b.PublishUpstream(ctx, bus.Message{Key: k, Body: []byte(body)}); err != nil {
			t.Fatal(err)
		}
	}
	pub("a", "fail")
	pub("a", "a2")
	other := "b"
	for i := 0; bus.KeyHash(other)%16 == bus.KeyHash("a")%16; i++ {
		other = fmt.Sprintf("b%d", i)
	}
	pub(other, "b1")
	select {
	case got := <-handled:
		if got != "b1" {
			t.Fatalf("handled %q while key a's lane is paused, want b1", got)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("another lane's message waited for the failed lane's pause")
	}
	select {
	case got := <-handled:
		t.Fatalf("handled %q during the failed lane's pause", got)
	case <-time.After(200 * time.Millisecond):
	}
}

// A record published as a Value reaches the consumer as that value, not
// encoded and decoded (the in-process bus's whole point in imkube dev); a
// Body is still copied so its publisher may reuse the buffer.
func TestInProcHandsValuesOverUnencoded(t *testing.T) {
	b := bus.NewInProc(bus.InProcOptions{})
	t.Cleanup(func() { _ = b.Close() })
	type rec struct{ N int }
	published := &rec{N: 7}
	body := []byte("body")
	got := make(chan bus.Message, 2)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = b.ConsumePush(ctx, "gw", func(_ context.Context, m bus.Message) error { got <- m; return nil })
	}()
	t.Cleanup(func() { cancel(); <-done })
	if err := b.PublishPush(ctx, "gw", bus.Message{Key: "k", Value: published}); err != nil {
		t.Fatal(err)
	}
	if err := b.PublishPush(ctx, "gw", bus.Message{Key: "k", Body: body}); err != nil {
		t.Fatal(err)
	}
	body[0] = 'X'
	first, second := <-got, <-got
	if first.Value != published || first.Body != nil {
		t.Errorf("value record arrived as Value %v, Body %q; want the published pointer and no body", first.Value, first.Body)
	}
	if string(second.Body) != "body" || second.Value != nil {
		t.Errorf("body record arrived as %q (value %v), want a copy of \"body\"", second.Body, second.Value)
	}
}

func TestMessageEncoded(t *testing.T) {
	for _, tt := range []struct {
		name string
		give bus.Message
		want string
	}{
		{"body as it is", bus.Message{Body: []byte("raw"), Value: struct{ A int }{1}}, "raw"},
		{"value as JSON", bus.Message{Value: &struct {
			A int `json:"a"`
		}{1}}, `{"a":1}`},
		{"neither", bus.Message{}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.give.Encoded()
			if err != nil || string(got) != tt.want {
				t.Errorf("Encoded() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	if _, err := (bus.Message{Value: func() {}}).Encoded(); err == nil {
		t.Error("a value JSON cannot hold encoded without error")
	}
}

func TestDecodeCopiesAValueOrDecodesTheBody(t *testing.T) {
	type rec struct {
		N int `json:"n"`
	}
	published := &rec{N: 1}
	got, err := bus.Decode[rec](bus.Message{Value: published})
	if err != nil || got.N != 1 || got == published {
		t.Fatalf("from a value: %+v %v (want a copy of the published record)", got, err)
	}
	if got, err := bus.Decode[rec](bus.Message{Body: []byte(`{"n":2}`)}); err != nil || got.N != 2 {
		t.Fatalf("from a body: %+v %v", got, err)
	}
	if _, err := bus.Decode[rec](bus.Message{Body: []byte(`{"n":`)}); err == nil {
		t.Fatal("a malformed body decoded without error")
	}
}
