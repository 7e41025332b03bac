package gatewaypool

import (
	"cmp"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/imkube/imkube/operator/internal/render"
)

// preStopSeconds is how long a terminating gateway keeps serving before it
// gets SIGTERM, so endpoints stop routing new connections to it first.
const preStopSeconds = 5

// desiredDeployment is the gateway Deployment of a pool. A stopping gateway
// sleeps preStopSeconds, then drains for up to the drain timeout (it asks its
// clients to reconnect elsewhere); the grace period covers both plus slack.
func desiredDeployment(s *scope) *appsv1.Deployment {
	c, p := s.cluster, s.pool
	liveness, readiness := render.Probes()
	env := append(render.Env(c),
		corev1.EnvVar{Name: "IMKUBE_GATEWAY_ID", ValueFrom: &corev1.EnvVarSource{
			FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"},
		}},
		corev1.EnvVar{Name: "IMKUBE_GATEWAY_POOL", Value: p.Name},
		corev1.EnvVar{Name: "IMKUBE_MAX_CONNECTIONS", Value: strconv.Itoa(int(cmp.Or(p.Spec.MaxConnectionsPerPod, 10000)))},
		corev1.EnvVar{Name: "IMKUBE_DRAIN_TIMEOUT", Value: s.drainTimeout().String()},
		corev1.EnvVar{Name: "IMKUBE_TRUSTED_PROXIES", Value: strings.Join(p.Spec.TrustedProxies, ",")},
		corev1.EnvVar{Name: "IMKUBE_DRAIN_RATE", Value: strconv.Itoa(int(cmp.Or(p.Spec.Drain.ConnectionsPerSecond, 500)))},
		// spec.heartbeatInterval is the WebSocket ping interval; a
		// connection silent for three of them is closed.
		corev1.EnvVar{Name: "IMKUBE_PING_INTERVAL", Value: s.heartbeat().String()},
		corev1.EnvVar{Name: "IMKUBE_IDLE_TIMEOUT", Value: (3 * s.heartbeat()).String()},
	)
	grace := int64(preStopSeconds) + int64(s.drainTimeout().Seconds()) + 5
	resources := render.ResourcesWithDefaults(p.Spec.Resources, render.GatewayDefaults)
	spread, affinity := render.Placement(p.Spec.TopologySpreadConstraints, p.Spec.Affinity, s.selector())
	pull := c.Spec.ImagePullPolicy
	if pull == "" {
		pull = corev1.PullIfNotPresent
	}
	d := &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: s.objectMeta(),
		Spec: appsv1.DeploymentSpec{
			Selector:             &metav1.LabelSelector{MatchLabels: s.selector()},
			RevisionHistoryLimit: ptr.To[int32](5),
			Strategy: appsv1.DeploymentStrategy{
				Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{
					MaxUnavailable: ptr.To(intstr.FromInt32(0)),
					MaxSurge:       ptr.To(intstr.FromInt32(1)), // one gateway at a time: a pod is replaced only after its drain
				},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      s.podLabels(),
					Annotations: render.PodAnnotations(s.secretsHash),
				},
				Spec: corev1.PodSpec{
					AutomountServiceAccountToken:  ptr.To(false),
					EnableServiceLinks:            ptr.To(false),
					SecurityContext:               render.PodSecurityContext(),
					ImagePullSecrets:              c.Spec.ImagePullSecrets,
					TerminationGracePeriodSeconds: ptr.To(grace),
					NodeSelector:                  p.Spec.NodeSelector,
					Tolerations:                   p.Spec.Tolerations,
					TopologySpreadConstraints:     spread,
					Affinity:                      affinity,
					Containers: []corev1.Container{{
						Name:            render.Gateway,
						Image:           s.image,
						ImagePullPolicy: pull,
						Args:            []string{render.Gateway},
						Ports:           render.ContainerPorts(),
						Env:             env,
						Resources:       resources,
						LivenessProbe:   liveness,
						ReadinessProbe:  readiness,
						Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{
							Sleep: &corev1.SleepAction{Seconds: preStopSeconds},
						}},
						SecurityContext: render.ContainerSecurityContext(),
						VolumeMounts:    render.VolumeMounts(),
					}},
					Volumes: render.Volumes(c, render.TmpSizeLimit(resources)),
				},
			},
		},
	}
	if p.Spec.Autoscaling == nil {
		d.Spec.Replicas = ptr.To(ptr.Deref(p.Spec.Replicas, 2))
	}
	return d
}
