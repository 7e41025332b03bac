package render

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Default resources (docs/operator.md, "Resources": how they were sized).
// Memory: requests at the measured steady RSS plus headroom, limits well
// above the peak seen under load, so a leak or a runaway burst is OOM-killed
// instead of starving the node. Ephemeral storage: what the processes write
// to their /tmp emptyDir (Sentinel's record log, bounded by its rotation,
// and the RocketMQ client's state under $HOME). CPU: a request only; no CPU
// limit, because CFS throttling of a latency-sensitive Go service (GC
// bursts, the message path) costs more than the noisy-neighbour protection
// the request already gives.
var (
	ServiceDefaults = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:              resource.MustParse("100m"),
			corev1.ResourceMemory:           resource.MustParse("96Mi"),
			corev1.ResourceEphemeralStorage: resource.MustParse("64Mi"),
		},
		Limits: corev1.ResourceList{
			corev1.ResourceMemory:           resource.MustParse("256Mi"),
			corev1.ResourceEphemeralStorage: resource.MustParse("256Mi"),
		},
	}
	GatewayDefaults = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:              resource.MustParse("100m"),
			corev1.ResourceMemory:           resource.MustParse("128Mi"),
			corev1.ResourceEphemeralStorage: resource.MustParse("64Mi"),
		},
		Limits: corev1.ResourceList{
			corev1.ResourceMemory:           resource.MustParse("512Mi"),
			corev1.ResourceEphemeralStorage: resource.MustParse("256Mi"),
		},
	}
)

// TmpSizeLimit bounds the /tmp emptyDir: the ephemeral-storage limit.
func TmpSizeLimit(r corev1.ResourceRequirements) *resource.Quantity {
	if q, ok := r.Limits[corev1.ResourceEphemeralStorage]; ok {
		return &q
	}
	return nil
}

// ResourcesWithDefaults is r with every entry it lacks taken from def. A
// limit is never below the request of the same resource (a request set
// above the default limit raises the limit to it), so a partial override
// stays valid.
func ResourcesWithDefaults(r, def corev1.ResourceRequirements) corev1.ResourceRequirements {
	out := *r.DeepCopy()
	if out.Requests == nil {
		out.Requests = corev1.ResourceList{}
	}
	if out.Limits == nil {
		out.Limits = corev1.ResourceList{}
	}
	for name, q := range def.Requests {
		if _, ok := out.Requests[name]; !ok {
			// A limit alone implies request = limit (Kubernetes' rule); keep it.
			if l, ok := out.Limits[name]; ok && l.Cmp(q) < 0 {
				q = l
			}
			out.Requests[name] = q.DeepCopy()
		}
	}
	for name, q := range def.Limits {
		if _, ok := out.Limits[name]; !ok {
			if req, ok := out.Requests[name]; ok && req.Cmp(q) > 0 {
				q = req
			}
			out.Limits[name] = q.DeepCopy()
		}
	}
	return out
}

// Placement is the topology spread and affinity of a component's pods:
// spread and affinity as given, or the defaults (spread over nodes and
// zones, soft anti-affinity across nodes; never blocking scheduling). A
// given constraint without labelSelector gets selector.
func Placement(spread []corev1.TopologySpreadConstraint, affinity *corev1.Affinity, selector map[string]string) ([]corev1.TopologySpreadConstraint, *corev1.Affinity) {
	sel := func() *metav1.LabelSelector { return &metav1.LabelSelector{MatchLabels: selector} }
	out := make([]corev1.TopologySpreadConstraint, 0, max(len(spread), 2))
	for _, t := range spread {
		t = *t.DeepCopy()
		if t.LabelSelector == nil {
			t.LabelSelector = sel()
		}
		out = append(out, t)
	}
	if len(out) == 0 {
		for _, key := range []string{corev1.LabelHostname, corev1.LabelTopologyZone} {
			out = append(out, corev1.TopologySpreadConstraint{
				MaxSkew: 1, TopologyKey: key, WhenUnsatisfiable: corev1.ScheduleAnyway, LabelSelector: sel(),
			})
		}
	}
	if affinity != nil {
		return out, affinity.DeepCopy()
	}
	return out, &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
		PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
			Weight: 100,
			PodAffinityTerm: corev1.PodAffinityTerm{
				LabelSelector: sel(),
				TopologyKey:   corev1.LabelHostname,
			},
		}},
	}}
}
