package imcluster

import (
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/imkube/imkube/operator/internal/render"
)

// ConsumerLagMetric is the External metric the message service HPA follows:
// unconsumed IM_UPSTREAM messages of the cluster's consumer group, served by a
// metrics adapter from the message service's /metrics.
const ConsumerLagMetric = "imkube_message_consumer_lag"

// desiredHPA is the autoscaler of a component, or nil when the component has
// a fixed replica count: message scales on consumer lag (External metric),
// sequence and user on CPU.
func desiredHPA(s *scope, component string) *autoscalingv2.HorizontalPodAutoscaler {
	spec := s.cluster.Spec
	var (
		minR, maxR int32
		metric     autoscalingv2.MetricSpec
	)
	switch component {
	case render.Message:
		a := spec.Message.Autoscaling
		if a == nil {
			return nil
		}
		minR, maxR = a.MinReplicas, a.MaxReplicas
		target := a.TargetLagPerReplica
		if target == 0 {
			target = 1000
		}
		metric = autoscalingv2.MetricSpec{
			Type: autoscalingv2.ExternalMetricSourceType,
			External: &autoscalingv2.ExternalMetricSource{
				Metric: autoscalingv2.MetricIdentifier{
					Name: ConsumerLagMetric,
					// "service" is the label Prometheus (ServiceMonitor) puts on
					// every series it scrapes from the message Service; label
					// names with dots or slashes cannot be Prometheus matchers.
					Selector: &metav1.LabelSelector{MatchLabels: map[string]string{
						"service": render.ComponentName(s.cluster.Name, render.Message),
					}},
				},
				Target: autoscalingv2.MetricTarget{
					Type:         autoscalingv2.AverageValueMetricType,
					AverageValue: resource.NewQuantity(target, resource.DecimalSI),
				},
			},
		}
	case render.Sequence, render.User:
		a := spec.User.Autoscaling
		if component == render.Sequence {
			a = spec.Sequence.Autoscaling
		}
		if a == nil {
			return nil
		}
		minR, maxR = a.MinReplicas, a.MaxReplicas
		util := a.TargetCPUUtilizationPercentage
		if util == 0 {
			util = 70
		}
		metric = autoscalingv2.MetricSpec{
			Type: autoscalingv2.ResourceMetricSourceType,
			Resource: &autoscalingv2.ResourceMetricSource{
				Name: corev1.ResourceCPU,
				Target: autoscalingv2.MetricTarget{
					Type:               autoscalingv2.UtilizationMetricType,
					AverageUtilization: ptr.To(util),
				},
			},
		}
	default:
		return nil
	}
	if minR == 0 {
		minR = 2
	}
	return &autoscalingv2.HorizontalPodAutoscaler{
		TypeMeta:   metav1.TypeMeta{APIVersion: "autoscaling/v2", Kind: "HorizontalPodAutoscaler"},
		ObjectMeta: s.objectMeta(s.name(component), component),
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{
				APIVersion: "apps/v1", Kind: "Deployment", Name: s.name(component),
			},
			MinReplicas: ptr.To(minR),
			MaxReplicas: maxR,
			Metrics:     []autoscalingv2.MetricSpec{metric},
		},
	}
}
