package operator

import (
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/imkube/imkube/operator/gatewaypool"
)

// Scale-down removes the emptiest gateways first: the operator keeps each
// ready gateway pod's pod-deletion-cost at its connection count, and writes
// only when the count moved by more than a tenth (at least 10).
func TestGatewayPodsCarryTheirConnectionCountAsDeletionCost(t *testing.T) {
	h := startOperator(t)
	ns := h.namespace("cost")
	h.applySamples(ns, "imcluster.yaml", "gatewaypool.yaml")
	var d appsv1.Deployment
	h.eventually("Deployment edge-gateway", func() error { return h.get(ns, "edge-gateway", &d) })
	for _, name := range []string{"edge-gateway-a", "edge-gateway-b"} {
		h.setPodStatus(h.podOf(&d, name, "gateway"), runningStatus("gateway", "10.0.0.7", true))
	}
	h.readyz.setConnections("edge-gateway-a", 1200)
	h.readyz.setConnections("edge-gateway-b", 40)
	cost := func(name, want string) func() error {
		return func() error {
			var p corev1.Pod
			if err := h.get(ns, name, &p); err != nil {
				return err
			}
			if got := p.Annotations[gatewaypool.AnnotationDeletionCost]; got != want {
				return fmt.Errorf("%s: deletion cost %q, want %q", name, got, want)
			}
			return nil
		}
	}
	tick := func() {
		t.Helper()
		select {
		case h.costTicks <- time.Now():
		case <-time.After(30 * time.Second):
			t.Fatal("the deletion-cost runnable takes no tick")
		}
	}
	// A pass sees the pods the operator's cache holds at that moment: tick
	// until the cache has both pods ready and the pass has written them.
	passUntil := func(what string, check func() error) {
		t.Helper()
		h.eventually(what, func() error { tick(); return check() })
	}
	passUntil("costs set", func() error {
		if err := cost("edge-gateway-a", "1200")(); err != nil {
			return err
		}
		return cost("edge-gateway-b", "40")()
	})

	// Small moves are not written (bounded write rate); big ones are.
	h.readyz.setConnections("edge-gateway-a", 1250) // < 10% of 1200
	h.readyz.setConnections("edge-gateway-b", 400)
	passUntil("b updated", cost("edge-gateway-b", "400"))
	tick() // one more full pass: a stays
	time.Sleep(200 * time.Millisecond)
	if err := cost("edge-gateway-a", "1200")(); err != nil {
		t.Fatalf("a move of 50 on 1200 was written: %v", err)
	}
}
