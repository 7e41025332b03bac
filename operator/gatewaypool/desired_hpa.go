package gatewaypool

import (
	"cmp"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
	"github.com/imkube/imkube/operator/internal/render"
)

// ConnectionsMetric is the metric the gateway autoscaler follows: open
// WebSocket connections of a gateway pod (its /metrics, scraped by
// Prometheus through the pool's internal Service).
const ConnectionsMetric = "imkube_gateway_connections"

// provider is the autoscaling provider of the pool's IMCluster (KEDA when
// the cluster is not known yet).
func (s *scope) provider() imv1.AutoscalingProvider { return render.Autoscaling(s.cluster).Provider }

func (s *scope) targetConnections() int64 {
	return int64(cmp.Or(s.pool.Spec.Autoscaling.TargetConnectionsPerPod, 5000))
}

// desiredHPA scales the gateway Deployment on connections per pod (a Pods
// metric served by a metrics adapter), or is nil for a fixed-size pool or
// with the KEDA provider.
func desiredHPA(s *scope) *autoscalingv2.HorizontalPodAutoscaler {
	a := s.pool.Spec.Autoscaling
	if a == nil || s.provider() != imv1.AutoscalingHPA {
		return nil
	}
	return &autoscalingv2.HorizontalPodAutoscaler{
		TypeMeta:   metav1.TypeMeta{APIVersion: "autoscaling/v2", Kind: "HorizontalPodAutoscaler"},
		ObjectMeta: s.objectMeta(),
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: s.name()},
			MinReplicas:    ptr.To(cmp.Or(a.MinReplicas, 2)),
			MaxReplicas:    a.MaxReplicas,
			Metrics: []autoscalingv2.MetricSpec{{
				Type: autoscalingv2.PodsMetricSourceType,
				Pods: &autoscalingv2.PodsMetricSource{
					Metric: autoscalingv2.MetricIdentifier{Name: ConnectionsMetric},
					Target: autoscalingv2.MetricTarget{
						Type:         autoscalingv2.AverageValueMetricType,
						AverageValue: resource.NewQuantity(s.targetConnections(), resource.DecimalSI),
					},
				},
			}},
			Behavior: render.ScaleDownBehavior(a.ScaleDownStabilizationSeconds),
		},
	}
}

// desiredScaledObject is the KEDA ScaledObject of an autoscaled pool (KEDA
// provider): the pool's total of open connections from Prometheus, divided by
// the target per pod. The series come from the pool's internal Service, as
// the IMCluster's ServiceMonitor scrapes them (label service). Nil for a
// fixed-size pool or with the HPA provider.
func desiredScaledObject(s *scope) *unstructured.Unstructured {
	a := s.pool.Spec.Autoscaling
	if a == nil || s.provider() != imv1.AutoscalingKEDA {
		return nil
	}
	query := "sum(" + ConnectionsMetric + render.PromSelector("namespace", s.pool.Namespace, "service", s.name()+"-internal") + ")"
	return render.ScaledObject(s.objectMeta(), s.name(), cmp.Or(a.MinReplicas, 2), a.MaxReplicas,
		render.ScaleDownBehavior(a.ScaleDownStabilizationSeconds),
		render.PrometheusTrigger{Name: "connections", ServerAddress: render.Autoscaling(s.cluster).PrometheusAddress,
			Query: query, Threshold: s.targetConnections()})
}
