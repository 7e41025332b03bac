package imcluster

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/imkube/imkube/operator/internal/render"
)

// ServiceMonitorGVK is prometheus-operator's ServiceMonitor. Its CRD is
// optional: the operator only writes one when the kind is installed.
var ServiceMonitorGVK = schema.GroupVersionKind{Group: "monitoring.coreos.com", Version: "v1", Kind: "ServiceMonitor"}

// desiredServiceMonitor scrapes /metrics of every imkube Service of the
// cluster (message, sequence, user and the gateways of all its pools, which
// carry the cluster's instance label). It is unstructured so the operator does
// not depend on prometheus-operator's Go types.
func desiredServiceMonitor(s *scope) *unstructured.Unstructured {
	c := s.cluster
	owner := render.OwnerReference(c, "IMCluster")
	labels := map[string]any{}
	for k, v := range c.Spec.Observability.ServiceMonitorLabels {
		labels[k] = v
	}
	for k, v := range render.Labels(c.Name, "metrics", "", render.ImageTag(s.image)) {
		labels[k] = v
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"metadata": map[string]any{
			"name":      c.Name,
			"namespace": c.Namespace,
			"labels":    labels,
			"ownerReferences": []any{map[string]any{
				"apiVersion": owner.APIVersion, "kind": owner.Kind, "name": owner.Name, "uid": string(owner.UID),
				"controller": true, "blockOwnerDeletion": true,
			}},
		},
		"spec": map[string]any{
			"selector": map[string]any{"matchLabels": map[string]any{
				render.LabelName:      "imkube",
				render.LabelInstance:  c.Name,
				render.LabelManagedBy: render.ManagedByValue,
			}},
			"namespaceSelector": map[string]any{"matchNames": []any{c.Namespace}},
			"endpoints": []any{map[string]any{
				"port": render.MetricsPortName, "path": "/metrics", "interval": "30s",
				// Every series gets the IMCluster's name: the dashboards'
				// imcluster variable filters on it.
				"relabelings": []any{map[string]any{
					"sourceLabels": []any{"__meta_kubernetes_service_label_" + promLabel(render.LabelInstance)},
					"targetLabel":  "imcluster",
				}},
			}},
		},
	}}
	u.SetGroupVersionKind(ServiceMonitorGVK)
	return u
}

// promLabel is how Prometheus's Kubernetes discovery spells a Kubernetes
// label name in its meta labels (every character outside [a-zA-Z0-9_]
// becomes _).
func promLabel(name string) string {
	b := []byte(name)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}
