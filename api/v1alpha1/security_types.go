package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// NetworkPolicySpec configures the NetworkPolicies the operator renders for
// the cluster's pods (see docs/operator.md, "Security"): gateways take
// client traffic from anywhere; message and user take traffic only from the
// cluster's gateways, sequence only from the cluster's message service; the
// metrics/health port is open to the monitoring namespaces and the
// operator. Kubelet probes come from the node, which NetworkPolicy
// implementations allow.
// +kubebuilder:validation:XValidation:rule="!has(self.restrictEgress) || !self.restrictEgress || (has(self.dependencyEgress) && size(self.dependencyEgress) > 0)",message="restrictEgress needs dependencyEgress: without a rule for RocketMQ, Redis and MySQL the pods cannot reach their dependencies"
type NetworkPolicySpec struct {
	// Enabled renders the NetworkPolicies; false deletes the ones the
	// operator created.
	// +kubebuilder:default=true
	// +optional
	Enabled *bool `json:"enabled,omitempty"`
	// MonitoringNamespaceSelector selects the namespaces whose pods may reach
	// the metrics and health port of every pod (Prometheus). Default: the
	// namespace named `monitoring`.
	// +kubebuilder:default={matchLabels: {"kubernetes.io/metadata.name": "monitoring"}}
	// +optional
	MonitoringNamespaceSelector *metav1.LabelSelector `json:"monitoringNamespaceSelector,omitempty"`
	// RestrictEgress limits the pods' outgoing traffic to DNS, the cluster's
	// own services and dependencyEgress. Off by default: egress is open.
	// +kubebuilder:default=false
	// +optional
	RestrictEgress bool `json:"restrictEgress,omitempty"`
	// DependencyEgress are the destinations the pods may reach when
	// restrictEgress is set: RocketMQ (name servers and brokers), Redis,
	// MySQL, the OTLP collector, the S3 media store, as NetworkPolicy egress rules (ipBlock
	// CIDRs, namespace and pod selectors, ports).
	// +kubebuilder:validation:MaxItems=32
	// +optional
	DependencyEgress []networkingv1.NetworkPolicyEgressRule `json:"dependencyEgress,omitempty"`
}

// PlacementSpec spreads a component's pods. Empty fields take the
// operator's defaults: a topology spread over nodes and over zones and a
// soft (preferred) pod anti-affinity across nodes, all ScheduleAnyway, so
// a one-node cluster still schedules every replica.
type PlacementSpec struct {
	// TopologySpreadConstraints replace the default spread (nodes and zones,
	// maxSkew 1, ScheduleAnyway). A constraint without labelSelector gets the
	// component's pod labels.
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:XValidation:rule="self.all(c, c.maxSkew >= 1)",message="topologySpreadConstraints: maxSkew must be at least 1"
	// +kubebuilder:validation:XValidation:rule="self.all(c, c.whenUnsatisfiable == 'DoNotSchedule' || c.whenUnsatisfiable == 'ScheduleAnyway')",message="topologySpreadConstraints: whenUnsatisfiable must be DoNotSchedule or ScheduleAnyway"
	// +kubebuilder:validation:XValidation:rule="self.all(c, size(c.topologyKey) > 0)",message="topologySpreadConstraints: topologyKey must not be empty"
	// +optional
	TopologySpreadConstraints []corev1.TopologySpreadConstraint `json:"topologySpreadConstraints,omitempty"`
	// Affinity replaces the default soft anti-affinity across nodes.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`
}
