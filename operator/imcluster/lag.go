package imcluster

import (
	"context"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
	"github.com/imkube/imkube/internal/telemetry"
	"github.com/imkube/imkube/operator/internal/render"
	"github.com/imkube/imkube/operator/rocketmq"
)

// LagFunc reads the lag of group on topic from the brokers behind
// nameServers (internal/bus/rocketmq.LagReader).
type LagFunc func(ctx context.Context, nameServers []string, topic, group string) (int64, error)

// LagExporter publishes, for every IMCluster, the lag of its message
// service's consumer group on its upstream topic as the brokers see it
// (imkube_broker_consumer_lag on the operator's /metrics): the message
// autoscaler's metric. It comes from the operator, not from the message pods,
// so it keeps growing when every message pod is stalled, crashing or gone.
// It runs on the leader only (one series per cluster).
type LagExporter struct {
	Client  client.Reader
	Lag     LagFunc
	Metrics *telemetry.Operator
	Log     logr.Logger
	// Interval between passes (default 15s; the lag of one cluster is one
	// request per broker).
	Interval time.Duration

	failing map[string]bool // namespace/name -> the last read failed (log once)
}

var _ manager.Runnable = (*LagExporter)(nil)

// Start runs passes until ctx ends (manager.Runnable; leader only).
func (e *LagExporter) Start(ctx context.Context) error {
	if e.Interval <= 0 {
		e.Interval = 15 * time.Second
	}
	t := time.NewTicker(e.Interval)
	defer t.Stop()
	for {
		e.Pass(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Pass reads the lag of every IMCluster once; a cluster whose lag cannot be
// read loses its series (an autoscaler then keeps its replica count rather
// than acting on a stale value).
func (e *LagExporter) Pass(ctx context.Context) {
	if e.failing == nil {
		e.failing = map[string]bool{}
	}
	var list imv1.IMClusterList
	if err := e.Client.List(ctx, &list); err != nil {
		e.Log.Error(err, "listing IMClusters for the consumer lag")
		return
	}
	live := map[string]bool{}
	for i := range list.Items {
		c := &list.Items[i]
		key := c.Namespace + "/" + c.Name
		if c.DeletionTimestamp != nil {
			continue
		}
		live[key] = true
		iso := render.Isolation(c)
		group := render.MessageGroup(iso.ConsumerGroupPrefix)
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		n, err := e.Lag(rctx, rocketmq.InNamespace(c.Spec.Dependencies.RocketMQ.NameServers, c.Namespace), iso.UpstreamTopic, group)
		cancel()
		if err != nil {
			if !e.failing[key] && ctx.Err() == nil {
				e.Log.Error(err, "reading the consumer lag from the brokers", "cluster", key, "topic", iso.UpstreamTopic, "group", group)
			}
			e.failing[key] = true
			e.Metrics.ClearConsumerLag(c.Namespace, c.Name)
			continue
		}
		delete(e.failing, key)
		e.Metrics.SetConsumerLag(c.Namespace, c.Name, group, iso.UpstreamTopic, n)
	}
	for _, key := range e.Metrics.ConsumerLagClusters() {
		if !live[key] {
			ns, name, _ := strings.Cut(key, "/")
			e.Metrics.ClearConsumerLag(ns, name)
			delete(e.failing, key)
		}
	}
}
