package imcluster

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/imkube/imkube/operator/internal/render"
)

// desiredService is the ClusterIP Service of a component; its URL is what
// IMKUBE_<COMPONENT>_URL points at. Its internal port is what the
// ServiceMonitor scrapes.
func desiredService(s *scope, component string) *corev1.Service {
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: s.objectMeta(s.name(component), component),
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: s.selector(component),
			Ports: []corev1.ServicePort{{
				Name:       render.HTTPPortName,
				Port:       render.HTTPPort,
				TargetPort: intstr.FromString(render.HTTPPortName),
				Protocol:   corev1.ProtocolTCP,
			}, render.InternalServicePort()},
		},
	}
}
