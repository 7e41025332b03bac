package gatewaypool

import (
	"context"
	"strconv"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/imkube/imkube/operator/internal/render"
)

// AnnotationDeletionCost is read by the ReplicaSet controller on scale-down:
// pods with a lower cost are removed first.
const AnnotationDeletionCost = "controller.kubernetes.io/pod-deletion-cost"

// Connections tells how many client connections a gateway pod holds (its
// imkube_gateway_connections; readyz.HTTP asks the pod's /metrics).
type Connections interface {
	Connections(ctx context.Context, pod *corev1.Pod) (int64, error)
}

// DeletionCost keeps the pod-deletion-cost annotation of every ready gateway
// pod at its connection count, so a scale-down removes the emptiest gateways
// first (fewest clients to move). It runs on the leader every Interval and
// writes a pod only when its count moved by more than a tenth (at least
// MinChange connections) from the annotated value, and at most MaxWrites
// pods per pass: a bounded write rate however many gateways there are.
type DeletionCost struct {
	Client      client.Client
	Connections Connections
	Log         logr.Logger
	// Interval between passes (default 30s); MinChange (default 10) and
	// MaxWrites (default 50) bound the writes.
	Interval  time.Duration
	MinChange int64
	MaxWrites int

	// Ticks drives the passes in tests (nil: a ticker of Interval).
	Ticks <-chan time.Time
}

var _ manager.Runnable = (*DeletionCost)(nil)

// NeedLeaderElection: only the leader writes.
func (d *DeletionCost) NeedLeaderElection() bool { return true }

// Start runs passes until ctx ends (manager.Runnable).
func (d *DeletionCost) Start(ctx context.Context) error {
	if d.Interval <= 0 {
		d.Interval = 30 * time.Second
	}
	if d.MinChange <= 0 {
		d.MinChange = 10
	}
	if d.MaxWrites <= 0 {
		d.MaxWrites = 50
	}
	ticks := d.Ticks
	if ticks == nil {
		t := time.NewTicker(d.Interval)
		defer t.Stop()
		ticks = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticks:
		}
		if err := d.Pass(ctx); err != nil {
			d.Log.Error(err, "updating the deletion cost of gateway pods")
		}
	}
}

// Pass updates the annotation of the gateway pods whose count moved enough.
func (d *DeletionCost) Pass(ctx context.Context) error {
	var pods corev1.PodList
	if err := d.Client.List(ctx, &pods, client.MatchingLabels{
		render.LabelComponent: render.Gateway, render.LabelManagedBy: render.ManagedByValue,
	}); err != nil {
		return err
	}
	writes := 0
	for i := range pods.Items {
		p := &pods.Items[i]
		if writes >= d.MaxWrites {
			break
		}
		if p.DeletionTimestamp != nil || p.Status.PodIP == "" || !render.PodReady(p) {
			continue
		}
		n, err := d.Connections.Connections(ctx, p)
		if err != nil {
			d.Log.V(1).Info("cannot read a gateway's connections", "pod", p.Name, "error", err.Error())
			continue
		}
		if !d.moved(p.Annotations[AnnotationDeletionCost], n) {
			continue
		}
		patch := client.MergeFrom(p.DeepCopy())
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[AnnotationDeletionCost] = strconv.FormatInt(n, 10)
		if err := d.Client.Patch(ctx, p, patch); client.IgnoreNotFound(err) != nil {
			return err
		}
		writes++
	}
	return nil
}

// moved reports whether n differs enough from the annotated cost to write.
func (d *DeletionCost) moved(annotated string, n int64) bool {
	old, err := strconv.ParseInt(annotated, 10, 64)
	if err != nil {
		return true // absent or not ours: set it
	}
	diff := n - old
	if diff < 0 {
		diff = -diff
	}
	return diff >= max(d.MinChange, old/10)
}
