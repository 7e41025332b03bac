package imcluster

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
	"github.com/imkube/imkube/operator/internal/render"
	"github.com/imkube/imkube/operator/rocketmq"
)

// GroupPruner is the Pruner of one cluster's push groups
// (internal/bus/rocketmq.Pruner).
type GroupPruner interface {
	Prune(ctx context.Context, alive func(gatewayID string) bool) ([]string, error)
}

// Pruner deletes, from the brokers, the push consumer groups (with their
// retry and dead-letter topics) of gateways that no longer exist: every
// gateway pod leaves one group "<consumerGroupPrefix>imkube-push-<pod>"
// behind. It runs on the leader, every Interval, one cluster at a time with
// at least Gap between two clusters (bounded load on the brokers), and
// deletes a group only when its gateway pod has been gone for Grace (a new
// pod may not be in the cache yet; a broker may re-create a group for a pull
// it held).
type Pruner struct {
	Client client.Reader
	// New returns the pruner of one cluster's groups on nameServers.
	New func(nameServers []string, pushTopic, pushGroupPrefix string) GroupPruner
	Log logr.Logger
	// Interval between passes (default 5m), Grace before a gone gateway's
	// group goes (default 2m), Gap between two clusters (default 2s).
	Interval, Grace, Gap time.Duration

	now  func() time.Time
	wait func(ctx context.Context, d time.Duration) error
	gone map[string]time.Time // namespace/cluster/gateway -> first seen gone
}

var _ manager.Runnable = (*Pruner)(nil)

// Start runs passes until ctx ends (manager.Runnable; leader only).
func (p *Pruner) Start(ctx context.Context) error {
	p.defaults()
	for {
		if err := p.wait(ctx, p.Interval); err != nil {
			return nil
		}
		if err := p.pass(ctx); err != nil {
			p.Log.Error(err, "pruning push groups of gone gateways")
		}
	}
}

func (p *Pruner) defaults() {
	if p.Interval <= 0 {
		p.Interval = 5 * time.Minute
	}
	if p.Grace <= 0 {
		p.Grace = 2 * time.Minute
	}
	if p.Gap <= 0 {
		p.Gap = 2 * time.Second
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.wait == nil {
		p.wait = func(ctx context.Context, d time.Duration) error {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-t.C:
				return nil
			}
		}
	}
	if p.gone == nil {
		p.gone = map[string]time.Time{}
	}
}

// clusterGroups is one cluster's share of a RocketMQ.
type clusterGroups struct {
	c           *imv1.IMCluster
	nameServers []string
	prefix      string // push group prefix
}

// pass prunes every cluster once; errors of one cluster do not stop the others.
func (p *Pruner) pass(ctx context.Context) error {
	p.defaults()
	var list imv1.IMClusterList
	if err := p.Client.List(ctx, &list); err != nil {
		return err
	}
	var all []clusterGroups
	for i := range list.Items {
		c := &list.Items[i]
		if c.DeletionTimestamp != nil {
			continue
		}
		all = append(all, clusterGroups{
			c:           c,
			nameServers: rocketmq.InNamespace(c.Spec.Dependencies.RocketMQ.NameServers, c.Namespace),
			prefix:      render.PushGroupPrefix(render.Isolation(c).ConsumerGroupPrefix),
		})
	}
	seen := map[string]bool{}
	for i, cg := range all {
		if i > 0 {
			if err := p.wait(ctx, p.Gap); err != nil {
				return nil
			}
		}
		live, err := p.gateways(ctx, cg.c)
		if err != nil {
			p.Log.Error(err, "listing gateway pods", "cluster", cg.c.Namespace+"/"+cg.c.Name)
			continue
		}
		key := cg.c.Namespace + "/" + cg.c.Name + "/"
		alive := func(gw string) bool {
			// A longer prefix of another cluster on the same RocketMQ owns
			// the group (overrides are not checked across objects).
			for _, o := range all {
				if o.c != cg.c && len(o.prefix) > len(cg.prefix) && strings.HasPrefix(cg.prefix+gw, o.prefix) &&
					slices.Equal(o.nameServers, cg.nameServers) {
					return true
				}
			}
			seen[key+gw] = true
			if live[gw] {
				delete(p.gone, key+gw)
				return true
			}
			first, ok := p.gone[key+gw]
			if !ok {
				p.gone[key+gw] = p.now()
				return true
			}
			return p.now().Sub(first) < p.Grace
		}
		removed, err := p.New(cg.nameServers, render.Isolation(cg.c).PushTopic, cg.prefix).Prune(ctx, alive)
		if len(removed) > 0 {
			p.Log.Info("deleted the push groups of gone gateways", "cluster", cg.c.Namespace+"/"+cg.c.Name, "groups", removed)
		}
		if err != nil {
			p.Log.Error(err, "pruning push groups", "cluster", cg.c.Namespace+"/"+cg.c.Name)
		}
	}
	for k := range p.gone { // bounded: forget groups no broker lists any more
		if !seen[k] {
			delete(p.gone, k)
		}
	}
	return nil
}

// gateways are the gateway ids (pod names, dots as underscores like the
// group names) of the cluster's pools.
func (p *Pruner) gateways(ctx context.Context, c *imv1.IMCluster) (map[string]bool, error) {
	var pods corev1.PodList
	err := p.Client.List(ctx, &pods, client.InNamespace(c.Namespace), client.MatchingLabels{
		render.LabelName: "imkube", render.LabelInstance: c.Name, render.LabelComponent: render.Gateway,
		render.LabelManagedBy: render.ManagedByValue,
	})
	if err != nil {
		return nil, err
	}
	live := map[string]bool{}
	for _, pod := range pods.Items {
		live[strings.ReplaceAll(pod.Name, ".", "_")] = true
	}
	return live, nil
}
