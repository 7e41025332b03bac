package rocketmq_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/imkube/imkube/internal/bus"
	"github.com/imkube/imkube/internal/bus/rocketmq"
)

// The broker-side lag: what a group has not committed, growing while its
// consumer is stalled (the consumer's own view stops at its last pull).
func TestLagReaderSeesStalledConsumer(t *testing.T) {
	r := newRig(t)
	id := strings.ToLower(rand.Text()[:10])
	cfg := rocketmq.Config{
		NameServers:   r.namesrv,
		UpstreamTopic: "T_LAG_" + id,
		PushTopic:     "T_LAGP_" + id,
		UpstreamGroup: "t-lag-" + id,
		ProducerGroup: "t-producer-" + id,
		InstanceName:  "t-" + id,
		RetryPause:    200 * time.Millisecond,
		Logger:        slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	}
	r.topic(t, cfg.UpstreamTopic, 4)
	b, err := rocketmq.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = b.Close()
		pr := &rocketmq.Pruner{NameServers: r.namesrv, PushTopic: cfg.UpstreamTopic}
		if err := pr.DeleteGroup(context.Background(), cfg.UpstreamGroup); err != nil {
			t.Logf("delete group: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	lr := &rocketmq.LagReader{NameServers: r.namesrv}
	lag := func() int64 {
		t.Helper()
		n, err := lr.Lag(ctx, cfg.UpstreamTopic, cfg.UpstreamGroup)
		if err != nil {
			t.Fatalf("Lag: %v", err)
		}
		return n
	}
	publish := func(n int, prefix string) {
		t.Helper()
		for i := range n {
			m := bus.Message{Key: fmt.Sprintf("k%d", i%7), Body: []byte(fmt.Sprintf("%s-%d", prefix, i))}
			if err := b.PublishUpstream(ctx, m); err != nil {
				t.Fatalf("publish: %v", err)
			}
		}
	}
	// waitLag polls until the lag satisfies ok (offsets are committed every
	// few seconds by the client).
	waitLag := func(what string, ok func(int64) bool) int64 {
		t.Helper()
		var n int64
		deadline := time.Now().Add(60 * time.Second)
		for {
			n = lag()
			if ok(n) || time.Now().After(deadline) {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		if !ok(n) {
			t.Fatalf("lag %d: want %s", n, what)
		}
		return n
	}

	// The name server learns the new topic's route from the broker's next
	// registration (seconds, more under load): until then Lag fails.
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(time.Second) {
		_, err := lr.Lag(ctx, cfg.UpstreamTopic, cfg.UpstreamGroup)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Lag on a new topic still fails after 60s: %v", err)
		}
	}
	// No consumer has ever run: every message counts.
	if n := lag(); n != 0 {
		t.Fatalf("lag of an empty topic = %d, want 0", n)
	}
	publish(10, "before")
	waitLag("10 before any consumer ran", func(n int64) bool { return n == 10 })

	// A consumer that works: the lag drains to 0.
	stall := make(chan struct{})
	stalled := make(chan struct{}, 1)
	done := make(chan error, 1)
	cctx, stop := context.WithCancel(ctx)
	go func() {
		done <- b.ConsumeUpstream(cctx, func(hctx context.Context, m bus.Message) error {
			if strings.HasPrefix(string(m.Body), "after") {
				select {
				case stalled <- struct{}{}:
				default:
				}
				select { // stalled until the test lets go
				case <-stall:
				case <-hctx.Done():
					return hctx.Err()
				}
			}
			return nil
		})
	}()
	waitLag("0 once the consumer caught up", func(n int64) bool { return n == 0 })

	// The consumer stalls (it keeps running and pulling): the lag grows
	// with every message published.
	publish(15, "after")
	select {
	case <-stalled:
	case <-ctx.Done():
		t.Fatal("the consumer never received a message published after the catch-up")
	}
	first := waitLag("15 with the consumer stalled", func(n int64) bool { return n == 15 })
	publish(5, "after-more")
	waitLag("20 with the consumer still stalled", func(n int64) bool { return n == first+5 })

	// Let go: the lag drains again.
	close(stall)
	waitLag("0 after the stall ended", func(n int64) bool { return n == 0 })
	stop()
	if err := <-done; err != nil {
		t.Errorf("ConsumeUpstream: %v", err)
	}
}

func TestLagReaderErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := (&rocketmq.LagReader{}).Lag(ctx, "T", "g"); err == nil {
		t.Error("Lag without name servers: no error")
	}
	if _, err := (&rocketmq.LagReader{NameServers: []string{"127.0.0.1:1"}}).Lag(ctx, "", "g"); err == nil {
		t.Error("Lag without topic: no error")
	}
	// Nothing listens on port 1.
	if _, err := (&rocketmq.LagReader{NameServers: []string{"127.0.0.1:1"}, Timeout: time.Second}).Lag(ctx, "T", "g"); err == nil {
		t.Error("Lag with an unreachable name server: no error")
	}
}
