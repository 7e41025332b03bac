package imcluster

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/imkube/imkube/operator/internal/render"
)

// desiredDeployment is the Deployment of one component (message, sequence or
// user). Its replica count is left to the HPA when the component autoscales.
func desiredDeployment(s *scope, component string) *appsv1.Deployment {
	c := s.cluster
	liveness, readiness := render.Probes()
	w := s.workload(component)
	resources := render.ResourcesWithDefaults(w.Resources, render.ServiceDefaults)
	spread, affinity := render.Placement(w.Placement.TopologySpreadConstraints, w.Placement.Affinity, s.selector(component))
	d := &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: s.objectMeta(s.name(component), component),
		Spec: appsv1.DeploymentSpec{
			Selector:             &metav1.LabelSelector{MatchLabels: s.selector(component)},
			RevisionHistoryLimit: ptr.To[int32](5),
			Strategy: appsv1.DeploymentStrategy{
				Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{
					MaxUnavailable: ptr.To(intstr.FromInt32(0)),
					MaxSurge:       ptr.To(intstr.FromString("25%")),
				},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      s.labels(component),
					Annotations: render.PodAnnotations(s.secretsHash[component]),
				},
				Spec: corev1.PodSpec{
					AutomountServiceAccountToken:  ptr.To(false),
					EnableServiceLinks:            ptr.To(false),
					SecurityContext:               render.PodSecurityContext(),
					ImagePullSecrets:              c.Spec.ImagePullSecrets,
					TerminationGracePeriodSeconds: ptr.To(gracePeriodSeconds(component)),
					TopologySpreadConstraints:     spread,
					Affinity:                      affinity,
					Containers: []corev1.Container{{
						Name:            component,
						Image:           s.image,
						ImagePullPolicy: pullPolicy(s),
						Args:            []string{component},
						Ports:           render.ContainerPorts(),
						Env:             append(append(render.Env(c), render.MediaEnv(c, component)...), render.IntegrationsEnv(c, component)...),
						Resources:       resources,
						LivenessProbe:   liveness,
						ReadinessProbe:  readiness,
						SecurityContext: render.ContainerSecurityContext(),
						VolumeMounts:    render.VolumeMounts(),
					}},
					Volumes: render.Volumes(c, render.TmpSizeLimit(resources)),
				},
			},
		},
	}
	if !s.autoscaled(component) {
		d.Spec.Replicas = ptr.To(s.replicas(component))
	}
	return d
}

// Grace periods from SIGTERM to SIGKILL. Every process first stops its HTTP
// ports (in-flight requests finish, at most httpShutdownSeconds =
// app.ShutdownTimeout); the message service then stops its consumer
// gracefully: no new records, the ones in progress finish and their offsets
// are written to the broker (at most consumerStopSeconds =
// rocketmq.DefaultStopTimeout, plus 5 s for cancelled calls), and only then
// closes the store. The margin covers telemetry flush and process exit.
// desired_test.go checks these against the constants in the code.
const (
	httpShutdownSeconds = 15
	consumerStopSeconds = 20
	graceMarginSeconds  = 10
)

func gracePeriodSeconds(component string) int64 {
	if component == render.Message {
		return httpShutdownSeconds + consumerStopSeconds + 5 + graceMarginSeconds
	}
	return httpShutdownSeconds + graceMarginSeconds + 5
}

func pullPolicy(s *scope) corev1.PullPolicy {
	if p := s.cluster.Spec.ImagePullPolicy; p != "" {
		return p
	}
	return corev1.PullIfNotPresent
}
