package gatewaypool

import (
	"maps"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/imkube/imkube/operator/internal/render"
)

// desiredService exposes the pool: WebSocket at /ws and REST at /api/v1 on
// spec.service.port, with the user's type and annotations. It selects the
// serving gateways only (LabelServing: not those of an outdated template
// during a rollout).
func desiredService(s *scope) *corev1.Service {
	m := s.objectMeta()
	if a := s.pool.Spec.Service.Annotations; len(a) > 0 {
		m.Annotations = maps.Clone(a)
	}
	typ := s.pool.Spec.Service.Type
	if typ == "" {
		typ = corev1.ServiceTypeClusterIP
	}
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: m,
		Spec: corev1.ServiceSpec{
			Type:                  typ,
			ExternalTrafficPolicy: s.pool.Spec.Service.ExternalTrafficPolicy,
			Selector:              s.serviceSelector(),
			Ports: []corev1.ServicePort{{
				Name:       render.HTTPPortName,
				Port:       s.servicePort(),
				TargetPort: intstr.FromString(render.HTTPPortName),
				Protocol:   corev1.ProtocolTCP,
			}},
		},
	}
}

// desiredInternalService is the headless Service of the pool's internal
// port (/metrics, /healthz, /readyz): the IMCluster's ServiceMonitor scrapes
// the gateways through it, and the client-facing Service, which may be a
// LoadBalancer, never exposes that port.
func desiredInternalService(s *scope) *corev1.Service {
	m := s.objectMeta()
	m.Name = s.name() + "-internal"
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: m,
		Spec: corev1.ServiceSpec{
			Type:      corev1.ServiceTypeClusterIP,
			ClusterIP: corev1.ClusterIPNone,
			Selector:  s.selector(),
			Ports:     []corev1.ServicePort{render.InternalServicePort()},
		},
	}
}
