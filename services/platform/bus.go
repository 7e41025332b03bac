package platform

import (
	"context"
	"log/slog"
	"os"

	"github.com/imkube/imkube/internal/bus"
	"github.com/imkube/imkube/internal/bus/rocketmq"
	"github.com/imkube/imkube/internal/config"
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
//
// The client instance name is IMKUBE_INSTANCE_NAME (default: the host name,
// which is the pod name in Kubernetes) plus the role: stable across restarts
// of the same pod, so a restarted message service takes its queue locks back
// at once instead of waiting for the broker to expire them (60 s).
func (d *Deps) rocketConfig(log *slog.Logger, role string) rocketmq.Config {
	prefix := config.Env("IMKUBE_BUS_GROUP_PREFIX", "")
	host, _ := os.Hostname()
	return rocketmq.Config{
		InstanceName:    config.Env("IMKUBE_INSTANCE_NAME", host) + "-" + role,
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
	rocketmq.RouteClientLogs(log, slog.LevelWarn)
	return rocketmq.New(d.rocketConfig(log, "message"))
}

// GatewayBus connects a gateway to RocketMQ.
func (d *Deps) GatewayBus(_ context.Context, gatewayID string, log *slog.Logger) (GatewayBus, error) {
	rocketmq.RouteClientLogs(log, slog.LevelWarn)
	return rocketmq.New(d.rocketConfig(log, "gateway-"+gatewayID))
}
