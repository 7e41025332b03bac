package operator

import (
	"context"
	"fmt"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
	"github.com/imkube/imkube/operator/internal/render"
)

// Issue 20 against a real kube-apiserver: the samples get NetworkPolicies,
// bounded resources and a spread by default; the switches and overrides
// work; invalid settings are rejected with the schema's message.
func TestDefenceInDepthAgainstAPIServer(t *testing.T) {
	h := startOperator(t)
	ctx := context.Background()
	ns := h.namespace("defence")
	h.applySamples(ns, "imcluster.yaml", "gatewaypool.yaml")
	policies := []string{"demo-gateways", "demo-message", "demo-user", "demo-sequence"}
	patch := func(obj client.Object, body string) {
		t.Helper()
		if err := h.c.Patch(ctx, obj, client.RawPatch(types.MergePatchType, []byte(body))); err != nil {
			t.Fatal(err)
		}
	}
	cluster := &imv1.IMCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "demo"}}

	t.Run("the sample cluster gets a NetworkPolicy per component, on by default", func(t *testing.T) {
		var c imv1.IMCluster
		if err := h.get(ns, "demo", &c); err != nil {
			t.Fatal(err)
		}
		if c.Spec.NetworkPolicy.Enabled == nil || !*c.Spec.NetworkPolicy.Enabled {
			t.Errorf("networkPolicy.enabled defaulted to %v, want true", c.Spec.NetworkPolicy.Enabled)
		}
		if got := c.Spec.NetworkPolicy.MonitoringNamespaceSelector; got == nil || got.MatchLabels["kubernetes.io/metadata.name"] != "monitoring" {
			t.Errorf("monitoringNamespaceSelector defaulted to %v", got)
		}
		for _, name := range policies {
			var np networkingv1.NetworkPolicy
			h.eventually("NetworkPolicy "+name, func() error { return h.get(ns, name, &np) })
			if len(np.OwnerReferences) != 1 || np.OwnerReferences[0].Name != "demo" {
				t.Errorf("%s owner references %v", name, np.OwnerReferences)
			}
			if np.Spec.PodSelector.MatchLabels[render.LabelInstance] != "demo" {
				t.Errorf("%s selects %v", name, np.Spec.PodSelector.MatchLabels)
			}
		}
		var seq networkingv1.NetworkPolicy
		_ = h.get(ns, "demo-sequence", &seq)
		from := seq.Spec.Ingress[0].From
		if len(from) != 1 || from[0].PodSelector.MatchLabels[render.LabelComponent] != render.Message {
			t.Errorf("sequence takes its API port from %+v, want only the message pods of demo", from)
		}
	})

	t.Run("every Deployment gets memory and ephemeral-storage bounds, a CPU request and a spread", func(t *testing.T) {
		for _, name := range []string{"demo-message", "demo-sequence", "demo-user", "edge-gateway"} {
			var d appsv1.Deployment
			h.eventually("Deployment "+name, func() error { return h.get(ns, name, &d) })
			pod := d.Spec.Template.Spec
			r := pod.Containers[0].Resources
			for _, want := range []struct {
				list corev1.ResourceList
				kind string
				name corev1.ResourceName
			}{
				{r.Requests, "request", corev1.ResourceCPU},
				{r.Requests, "request", corev1.ResourceMemory},
				{r.Limits, "limit", corev1.ResourceMemory},
				{r.Requests, "request", corev1.ResourceEphemeralStorage},
				{r.Limits, "limit", corev1.ResourceEphemeralStorage},
			} {
				if _, ok := want.list[want.name]; !ok {
					t.Errorf("%s: no %s %s in %+v", name, want.name, want.kind, r)
				}
			}
			keys := map[string]bool{}
			for _, c := range pod.TopologySpreadConstraints {
				keys[c.TopologyKey] = c.WhenUnsatisfiable == corev1.ScheduleAnyway
			}
			if !keys[corev1.LabelHostname] || !keys[corev1.LabelTopologyZone] {
				t.Errorf("%s spread %+v: want soft spread over hostnames and zones", name, pod.TopologySpreadConstraints)
			}
			if pod.Affinity == nil || pod.Affinity.PodAntiAffinity == nil || len(pod.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 {
				t.Errorf("%s affinity %+v: want a soft pod anti-affinity", name, pod.Affinity)
			}
		}
	})

	t.Run("placement in the spec replaces the default spread", func(t *testing.T) {
		patch(cluster, `{"spec":{"sequence":{"placement":{"topologySpreadConstraints":[{"maxSkew":2,"topologyKey":"rack","whenUnsatisfiable":"DoNotSchedule"}]}}}}`)
		h.eventually("sequence spread over racks", func() error {
			var d appsv1.Deployment
			if err := h.get(ns, "demo-sequence", &d); err != nil {
				return err
			}
			tsc := d.Spec.Template.Spec.TopologySpreadConstraints
			if len(tsc) != 1 || tsc[0].TopologyKey != "rack" || tsc[0].LabelSelector.MatchLabels[render.LabelComponent] != render.Sequence {
				return fmt.Errorf("spread %+v", tsc)
			}
			return nil
		})
	})

	t.Run("networkPolicy.enabled false deletes the policies, true restores them", func(t *testing.T) {
		patch(cluster, `{"spec":{"networkPolicy":{"enabled":false}}}`)
		for _, name := range policies {
			h.eventually("NetworkPolicy "+name+" deleted", func() error {
				if err := h.get(ns, name, &networkingv1.NetworkPolicy{}); !apierrors.IsNotFound(err) {
					return fmt.Errorf("still there (err %v)", err)
				}
				return nil
			})
		}
		patch(cluster, `{"spec":{"networkPolicy":{"enabled":true,"restrictEgress":true,"dependencyEgress":[{"to":[{"ipBlock":{"cidr":"10.0.0.0/8"}}]}]}}}`)
		h.eventually("restricted NetworkPolicy", func() error {
			var np networkingv1.NetworkPolicy
			if err := h.get(ns, "demo-message", &np); err != nil {
				return err
			}
			if len(np.Spec.Egress) != 3 || np.Spec.Egress[2].To[0].IPBlock.CIDR != "10.0.0.0/8" {
				return fmt.Errorf("egress %+v: want DNS, sequence, 10.0.0.0/8", np.Spec.Egress)
			}
			return nil
		})
		h.expectNoWrites()
	})

	// The schema cannot check CIDRs inside NetworkPolicy rules (the CEL cost
	// of walking them exceeds the CRD budget): the API server's validation of
	// the NetworkPolicy does, and the cluster says so.
	t.Run("a dependency CIDR that is not one degrades the cluster with the API server's message", func(t *testing.T) {
		patch(cluster, `{"spec":{"networkPolicy":{"dependencyEgress":[{"to":[{"ipBlock":{"cidr":"10.0.0.0"}}]}]}}}`)
		h.eventually("Degraded ApplyFailed naming the CIDR", func() error {
			var c imv1.IMCluster
			if err := h.get(ns, "demo", &c); err != nil {
				return err
			}
			cond, err := condition(c.Status.Conditions, imv1.ConditionDegraded)
			if err != nil {
				return err
			}
			if cond.Status != metav1.ConditionTrue || cond.Reason != imv1.ReasonApplyFailed || !strings.Contains(cond.Message, "10.0.0.0") {
				return fmt.Errorf("Degraded = %s/%s: %s", cond.Status, cond.Reason, cond.Message)
			}
			return nil
		})
		patch(cluster, `{"spec":{"networkPolicy":{"dependencyEgress":[{"to":[{"ipBlock":{"cidr":"10.0.0.0/8"}}]}]}}}`)
		h.eventually("Degraded cleared", func() error {
			return h.clusterCondition(ns, "demo", imv1.ConditionDegraded, metav1.ConditionFalse, "")
		})
	})

	t.Run("invalid settings are rejected with the schema's message", func(t *testing.T) {
		var live imv1.IMCluster
		if err := h.get(ns, "demo", &live); err != nil {
			t.Fatal(err)
		}
		bad := func(mut func(*imv1.IMCluster)) client.Object {
			c := &imv1.IMCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bad"}, Spec: *live.Spec.DeepCopy()}
			mut(c)
			return c
		}
		badPool := func(mut func(*imv1.GatewayPool)) client.Object {
			p := &imv1.GatewayPool{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bad"},
				Spec: imv1.GatewayPoolSpec{ClusterRef: imv1.ClusterReference{Name: "demo"}, Replicas: ptr.To[int32](1)}}
			mut(p)
			return p
		}
		tests := []struct {
			name string
			give client.Object
			want string
		}{
			{"restrictEgress without dependencies", bad(func(c *imv1.IMCluster) {
				c.Spec.NetworkPolicy = imv1.NetworkPolicySpec{RestrictEgress: true}
			}), "restrictEgress needs dependencyEgress"},
			{"a spread with maxSkew 0", bad(func(c *imv1.IMCluster) {
				c.Spec.User.Placement.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{MaxSkew: 0, TopologyKey: "zone", WhenUnsatisfiable: corev1.ScheduleAnyway}}
			}), "maxSkew must be at least 1"},
			{"a spread with an unknown whenUnsatisfiable", bad(func(c *imv1.IMCluster) {
				c.Spec.Message.Placement.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: "zone", WhenUnsatisfiable: "Sometimes"}}
			}), "whenUnsatisfiable must be DoNotSchedule or ScheduleAnyway"},
			{"a pool spread with maxSkew 0", badPool(func(p *imv1.GatewayPool) {
				p.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{MaxSkew: 0, TopologyKey: "zone", WhenUnsatisfiable: corev1.ScheduleAnyway}}
			}), "maxSkew must be at least 1"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				err := h.c.Create(ctx, tt.give)
				if err == nil || !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("create error = %v, want Invalid with %q", err, tt.want)
				}
			})
		}
	})
}
