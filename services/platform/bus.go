package platform

import (
	"context"
	"log/slog"

	"github.com/imkube/imkube/services/bus"
	"github.com/imkube/imkube/services/bus/rocketmq"
	"github.com/imkube/imkube/services/config"
)

// MessageBus is the message service's side of the bus.
type MessageBus interface {
	bus.UpstreamConsumer
	bus.PushPublisher
	Close() error
}

// GatewayBus is a gateway's side of the bus.
type GatewayBus interface {
	bus.UpstreamPublisher
	bus.PushPublisher
	bus.PushConsumer
	Close() error
}

// rocketConfig reads the bus names: IMKUBE_UPSTREAM_TOPIC, IMKUBE_PUSH_TOPIC
// and IMKUBE_BUS_GROUP_PREFIX (prefixing every consumer/producer group) let
// several platforms or test runs share one RocketMQ cluster.
func (d *Deps) rocketConfig(log *slog.Logger) rocketmq.Config {
	prefix := config.Env("IMKUBE_BUS_GROUP_PREFIX", "")
	return rocketmq.Config{
		NameServers:     d.NameServers(),
		UpstreamTopic:   config.Env("IMKUBE_UPSTREAM_TOPIC", bus.TopicUpstream),
		PushTopic:       config.Env("IMKUBE_PUSH_TOPIC", rocketmq.TopicPush),
		UpstreamGroup:   prefix + "imkube-message",
		PushGroupPrefix: prefix + "imkube-push-",
		ProducerGroup:   prefix + "imkube-producer",
		Logger:          log,
	}
}

// MessageBus connects the message service to RocketMQ.
func (d *Deps) MessageBus(_ context.Context, log *slog.Logger) (MessageBus, error) {
	return rocketmq.New(d.rocketConfig(log))
}

// GatewayBus connects a gateway to RocketMQ.
func (d *Deps) GatewayBus(_ context.Context, _ string, log *slog.Logger) (GatewayBus, error) {
	return rocketmq.New(d.rocketConfig(log))
}
