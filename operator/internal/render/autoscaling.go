package render

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
)

// ScaledObjectGVK is KEDA's ScaledObject. Its CRD is optional: the operator
// writes ScaledObjects only when the kind is installed and reports
// KEDANotInstalled otherwise.
var ScaledObjectGVK = schema.GroupVersionKind{Group: "keda.sh", Version: "v1alpha1", Kind: "ScaledObject"}

// DefaultPrometheusAddress is the Service of kube-prometheus-stack's
// Prometheus (spec.autoscaling.prometheusAddress).
const DefaultPrometheusAddress = "http://prometheus-operated.monitoring.svc:9090"

// KEDAHPAName is the HorizontalPodAutoscaler KEDA creates for a ScaledObject.
func KEDAHPAName(scaledObject string) string { return "keda-hpa-" + scaledObject }

// Autoscaling is spec.autoscaling of c with the defaults filled in (objects
// stored before the field existed have it empty).
func Autoscaling(c *imv1.IMCluster) imv1.AutoscalingSpec {
	var a imv1.AutoscalingSpec
	if c != nil {
		a = c.Spec.Autoscaling
	}
	a.Provider = cmp.Or(a.Provider, imv1.AutoscalingKEDA)
	a.PrometheusAddress = cmp.Or(a.PrometheusAddress, DefaultPrometheusAddress)
	return a
}

// ScaleDownBehavior is the scale-down of every imkube autoscaler: wait
// stabilization seconds (default 300) of low metric, then remove at most one
// pod per minute (every removed gateway drains its clients; a removed message
// replica hands its queues over).
func ScaleDownBehavior(stabilization *int32) *autoscalingv2.HorizontalPodAutoscalerBehavior {
	return &autoscalingv2.HorizontalPodAutoscalerBehavior{
		ScaleDown: &autoscalingv2.HPAScalingRules{
			StabilizationWindowSeconds: ptr.To(ptr.Deref(stabilization, 300)),
			SelectPolicy:               ptr.To(autoscalingv2.MinChangePolicySelect),
			Policies: []autoscalingv2.HPAScalingPolicy{{
				Type: autoscalingv2.PodsScalingPolicy, Value: 1, PeriodSeconds: 60,
			}},
		},
	}
}

// PromQuote quotes a label value for a PromQL matcher.
func PromQuote(v string) string { return strconv.Quote(v) }

// PrometheusTrigger is one KEDA prometheus trigger: query returns one number
// (the total over the pods), threshold is the target per replica (KEDA's
// AverageValue: replicas = ceil(total / threshold)). A query without a result
// is an error (ignoreNullValues false), so the autoscaler holds its replica
// count instead of scaling to the minimum when the metric is missing.
type PrometheusTrigger struct {
	Name, ServerAddress, Query string
	Threshold                  int64
}

// ScaledObject renders a keda.sh/v1alpha1 ScaledObject scaling the
// Deployment named target between min and max replicas. It is unstructured
// so the operator does not depend on KEDA's Go module.
func ScaledObject(m metav1.ObjectMeta, target string, minR, maxR int32, behavior *autoscalingv2.HorizontalPodAutoscalerBehavior,
	triggers ...PrometheusTrigger) *unstructured.Unstructured {
	labels := map[string]any{}
	for k, v := range m.Labels {
		labels[k] = v
	}
	var owners []any
	for _, o := range m.OwnerReferences {
		owners = append(owners, map[string]any{
			"apiVersion": o.APIVersion, "kind": o.Kind, "name": o.Name, "uid": string(o.UID),
			"controller": ptr.Deref(o.Controller, false), "blockOwnerDeletion": ptr.Deref(o.BlockOwnerDeletion, false),
		})
	}
	var trs []any
	for _, t := range triggers {
		trs = append(trs, map[string]any{
			"type":       "prometheus",
			"name":       t.Name,
			"metricType": "AverageValue",
			"metadata": map[string]any{
				"serverAddress":    strings.TrimRight(t.ServerAddress, "/"),
				"query":            t.Query,
				"threshold":        strconv.FormatInt(t.Threshold, 10),
				"ignoreNullValues": "false",
			},
		})
	}
	spec := map[string]any{
		"scaleTargetRef":  map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
		"pollingInterval": int64(15),
		"minReplicaCount": int64(minR),
		"maxReplicaCount": int64(maxR),
		"triggers":        trs,
	}
	if behavior != nil && behavior.ScaleDown != nil {
		sd := behavior.ScaleDown
		var pols []any
		for _, p := range sd.Policies {
			pols = append(pols, map[string]any{"type": string(p.Type), "value": int64(p.Value), "periodSeconds": int64(p.PeriodSeconds)})
		}
		down := map[string]any{"policies": pols}
		if sd.StabilizationWindowSeconds != nil {
			down["stabilizationWindowSeconds"] = int64(*sd.StabilizationWindowSeconds)
		}
		if sd.SelectPolicy != nil {
			down["selectPolicy"] = string(*sd.SelectPolicy)
		}
		spec["advanced"] = map[string]any{"horizontalPodAutoscalerConfig": map[string]any{
			"behavior": map[string]any{"scaleDown": down},
		}}
	}
	meta := map[string]any{"name": m.Name, "namespace": m.Namespace, "labels": labels}
	if owners != nil {
		meta["ownerReferences"] = owners
	}
	u := &unstructured.Unstructured{Object: map[string]any{"metadata": meta, "spec": spec}}
	u.SetGroupVersionKind(ScaledObjectGVK)
	return u
}

// PromSelector renders PromQL label matchers from pairs (name, value, ...).
func PromSelector(pairs ...string) string {
	if len(pairs)%2 != 0 {
		panic(fmt.Sprintf("render.PromSelector: odd pairs %v", pairs))
	}
	parts := make([]string, 0, len(pairs)/2)
	for i := 0; i < len(pairs); i += 2 {
		parts = append(parts, pairs[i]+"="+PromQuote(pairs[i+1]))
	}
	return "{" + strings.Join(parts, ",") + "}"
}
