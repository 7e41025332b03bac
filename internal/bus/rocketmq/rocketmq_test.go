package rocketmq_test

import (
	"context"
	"crypto/rand"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/admin"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/imkube/imkube/internal/bus"
	"github.com/imkube/imkube/internal/bus/bustest"
	"github.com/imkube/imkube/internal/bus/rocketmq"
	"github.com/imkube/imkube/internal/testenv"
)

func TestMain(m *testing.M) {
	rocketmq.RouteClientLogs(slog.New(slog.NewTextHandler(os.Stderr, nil)), slog.LevelError)
	// Our goroutines must all stop; the client library's own ones outlive
	// Shutdown (apache/rocketmq-client-go#1147) and are ignored here.
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/patrickmn/go-cache.(*janitor).Run"),
		goleak.IgnoreAnyFunction("github.com/apache/rocketmq-client-go/v2/primitive.WithRecover"),
		goleak.IgnoreAnyFunction("github.com/apache/rocketmq-client-go/v2/consumer.(*pushConsumer).pullMessage"),
	)
}

// rig is the broker of hack/deps.sh and an admin client that creates a fresh
// pair of topics per test, so tests never see each other's messages.
type rig struct {
	namesrv []string
	broker  string
	admin   admin.Admin
}

func newRig(t *testing.T) *rig {
	ns := testenv.Require(t, "IMKUBE_ROCKETMQ_NAMESRV")
	broker := testenv.Require(t, "IMKUBE_ROCKETMQ_BROKER")
	servers := strings.Split(ns, ";")
	a, err := admin.NewAdmin(admin.WithResolver(primitive.NewPassthroughResolver(servers)))
	if err != nil {
		t.Fatalf("rocketmq admin: %v", err)
	}
	t.Cleanup(func() { _ = a.Close() })
	// The broker may re-create a group for a pull that was held when the
	// group was deleted: remove what earlier runs of these tests left.
	pr := &rocketmq.Pruner{NameServers: servers, PushTopic: bus.TopicUpstream, PushGroupPrefix: "t-"}
	if _, err := pr.Prune(context.Background(), func(string) bool { return false }); err != nil {
		t.Logf("prune leftovers: %v", err)
	}
	return &rig{namesrv: servers, broker: broker, admin: a}
}

func (r *rig) topic(t *testing.T, name string, queues int) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := r.admin.CreateTopic(ctx, admin.WithTopicCreate(name), admin.WithBrokerAddrCreate(r.broker),
		admin.WithReadQueueNums(queues), admin.WithWriteQueueNums(queues))
	if err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := r.admin.DeleteTopic(ctx, admin.WithTopicDelete(name), admin.WithBrokerAddrDelete(r.broker),
			admin.WithNameSrvAddr(r.namesrv)); err != nil {
			t.Logf("delete topic %s: %v", name, err)
		}
	})
}

// group makes a topic of queues queues for a message-service group of this
// test alone (deleted at the end) and returns the Config of one member of
// it, named instance.
func (r *rig) group(t *testing.T, queues int) func(instance string) rocketmq.Config {
	id := strings.ToLower(rand.Text()[:10])
	r.topic(t, "T_UP_"+id, queues)
	t.Cleanup(func() {
		pr := &rocketmq.Pruner{NameServers: r.namesrv, PushTopic: "T_UP_" + id}
		if err := pr.DeleteGroup(context.Background(), "t-message-"+id); err != nil {
			t.Errorf("delete upstream group: %v", err)
		}
	})
	return func(instance string) rocketmq.Config {
		return rocketmq.Config{
			NameServers:   r.namesrv,
			UpstreamTopic: "T_UP_" + id, PushTopic: "T_PUSH_" + id,
			UpstreamGroup: "t-message-" + id, PushGroupPrefix: "t-push-" + id + "-", ProducerGroup: "t-producer-" + id,
			InstanceName: "t-" + id + "-" + instance,
			RetryPause:   200 * time.Millisecond,
			StopTimeout:  10 * time.Second,
			Logger:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		}
	}
}

func (r *rig) newBus(t *testing.T) bustest.Bus {
	id := strings.ToLower(rand.Text()[:10])
	cfg := rocketmq.Config{
		NameServers:     r.namesrv,
		UpstreamTopic:   "T_UP_" + id,
		PushTopic:       "T_PUSH_" + id,
		UpstreamGroup:   "t-message-" + id,
		PushGroupPrefix: "t-push-" + id + "-",
		ProducerGroup:   "t-producer-" + id,
		InstanceName:    "t-" + id,
		RetryPause:      200 * time.Millisecond,
		Logger:          slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	}
	r.topic(t, cfg.UpstreamTopic, 8)
	r.topic(t, cfg.PushTopic, 8)
	b, err := rocketmq.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		// Leave nothing behind in the broker: the groups of this test.
		pr := &rocketmq.Pruner{NameServers: r.namesrv, PushTopic: cfg.PushTopic, PushGroupPrefix: cfg.PushGroupPrefix}
		ctx := context.Background()
		if _, err := pr.Prune(ctx, func(string) bool { return false }); err != nil {
			t.Errorf("prune push groups: %v", err)
		}
		if err := pr.DeleteGroup(ctx, cfg.UpstreamGroup); err != nil {
			t.Errorf("delete upstream group: %v", err)
		}
	})
	return b
}

func TestRocketMQConformance(t *testing.T) {
	r := newRig(t)
	bustest.Run(t, r.newBus, bustest.Options{Wait: 3 * time.Minute, Keys: 20, PerKey: 30})
}

func TestPrunerRemovesGroupsOfDeadGateways(t *testing.T) {
	r := newRig(t)
	id := strings.ToLower(rand.Text()[:10])
	cfg := rocketmq.Config{
		NameServers:     r.namesrv,
		UpstreamTopic:   "T_UP_" + id,
		PushTopic:       "T_PUSH_" + id,
		PushGroupPrefix: "t-prune-" + id + "-",
		ProducerGroup:   "t-producer-" + id,
		InstanceName:    "t-" + id,
	}
	r.topic(t, cfg.PushTopic, 2)
	b, err := rocketmq.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// Run and stop the push consumers of two gateways: the broker now knows their groups.
	for _, gw := range []string{"gw-dead", "gw-alive"} {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err := b.ConsumePush(ctx, gw, func(context.Context, bus.Message) error { return nil })
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	pr := &rocketmq.Pruner{NameServers: r.namesrv, PushTopic: cfg.PushTopic, PushGroupPrefix: cfg.PushGroupPrefix}
	ctx := context.Background()
	alive := func(gw string) bool { return gw == "gw-alive" }
	removed, err := pr.Prune(ctx, alive)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{b.PushGroup("gw-dead")}, removed); diff != "" {
		t.Errorf("first Prune removed (-want +got):\n%s", diff)
	}
	removed, err = pr.Prune(ctx, alive)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 0 {
		t.Errorf("second Prune removed %v, want nothing (gw-dead is gone, gw-alive lives)", removed)
	}
	if err := pr.DeleteGroup(ctx, b.PushGroup("gw-alive")); err != nil {
		t.Errorf("DeleteGroup: %v", err)
	}
}
