package imcluster

import (
	"cmp"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
	"github.com/imkube/imkube/operator/internal/render"
)

// ConsumerLagMetric is the metric the message autoscaler follows: messages
// of the cluster's upstream topic not yet consumed by its message group, as
// the brokers see it (exported by the operator, see LagExporter), so a
// stalled or crashed consumer still shows growing lag.
const ConsumerLagMetric = "imkube_broker_consumer_lag"

// targetLag is the lag one message replica should have at most.
func targetLag(a *imv1.LagAutoscalingSpec) int64 {
	if a.TargetLagPerReplica == 0 {
		return 1000
	}
	return a.TargetLagPerReplica
}

// desiredScaledObject is the KEDA ScaledObject of the message service (KEDA
// provider): the broker-side lag from Prometheus divided by the target per
// replica. Nil without message autoscaling or with the HPA provider.
func desiredScaledObject(s *scope) *unstructured.Unstructured {
	a := s.cluster.Spec.Message.Autoscaling
	auto := render.Autoscaling(s.cluster)
	if a == nil || auto.Provider != imv1.AutoscalingKEDA {
		return nil
	}
	// max: one series per cluster, from the leader (a former leader's series
	// may linger for a scrape).
	query := "max(" + ConsumerLagMetric + render.PromSelector("imcluster_namespace", s.cluster.Namespace, "imcluster", s.cluster.Name) + ")"
	return render.ScaledObject(s.objectMeta(s.name(render.Message), render.Message), s.name(render.Message),
		cmp.Or(a.MinReplicas, 2), a.MaxReplicas, render.ScaleDownBehavior(a.ScaleDownStabilizationSeconds),
		render.PrometheusTrigger{Name: "consumer-lag", ServerAddress: auto.PrometheusAddress, Query: query, Threshold: targetLag(a)})
}

// desiredHPA is the autoscaler of a component, or nil when the component has
// a fixed replica count: message scales on consumer lag (External metric,
// HPA provider only: with KEDA its ScaledObject does), sequence and user on
// CPU.
func desiredHPA(s *scope, component string) *autoscalingv2.HorizontalPodAutoscaler {
	spec := s.cluster.Spec
	var (
		minR, maxR    int32
		stabilization *int32
		metric        autoscalingv2.MetricSpec
	)
	switch component {
	case render.Message:
		a := spec.Message.Autoscaling
		if a == nil || render.Autoscaling(s.cluster).Provider != imv1.AutoscalingHPA {
			return nil
		}
		minR, maxR, stabilization = a.MinReplicas, a.MaxReplicas, a.ScaleDownStabilizationSeconds
		metric = autoscalingv2.MetricSpec{
			Type: autoscalingv2.ExternalMetricSourceType,
			External: &autoscalingv2.ExternalMetricSource{
				Metric: autoscalingv2.MetricIdentifier{
					Name: ConsumerLagMetric,
					// The labels of the operator's series; label names with
					// dots or slashes cannot be Prometheus matchers.
					Selector: &metav1.LabelSelector{MatchLabels: map[string]string{
						"imcluster_namespace": s.cluster.Namespace,
						"imcluster":           s.cluster.Name,
					}},
				},
				Target: autoscalingv2.MetricTarget{
					Type:         autoscalingv2.AverageValueMetricType,
					AverageValue: resource.NewQuantity(targetLag(a), resource.DecimalSI),
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
		minR, maxR, stabilization = a.MinReplicas, a.MaxReplicas, a.ScaleDownStabilizationSeconds
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
			Behavior:    render.ScaleDownBehavior(stabilization),
		},
	}
}
