package operator

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"

	"github.com/imkube/imkube/operator/gatewaypool"
)

// During a gateway rollout the client Service sends new connections only to
// pods of the current template once one of them is ready: the operator sets
// im.imkube.io/serving=false on the outdated pods (which keep their clients
// until their drain), so an evacuated client never lands on a pod that is
// evacuated later in the same roll. The Deployment controller is played by
// the test (envtest runs none): two ReplicaSets, revision 1 and 2.
func TestGatewayRolloutKeepsNewConnectionsOffOutdatedPods(t *testing.T) {
	h := startOperator(t)
	ns := h.namespace("serving")
	h.applySamples(ns, "imcluster.yaml", "gatewaypool.yaml")
	ctx := context.Background()
	var d appsv1.Deployment
	h.eventually("Deployment edge-gateway", func() error { return h.get(ns, "edge-gateway", &d) })
	var svc corev1.Service
	h.eventually("Service edge-gateway", func() error { return h.get(ns, "edge-gateway", &svc) })
	if got := svc.Spec.Selector[gatewaypool.LabelServing]; got != "true" {
		t.Fatalf("client Service selector %v lacks %s=true", svc.Spec.Selector, gatewaypool.LabelServing)
	}
	if got := d.Spec.Template.Labels[gatewaypool.LabelServing]; got != "true" {
		t.Fatalf("pod template labels %v lack %s=true", d.Spec.Template.Labels, gatewaypool.LabelServing)
	}
	if _, ok := d.Spec.Selector.MatchLabels[gatewaypool.LabelServing]; ok {
		t.Fatalf("the Deployment selector %v must not include %s (pods would be orphaned)", d.Spec.Selector.MatchLabels, gatewaypool.LabelServing)
	}

	h.eventually("revision 2", func() error {
		if err := h.get(ns, "edge-gateway", &d); err != nil {
			return err
		}
		if d.Annotations == nil {
			d.Annotations = map[string]string{}
		}
		d.Annotations["deployment.kubernetes.io/revision"] = "2"
		return h.c.Update(ctx, &d)
	})
	h.markAvailable(ns, "edge-gateway")
	owner := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name, UID: d.UID, Controller: ptr.To(true)}
	withHash := func(l map[string]string, hash string) map[string]string {
		l = maps.Clone(l)
		l["pod-template-hash"] = hash
		return l
	}
	for rev, hash := range map[string]string{"1": "old", "2": "new"} {
		rs := &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "edge-gateway-" + hash, Labels: withHash(d.Spec.Template.Labels, hash),
				Annotations: map[string]string{"deployment.kubernetes.io/revision": rev}, OwnerReferences: []metav1.OwnerReference{owner}},
			Spec: appsv1.ReplicaSetSpec{
				Selector: &metav1.LabelSelector{MatchLabels: withHash(d.Spec.Selector.MatchLabels, hash)},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: withHash(d.Spec.Template.Labels, hash)}, Spec: d.Spec.Template.Spec},
			},
		}
		if err := h.c.Create(ctx, rs); err != nil {
			t.Fatal(err)
		}
	}
	pod := func(name, hash string) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: withHash(d.Spec.Template.Labels, hash)},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "gateway", Image: d.Spec.Template.Spec.Containers[0].Image}}},
		}
		if err := h.c.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	oldA, oldB, newA := pod("edge-gateway-old-a", "old"), pod("edge-gateway-old-b", "old"), pod("edge-gateway-new-a", "new")
	h.setPodStatus(oldA, runningStatus("gateway", "10.0.0.1", true))
	h.setPodStatus(oldB, runningStatus("gateway", "10.0.0.2", true))
	h.setPodStatus(newA, runningStatus("gateway", "10.0.0.3", false))
	serving := func(want map[string]string) func() error {
		return func() error {
			for name, v := range want {
				var p corev1.Pod
				if err := h.get(ns, name, &p); err != nil {
					return err
				}
				if got := p.Labels[gatewaypool.LabelServing]; got != v {
					return fmt.Errorf("%s: %s=%q, want %q", name, gatewaypool.LabelServing, got, v)
				}
			}
			return nil
		}
	}
	// The new pod is not ready: the old ones keep taking connections.
	time.Sleep(time.Second)
	if err := serving(map[string]string{oldA.Name: "true", oldB.Name: "true", newA.Name: "true"})(); err != nil {
		t.Fatalf("before a new pod is ready: %v", err)
	}
	h.setPodStatus(newA, runningStatus("gateway", "10.0.0.3", true))
	h.eventually("old pods stop serving", serving(map[string]string{oldA.Name: "false", oldB.Name: "false", newA.Name: "true"}))
	// The Deployment selector still owns them.
	for _, p := range []*corev1.Pod{oldA, oldB} {
		if err := h.get(ns, p.Name, p); err != nil {
			t.Fatal(err)
		}
		sel, _ := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if !sel.Matches(labels.Set(p.Labels)) {
			t.Errorf("%s no longer matches the Deployment selector", p.Name)
		}
	}
}
