package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// GatewayPoolSpec is a pool of WebSocket gateways serving one IMCluster.
// +kubebuilder:validation:XValidation:rule="has(self.replicas) != has(self.autoscaling)",message="exactly one of replicas or autoscaling must be set"
// +kubebuilder:validation:XValidation:rule="!has(self.autoscaling) || !has(self.maxConnectionsPerPod) || self.autoscaling.targetConnectionsPerPod <= self.maxConnectionsPerPod",message="autoscaling.targetConnectionsPerPod must not exceed maxConnectionsPerPod"
type GatewayPoolSpec struct {
	// ClusterRef names the IMCluster (same namespace) the gateways belong to.
	// It cannot change: a pool moves by creating a new one.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="clusterRef is immutable"
	ClusterRef ClusterReference `json:"clusterRef"`
	// Replicas is a fixed pool size (also set by `kubectl scale gwp`).
	// Exactly one of replicas and autoscaling is set.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`
	// Autoscaling scales on connections per pod (imkube_gateway_connections,
	// through KEDA or a metrics adapter: the IMCluster's spec.autoscaling).
	// +optional
	Autoscaling *GatewayAutoscalingSpec `json:"autoscaling,omitempty"`
	// MaxConnectionsPerPod is the hard cap of WebSocket connections per gateway.
	// +kubebuilder:default=10000
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000
	// +optional
	MaxConnectionsPerPod int32 `json:"maxConnectionsPerPod,omitempty"`
	// Service exposes the pool.
	// +kubebuilder:default={}
	// +optional
	Service GatewayServiceSpec `json:"service,omitzero"`
	// DrainTimeout is how long a stopping gateway keeps its connections while
	// asking clients to reconnect elsewhere (1s..1h).
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('1h')",message="drainTimeout must be between 1s and 1h"
	// +optional
	DrainTimeout *metav1.Duration `json:"drainTimeout,omitempty"`
	// TrustedProxies are the CIDRs of the load balancers or ingress
	// controllers in front of the gateways: X-Forwarded-For is believed only
	// from them, so per-IP limits key on the real client.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=43
	// +kubebuilder:validation:XValidation:rule="self.all(c, isCIDR(c))",message="trustedProxies must be CIDRs such as 10.0.0.0/8"
	// +optional
	TrustedProxies []string `json:"trustedProxies,omitempty"`
	// Drain paces the evacuation of a stopping gateway.
	// +kubebuilder:default={}
	// +optional
	Drain GatewayDrainSpec `json:"drain,omitzero"`
	// HeartbeatInterval is the WebSocket ping interval (1s..5m); a connection
	// that answers no ping for three intervals is closed as idle.
	// +kubebuilder:default="25s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('5m')",message="heartbeatInterval must be between 1s and 5m"
	// +optional
	HeartbeatInterval *metav1.Duration `json:"heartbeatInterval,omitempty"`
	// Resources of the gateway container. Missing entries take the defaults
	// (docs/operator.md, "Resources"); raise the memory limit with
	// maxConnectionsPerPod.
	// +kubebuilder:default={requests: {cpu: "100m", memory: "128Mi", ephemeral-storage: "64Mi"}, limits: {memory: "512Mi", ephemeral-storage: "256Mi"}}
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitzero"`
	// NodeSelector for the gateway pods.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	// Tolerations for the gateway pods.
	// +optional
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`
	// TopologySpreadConstraints for the gateway pods. When empty, the operator
	// spreads pods across nodes and zones (maxSkew 1, ScheduleAnyway). The
	// pool's pod labels are added as the label selector when a constraint
	// has none.
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:XValidation:rule="self.all(c, c.maxSkew >= 1)",message="topologySpreadConstraints: maxSkew must be at least 1"
	// +kubebuilder:validation:XValidation:rule="self.all(c, c.whenUnsatisfiable == 'DoNotSchedule' || c.whenUnsatisfiable == 'ScheduleAnyway')",message="topologySpreadConstraints: whenUnsatisfiable must be DoNotSchedule or ScheduleAnyway"
	// +kubebuilder:validation:XValidation:rule="self.all(c, size(c.topologyKey) > 0)",message="topologySpreadConstraints: topologyKey must not be empty"
	// +optional
	TopologySpreadConstraints []corev1.TopologySpreadConstraint `json:"topologySpreadConstraints,omitempty"`
	// Affinity of the gateway pods; when empty, a soft (preferred) pod
	// anti-affinity across nodes.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`
}

// GatewayDrainSpec paces a gateway's drain: on SIGTERM it turns not ready,
// then asks connectionsPerSecond clients per second to reconnect elsewhere
// (each after a random delay below one second), and closes what is left when
// drainTimeout ends. connections / connectionsPerSecond should fit in
// drainTimeout.
type GatewayDrainSpec struct {
	// ConnectionsPerSecond is the evacuation rate of one gateway pod.
	// +kubebuilder:default=500
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000
	// +optional
	ConnectionsPerSecond int32 `json:"connectionsPerSecond,omitempty"`
}

// GatewayAutoscalingSpec scales a pool on connections per pod.
// +kubebuilder:validation:XValidation:rule="self.minReplicas <= self.maxReplicas",message="minReplicas must be less than or equal to maxReplicas"
type GatewayAutoscalingSpec struct {
	ReplicaRange `json:",inline"`
	// TargetConnectionsPerPod is the average number of connections per pod the
	// autoscaler aims for; keep it below maxConnectionsPerPod.
	// +kubebuilder:default=5000
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000
	// +optional
	TargetConnectionsPerPod int32 `json:"targetConnectionsPerPod,omitempty"`
}

// GatewayServiceSpec is the Service in front of the gateways.
// +kubebuilder:validation:XValidation:rule="!has(self.externalTrafficPolicy) || self.type != 'ClusterIP'",message="externalTrafficPolicy needs type NodePort or LoadBalancer"
type GatewayServiceSpec struct {
	// Type of the Service.
	// +kubebuilder:default=ClusterIP
	// +kubebuilder:validation:Enum=ClusterIP;NodePort;LoadBalancer
	// +optional
	Type corev1.ServiceType `json:"type,omitempty"`
	// Port of the Service (WebSocket at /ws, REST at /api/v1).
	// +kubebuilder:default=80
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port int32 `json:"port,omitempty"`
	// Annotations on the Service (load balancer settings).
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
	// ExternalTrafficPolicy of a NodePort or LoadBalancer Service: Local
	// keeps the client's source address (no SNAT) at the cost of uneven
	// spreading; Cluster (the Kubernetes default) spreads evenly.
	// +kubebuilder:validation:Enum=Cluster;Local
	// +optional
	ExternalTrafficPolicy corev1.ServiceExternalTrafficPolicy `json:"externalTrafficPolicy,omitempty"`
}

// GatewayPoolStatus is the observed state.
type GatewayPoolStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready, Progressing, Degraded.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Replicas is the number of gateway pods (scale subresource).
	// +optional
	Replicas int32 `json:"replicas"`
	// ReadyReplicas is the number of available gateway pods on the current spec.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas"`
	// Selector is the label selector of the gateway pods (scale subresource).
	// +optional
	Selector string `json:"selector,omitempty"`
	// Connections is the pool's total of open WebSocket connections as last
	// reported by its autoscaler's metric (average per pod x pods); absent
	// without autoscaling or before the metrics adapter answers.
	// +optional
	Connections *int64 `json:"connections,omitempty"`
	// Endpoint is the in-cluster address of the pool's Service.
	// +optional
	Endpoint string `json:"endpoint,omitempty"`
	// Image is the image (repository:tag) the gateways run.
	// +optional
	Image string `json:"image,omitempty"`
}

// GatewayPool is a scalable pool of imkube WebSocket gateways.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:subresource:scale:specpath=.spec.replicas,statuspath=.status.replicas,selectorpath=.status.selector
// +kubebuilder:resource:shortName=gwp,categories=imkube
// +kubebuilder:printcolumn:name="Cluster",type=string,JSONPath=`.spec.clusterRef.name`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Replicas",type=integer,JSONPath=`.status.replicas`
// +kubebuilder:printcolumn:name="Available",type=integer,JSONPath=`.status.readyReplicas`
// +kubebuilder:printcolumn:name="Connections",type=integer,JSONPath=`.status.connections`
// +kubebuilder:printcolumn:name="Endpoint",type=string,JSONPath=`.status.endpoint`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 50",message="GatewayPool names are limited to 50 characters (they prefix the names of owned objects)"
type GatewayPool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   GatewayPoolSpec   `json:"spec"`
	Status GatewayPoolStatus `json:"status,omitzero"`
}

// GatewayPoolList is a list of GatewayPool.
//
// +kubebuilder:object:root=true
type GatewayPoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []GatewayPool `json:"items"`
}
