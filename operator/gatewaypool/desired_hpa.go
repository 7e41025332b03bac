package gatewaypool

import (
	"cmp"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// ConnectionsMetric is the Pods metric the gateway HPA follows (open
// WebSocket connections per gateway pod, served by a metrics adapter).
const ConnectionsMetric = "imkube_gateway_connections"

// desiredHPA scales the gateway Deployment on connections per pod, or is nil
// for a fixed-size pool.
func desiredHPA(s *scope) *autoscalingv2.HorizontalPodAutoscaler {
	a := s.pool.Spec.Autoscaling
	if a == nil {
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
						AverageValue: resource.NewQuantity(int64(cmp.Or(a.TargetConnectionsPerPod, 5000)), resource.DecimalSI),
					},
				},
			}},
			// Scale down slowly: every removed gateway drains its clients.
			Behavior: &autoscalingv2.HorizontalPodAutoscalerBehavior{
				ScaleDown: &autoscalingv2.HPAScalingRules{
					StabilizationWindowSeconds: ptr.To[int32](300),
					SelectPolicy:               ptr.To(autoscalingv2.MinChangePolicySelect),
					Policies: []autoscalingv2.HPAScalingPolicy{{
						Type: autoscalingv2.PodsScalingPolicy, Value: 1, PeriodSeconds: 60,
					}},
				},
			},
		},
	}
}
