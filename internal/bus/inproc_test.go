package bus_test

import (
	"context"
	"errors"
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
