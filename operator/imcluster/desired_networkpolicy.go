package imcluster

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/imkube/imkube/operator/internal/render"
)

// Pod labels of the operator (the Helm chart's Deployment): it asks
// not-ready pods for their /readyz on the metrics/health port.
var operatorPodLabels = map[string]string{render.LabelName: "imkube", render.LabelComponent: "operator"}

// defaultMonitoringNamespaces is the monitoringNamespaceSelector when the
// spec has none (the CRD default).
var defaultMonitoringNamespaces = &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "monitoring"}}

// networkPolicyComponents are the pod groups with a NetworkPolicy: the
// gateways of every pool of the cluster, and the three services.
func networkPolicyComponents() []string {
	return []string{render.Gateway, render.Message, render.User, render.Sequence}
}

// callers are the components of the same cluster that may call component
// on its HTTP port: gateways call user and message (REST, sync, revocations),
// message calls sequence. Gateways take clients from anywhere.
func callers(component string) []string {
	switch component {
	case render.Message, render.User:
		return []string{render.Gateway}
	case render.Sequence:
		return []string{render.Message}
	}
	return nil
}

// callees are the components component calls (the inverse of callers).
func callees(component string) []string {
	var out []string
	for _, c := range networkPolicyComponents() {
		for _, from := range callers(c) {
			if from == component {
				out = append(out, c)
			}
		}
	}
	return out
}

// networkPolicyName is "<cluster>-<component>", "<cluster>-gateways" for
// the gateways of all pools (a pool's own objects are "<pool>-gateway").
func (s *scope) networkPolicyName(component string) string {
	if component == render.Gateway {
		return s.cluster.Name + "-gateways"
	}
	return s.name(component)
}

// podsOf selects the pods of a component of this cluster (gateways: of
// every pool attached to it).
func (s *scope) podsOf(component string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: render.Selector(s.cluster.Name, component, "")}
}

// desiredNetworkPolicy is the NetworkPolicy of one component's pods:
// ingress on the HTTP port from anywhere (gateways) or from the cluster's
// callers only (message, user: gateways; sequence: message), the
// metrics/health port from the monitoring namespaces and the operator; with
// restrictEgress, egress only to DNS, the component's callees in the
// cluster and spec.networkPolicy.dependencyEgress. Kubelet probes come from
// the pod's node, which NetworkPolicy implementations always allow (no rule
// can express "the kubelet").
func desiredNetworkPolicy(s *scope, component string) *networkingv1.NetworkPolicy {
	np := s.cluster.Spec.NetworkPolicy
	tcp := ptr.To(corev1.ProtocolTCP)
	httpPort := []networkingv1.NetworkPolicyPort{{Protocol: tcp, Port: ptr.To(intstr.FromString(render.HTTPPortName))}}
	metricsPort := []networkingv1.NetworkPolicyPort{{Protocol: tcp, Port: ptr.To(intstr.FromString(render.MetricsPortName))}}

	var ingress []networkingv1.NetworkPolicyIngressRule
	if component == render.Gateway {
		ingress = append(ingress, networkingv1.NetworkPolicyIngressRule{Ports: httpPort}) // clients: from anywhere
	} else {
		var from []networkingv1.NetworkPolicyPeer
		for _, c := range callers(component) {
			from = append(from, networkingv1.NetworkPolicyPeer{PodSelector: s.podsOf(c)})
		}
		ingress = append(ingress, networkingv1.NetworkPolicyIngressRule{Ports: httpPort, From: from})
	}
	monitoring := defaultMonitoringNamespaces
	if np.MonitoringNamespaceSelector != nil {
		monitoring = np.MonitoringNamespaceSelector
	}
	ingress = append(ingress, networkingv1.NetworkPolicyIngressRule{Ports: metricsPort, From: []networkingv1.NetworkPolicyPeer{
		{NamespaceSelector: monitoring.DeepCopy()},
		{NamespaceSelector: &metav1.LabelSelector{}, PodSelector: &metav1.LabelSelector{MatchLabels: operatorPodLabels}},
	}})

	p := &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: s.objectMeta(s.networkPolicyName(component), component),
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: *s.podsOf(component),
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress:     ingress,
		},
	}
	if !np.RestrictEgress {
		return p
	}
	udp := ptr.To(corev1.ProtocolUDP)
	dns := intstr.FromInt32(53)
	egress := []networkingv1.NetworkPolicyEgressRule{{
		// DNS to any destination: cluster DNS may be a pod (CoreDNS), a
		// node-local cache or a host process, which no selector covers.
		Ports: []networkingv1.NetworkPolicyPort{{Protocol: udp, Port: &dns}, {Protocol: tcp, Port: &dns}},
	}}
	if cs := callees(component); len(cs) > 0 {
		var to []networkingv1.NetworkPolicyPeer
		for _, c := range cs {
			to = append(to, networkingv1.NetworkPolicyPeer{PodSelector: s.podsOf(c)})
		}
		egress = append(egress, networkingv1.NetworkPolicyEgressRule{Ports: httpPort, To: to})
	}
	for _, r := range np.DependencyEgress {
		egress = append(egress, *r.DeepCopy())
	}
	p.Spec.PolicyTypes = append(p.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
	p.Spec.Egress = egress
	return p
}
