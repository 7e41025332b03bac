package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/metric"
)

// Health holds a process's readiness and dependency instruments, what the
// chart's alerts on "not ready" and "MySQL/Redis/RocketMQ unreachable" read.
// A nil *Health records nothing.
type Health struct {
	ready metric.Int64Gauge
	deps  metric.Int64Gauge
	names *labels
}

// Dependency label values for Health.SetDependencyUp.
const (
	DependencyMySQL    = "mysql"
	DependencyRedis    = "redis"
	DependencyRocketMQ = "rocketmq"
)

// NewHealth creates the health instruments on mp (nil: no-op).
func NewHealth(mp metric.MeterProvider) (*Health, error) {
	b := builder{m: meter(mp)}
	h := &Health{
		ready: b.gauge("imkube_process_ready", "1 when the process's /readyz answers ready, 0 while it waits for a dependency, a loop failed or it drains."),
		deps:  b.gauge("imkube_dependency_up", "1 when the last reachability check of the dependency (mysql, redis, rocketmq) from this process passed, 0 when it failed."),
		names: newLabels("dependency"),
	}
	if err := b.err(); err != nil {
		return nil, err
	}
	return h, nil
}

// SetReady records whether the process is ready.
func (h *Health) SetReady(ready bool) {
	if h == nil {
		return
	}
	h.ready.Record(context.Background(), b2i(ready))
}

// SetDependencyUp records the result of one reachability check of
// dependency (DependencyMySQL, DependencyRedis or DependencyRocketMQ).
func (h *Health) SetDependencyUp(dependency string, up bool) {
	if h == nil {
		return
	}
	h.deps.Record(context.Background(), b2i(up), h.names.opt(dependency))
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
