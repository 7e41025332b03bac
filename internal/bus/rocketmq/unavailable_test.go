package rocketmq_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/imkube/imkube/internal/bus"
	"github.com/imkube/imkube/internal/bus/rocketmq"
)

func TestPublishWithoutBrokerFailsRetryable(t *testing.T) {
	// A name server address where nothing listens.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	b, err := rocketmq.New(rocketmq.Config{NameServers: []string{addr}, SendTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tests := []struct {
		name string
		give func(ctx context.Context) error
	}{
		{"upstream", func(ctx context.Context) error {
			return b.PublishUpstream(ctx, bus.Message{Key: "u:a:b", Body: []byte("x")})
		}},
		{"push", func(ctx context.Context) error { return b.PublishPush(ctx, "gw-1", bus.Message{Body: []byte("x")}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.give(context.Background()); !errors.Is(err, bus.ErrUnavailable) {
				t.Errorf("publish = %v, want an error wrapping bus.ErrUnavailable", err)
			}
		})
	}
}

func TestPublishRejectsBadGatewayIDs(t *testing.T) {
	b, err := rocketmq.New(rocketmq.Config{NameServers: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, gw := range []string{"", "gw 1", "gw||2"} {
		if err := b.PublishPush(context.Background(), gw, bus.Message{Body: []byte("x")}); err == nil {
			t.Errorf("PublishPush(%q) succeeded, want an error", gw)
		}
	}
}
