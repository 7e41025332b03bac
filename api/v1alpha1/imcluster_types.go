package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// IMClusterSpec is one imkube platform: the message, sequence and user
// services, their dependencies and the configuration they hot-reload.
//
// The upstream topic is isolation.upstreamTopic, or the derived
// IM_UPSTREAM_<id> (the rule below accepts any listed IM_UPSTREAM_* topic
// with enough queues then: CEL cannot derive the id).
// +kubebuilder:validation:XValidation:rule="!has(self.message) || !has(self.message.autoscaling) || (has(self.isolation) && has(self.isolation.upstreamTopic) ? (has(self.dependencies.rocketmq.topics) && self.dependencies.rocketmq.topics.exists(t, t.name == self.isolation.upstreamTopic) ? self.dependencies.rocketmq.topics.exists(t, t.name == self.isolation.upstreamTopic && self.message.autoscaling.maxReplicas <= t.queues) : self.message.autoscaling.maxReplicas <= 8) : (has(self.dependencies.rocketmq.topics) && self.dependencies.rocketmq.topics.exists(t, t.name.startsWith('IM_UPSTREAM_')) ? self.dependencies.rocketmq.topics.exists(t, t.name.startsWith('IM_UPSTREAM_') && self.message.autoscaling.maxReplicas <= t.queues) : self.message.autoscaling.maxReplicas <= 8))",fieldPath=".message.autoscaling.maxReplicas",message="message.autoscaling.maxReplicas must not exceed the queue count of the upstream topic (dependencies.rocketmq.topics, 8 when not listed): a replica without a queue consumes nothing"
type IMClusterSpec struct {
	// Image is the container image repository of imkube (one image serves
	// every component).
	// +kubebuilder:default="ghcr.io/imkube/imkube"
	// +kubebuilder:validation:MinLength=1
	// +optional
	Image string `json:"image,omitempty"`
	// Version is the image tag. Empty means the version of the operator.
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`
	// +optional
	Version string `json:"version,omitempty"`
	// ImagePullPolicy of every imkube container.
	// +kubebuilder:default=IfNotPresent
	// +kubebuilder:validation:Enum=Always;IfNotPresent;Never
	// +optional
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`
	// ImagePullSecrets for the imkube pods.
	// +optional
	ImagePullSecrets []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`
	// LogLevel of every component.
	// +kubebuilder:default=info
	// +kubebuilder:validation:Enum=debug;info;warn;error
	// +optional
	LogLevel string `json:"logLevel,omitempty"`

	// Dependencies are the RocketMQ, Redis and MySQL the services use.
	Dependencies DependenciesSpec `json:"dependencies"`
	// Isolation names what this cluster owns in the shared RocketMQ, Redis
	// and MySQL, so that clusters (in one namespace or several) can share
	// them without seeing each other's messages, sessions, sequences or
	// users. Every field defaults to a name derived from the namespace and
	// the name of the IMCluster (status.isolation shows the values in use).
	// Changing a value moves the cluster to new, empty topics, keys or
	// database.
	// +kubebuilder:default={}
	// +optional
	Isolation IsolationSpec `json:"isolation,omitzero"`
	// Auth configures the token signing key.
	// +kubebuilder:default={}
	// +optional
	Auth AuthSpec `json:"auth,omitzero"`

	// Message is the message service (consumes upstream, stores, routes pushes).
	// +kubebuilder:default={}
	// +optional
	Message MessageSpec `json:"message,omitzero"`
	// Sequence is the sequence allocation service.
	// +kubebuilder:default={}
	// +optional
	Sequence CPUScaledSpec `json:"sequence,omitzero"`
	// User is the user service (accounts, tokens, friends, groups).
	// +kubebuilder:default={}
	// +optional
	User CPUScaledSpec `json:"user,omitzero"`

	// Limits are per-user and per-connection limits, hot-reloaded by the services.
	// +kubebuilder:default={sendRatePerSecond: 10, sendBurst: 20, maxMessageBytes: 16384, connectionsPerIPPerSecond: 20}
	// +optional
	Limits LimitsSpec `json:"limits,omitzero"`
	// Groups are group chat settings, hot-reloaded by the services.
	// +kubebuilder:default={readDiffusionThreshold: 500, maxMembers: 10000}
	// +optional
	Groups GroupsSpec `json:"groups,omitzero"`
	// Users are account settings, hot-reloaded by the services.
	// +kubebuilder:default={defaultDMPolicy: anyone}
	// +optional
	Users UsersSpec `json:"users,omitzero"`
	// Media configures media messages (object store, limits, orphan TTL).
	// +kubebuilder:default={}
	// +optional
	Media MediaSpec `json:"media,omitzero"`
	// Messages are the message lifecycle settings (recall and edit windows).
	// +kubebuilder:default={recallWindowSeconds: 120, editWindowSeconds: 900}
	// +optional
	Messages MessagesSpec `json:"messages,omitzero"`
	// Webhooks are the integration hooks (before-send, events, offline push).
	// +optional
	Webhooks WebhooksSpec `json:"webhooks,omitzero"`
	// Admin configures the admin API of the message service.
	// +kubebuilder:default={}
	// +optional
	Admin AdminSpec `json:"admin,omitzero"`
	// Observability configures traces, metrics scraping and dashboards.
	// +kubebuilder:default={}
	// +optional
	Observability ObservabilitySpec `json:"observability,omitzero"`
	// Autoscaling chooses how the autoscaled components of the cluster and
	// its GatewayPools get their metrics (KEDA with Prometheus by default).
	// +kubebuilder:default={}
	// +optional
	Autoscaling AutoscalingSpec `json:"autoscaling,omitzero"`
	// NetworkPolicy configures the NetworkPolicies of the cluster's pods
	// (on by default).
	// +kubebuilder:default={}
	// +optional
	NetworkPolicy NetworkPolicySpec `json:"networkPolicy,omitzero"`
}

// AutoscalingProvider is what turns the metrics into replica counts.
// +kubebuilder:validation:Enum=KEDA;HPA
type AutoscalingProvider string

// Autoscaling providers.
const (
	// AutoscalingKEDA renders keda.sh/v1alpha1 ScaledObjects with Prometheus
	// triggers (KEDA creates and drives the HorizontalPodAutoscalers).
	AutoscalingKEDA AutoscalingProvider = "KEDA"
	// AutoscalingHPA renders autoscaling/v2 HorizontalPodAutoscalers on Pods
	// and External metrics served by a metrics adapter (the chart's
	// prometheus-adapter rules).
	AutoscalingHPA AutoscalingProvider = "HPA"
)

// AutoscalingSpec is the metrics path of the gateway (connections per pod)
// and message (broker consumer lag) autoscalers. Sequence and user scale on
// CPU through a plain HPA with either provider.
type AutoscalingSpec struct {
	// Provider is KEDA (ScaledObjects querying Prometheus; needs KEDA
	// installed) or HPA (needs a metrics adapter serving
	// imkube_gateway_connections and imkube_broker_consumer_lag).
	// +kubebuilder:default=KEDA
	// +optional
	Provider AutoscalingProvider `json:"provider,omitempty"`
	// PrometheusAddress is the Prometheus server KEDA queries (the default is
	// the Service of kube-prometheus-stack's Prometheus).
	// +kubebuilder:default="http://prometheus-operated.monitoring.svc:9090"
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:Pattern=`^https?://[^\s/?#]+(/[^\s?#]*)?$`
	// +optional
	PrometheusAddress string `json:"prometheusAddress,omitempty"`
}

// DependenciesSpec names the external systems.
type DependenciesSpec struct {
	// RocketMQ carries upstream messages and pushes.
	RocketMQ RocketMQSpec `json:"rocketmq"`
	// Redis holds sessions and sequence counters.
	Redis RedisSpec `json:"redis"`
	// MySQL stores messages, inboxes and users.
	MySQL MySQLSpec `json:"mysql"`
}

// RocketMQSpec locates RocketMQ and lists the topics the operator ensures.
type RocketMQSpec struct {
	// NameServers are the name server addresses (host:port).
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:Pattern=`^[^:;,\s]+:[0-9]{1,5}$`
	NameServers []string `json:"nameServers"`
	// BrokerAddresses are the master brokers (host:port) on which the operator
	// creates missing topics. Without them the operator only checks that the
	// topics exist and reports missing ones in DependenciesReady.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:Pattern=`^[^:;,\s]+:[0-9]{1,5}$`
	// +optional
	BrokerAddresses []string `json:"brokerAddresses,omitempty"`
	// Topics sets queue counts: the operator always ensures the cluster's
	// upstream and push topics (spec.isolation; 8 queues unless listed here
	// by name) and every other topic listed. The queue count of a topic must
	// not change once it carries traffic: messages are hashed to queues by
	// conversation.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	// +optional
	Topics []TopicSpec `json:"topics,omitempty"`
}

// TopicSpec is one RocketMQ topic.
type TopicSpec struct {
	// Name of the topic.
	// +kubebuilder:validation:MaxLength=127
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_%|-]{1,127}$`
	Name string `json:"name"`
	// Queues is the read and write queue count per broker.
	// +kubebuilder:default=8
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1024
	// +optional
	Queues int32 `json:"queues,omitempty"`
}

// IsolationSpec overrides the names a cluster uses in the shared
// dependencies. Empty fields take the derived defaults (id is
// `<namespace>_<name>`, dots as underscores, shortened with a hash when it
// has dashes or is long): topics `IM_UPSTREAM_<id>` and `IM_PUSH_<id>`,
// consumer-group prefix `<id>_`, Redis key prefixes
// `imkube:<namespace>/<name>:` (sessions) and `imkube:seq:<namespace>/<name>:`
// (sequences), MySQL database `imkube_<id>`. The schema rejects overrides
// that collide within the object; a collision with another IMCluster (or a
// derived default equal to another object's override) cannot be checked
// here: keep overrides unique per RocketMQ, Redis and MySQL.
// +kubebuilder:validation:XValidation:rule="!has(self.upstreamTopic) || !has(self.pushTopic) || self.upstreamTopic != self.pushTopic",message="upstreamTopic and pushTopic must differ"
// +kubebuilder:validation:XValidation:rule="!has(self.sessionKeyPrefix) || !has(self.sequenceKeyPrefix) || self.sessionKeyPrefix != self.sequenceKeyPrefix",message="sessionKeyPrefix and sequenceKeyPrefix must differ"
type IsolationSpec struct {
	// UpstreamTopic is the RocketMQ topic of client sends (the services'
	// IMKUBE_UPSTREAM_TOPIC); the operator creates it.
	// +kubebuilder:validation:MaxLength=100
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_-]{1,100}$`
	// +optional
	UpstreamTopic string `json:"upstreamTopic,omitempty"`
	// PushTopic is the RocketMQ topic of pushes to gateways
	// (IMKUBE_PUSH_TOPIC); the operator creates it.
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_-]{1,100}$`
	// +optional
	PushTopic string `json:"pushTopic,omitempty"`
	// ConsumerGroupPrefix prefixes every RocketMQ consumer and producer group
	// (IMKUBE_BUS_GROUP_PREFIX). The operator deletes the push groups of
	// gateways that no longer exist under this prefix.
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_-]{1,48}$`
	// +optional
	ConsumerGroupPrefix string `json:"consumerGroupPrefix,omitempty"`
	// SessionKeyPrefix prefixes the Redis session keys (IMKUBE_REDIS_PREFIX).
	// +kubebuilder:validation:Pattern=`^[^{}\s]{1,128}$`
	// +optional
	SessionKeyPrefix string `json:"sessionKeyPrefix,omitempty"`
	// SequenceKeyPrefix prefixes the Redis sequence keys (IMKUBE_SEQ_REDIS_PREFIX).
	// +kubebuilder:validation:Pattern=`^[^{}\s]{1,128}$`
	// +optional
	SequenceKeyPrefix string `json:"sequenceKeyPrefix,omitempty"`
	// MySQLDatabase replaces the database of the DSN (IMKUBE_MYSQL_DATABASE).
	// The services create it when missing, which needs the CREATE privilege
	// (for the default names: GRANT ALL ON `imkube\_%`.* TO the DSN's user).
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_$-]{1,64}$`
	// +optional
	MySQLDatabase string `json:"mysqlDatabase,omitempty"`
}

// RedisMode is how the services talk to Redis.
// +kubebuilder:validation:Enum=standalone;sentinel;cluster
type RedisMode string

// Redis modes.
const (
	RedisStandalone RedisMode = "standalone"
	RedisSentinel   RedisMode = "sentinel"
	RedisCluster    RedisMode = "cluster"
)

// RedisSpec locates Redis.
// +kubebuilder:validation:XValidation:rule="self.mode != 'standalone' || size(self.addresses) == 1",message="standalone mode takes exactly one address"
type RedisSpec struct {
	// Addresses are host:port pairs (sentinels in sentinel mode, seed nodes in
	// cluster mode).
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:Pattern=`^[^:;,\s]+:[0-9]{1,5}$`
	Addresses []string `json:"addresses"`
	// Mode is standalone, sentinel or cluster.
	// +kubebuilder:default=standalone
	// +optional
	Mode RedisMode `json:"mode,omitempty"`
	// PasswordSecretRef selects the key of a Secret holding the Redis password.
	// +optional
	PasswordSecretRef *corev1.SecretKeySelector `json:"passwordSecretRef,omitempty"`
}

// MySQLSpec locates MySQL.
type MySQLSpec struct {
	// DSNSecretRef selects the key of a Secret holding the go-sql-driver DSN,
	// e.g. `imkube:secret@tcp(mysql:3306)/imkube?parseTime=true`.
	DSNSecretRef corev1.SecretKeySelector `json:"dsnSecretRef"`
}

// AuthSpec configures the HMAC key that signs user tokens.
type AuthSpec struct {
	// SecretRef names a Secret with the key `jwt-key`. When absent, the
	// operator creates `<cluster>-auth` with a random key once and never
	// overwrites or deletes it (tokens survive re-creating the IMCluster).
	// +optional
	SecretRef *corev1.LocalObjectReference `json:"secretRef,omitempty"`
}

// WorkloadSpec is what every component Deployment shares.
type WorkloadSpec struct {
	// Replicas when autoscaling is not set (autoscaling wins when both are).
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`
	// Resources of the container; requests are needed for CPU autoscaling.
	// Missing entries take the defaults (docs/operator.md, "Resources"):
	// memory and ephemeral-storage requests and limits, a CPU request, no CPU
	// limit.
	// +kubebuilder:default={requests: {cpu: "100m", memory: "96Mi", ephemeral-storage: "64Mi"}, limits: {memory: "256Mi", ephemeral-storage: "256Mi"}}
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitzero"`
	// Placement spreads the pods across nodes and zones.
	// +kubebuilder:default={}
	// +optional
	Placement PlacementSpec `json:"placement,omitzero"`
}

// MessageSpec is the message service.
type MessageSpec struct {
	WorkloadSpec `json:",inline"`
	// Autoscaling scales on the consumer lag of the upstream topic as the
	// brokers see it (imkube_broker_consumer_lag, exported by the operator):
	// maxReplicas cannot exceed the topic's queue count (a replica without a
	// queue consumes nothing).
	// +optional
	Autoscaling *LagAutoscalingSpec `json:"autoscaling,omitempty"`
}

// CPUScaledSpec is a service that autoscales on CPU (sequence, user).
type CPUScaledSpec struct {
	WorkloadSpec `json:",inline"`
	// Autoscaling scales on CPU utilisation of the requests.
	// +optional
	Autoscaling *CPUAutoscalingSpec `json:"autoscaling,omitempty"`
}

// ReplicaRange bounds an autoscaler (the min <= max rule sits on the types
// that embed it).
type ReplicaRange struct {
	// MinReplicas is the lower bound.
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +optional
	MinReplicas int32 `json:"minReplicas,omitempty"`
	// MaxReplicas is the upper bound.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	MaxReplicas int32 `json:"maxReplicas"`
	// ScaleDownStabilizationSeconds is how long the metric must stay low
	// before the autoscaler removes replicas (the highest recommendation of
	// that window wins); every removed gateway drains its clients.
	// +kubebuilder:default=300
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=3600
	// +optional
	ScaleDownStabilizationSeconds *int32 `json:"scaleDownStabilizationSeconds,omitempty"`
}

// LagAutoscalingSpec scales the message service on consumer lag.
// +kubebuilder:validation:XValidation:rule="self.minReplicas <= self.maxReplicas",message="minReplicas must be less than or equal to maxReplicas"
type LagAutoscalingSpec struct {
	ReplicaRange `json:",inline"`
	// TargetLagPerReplica is the number of unconsumed upstream messages one
	// replica should have at most.
	// +kubebuilder:default=1000
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000000
	// +optional
	TargetLagPerReplica int64 `json:"targetLagPerReplica,omitempty"`
}

// CPUAutoscalingSpec scales on CPU utilisation.
// +kubebuilder:validation:XValidation:rule="self.minReplicas <= self.maxReplicas",message="minReplicas must be less than or equal to maxReplicas"
type CPUAutoscalingSpec struct {
	ReplicaRange `json:",inline"`
	// TargetCPUUtilizationPercentage of the CPU request.
	// +kubebuilder:default=70
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	TargetCPUUtilizationPercentage int32 `json:"targetCPUUtilizationPercentage,omitempty"`
}

// LimitsSpec are the limits the gateway and services enforce (Sentinel rules
// and config.json).
// +kubebuilder:validation:XValidation:rule="self.sendBurst >= self.sendRatePerSecond",message="sendBurst must be at least sendRatePerSecond"
type LimitsSpec struct {
	// SendRatePerSecond is the sustained per-user send rate.
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	// +optional
	SendRatePerSecond int32 `json:"sendRatePerSecond,omitempty"`
	// SendBurst is the per-user burst above the rate.
	// +kubebuilder:default=20
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000
	// +optional
	SendBurst int32 `json:"sendBurst,omitempty"`
	// MaxMessageBytes is the largest message body accepted.
	// +kubebuilder:default=16384
	// +kubebuilder:validation:Minimum=256
	// +kubebuilder:validation:Maximum=1048576
	// +optional
	MaxMessageBytes int32 `json:"maxMessageBytes,omitempty"`
	// ConnectionsPerIPPerSecond limits new WebSocket connections per client IP.
	// +kubebuilder:default=20
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000
	// +optional
	ConnectionsPerIPPerSecond int32 `json:"connectionsPerIPPerSecond,omitempty"`
}

// GroupsSpec are group chat settings.
// +kubebuilder:validation:XValidation:rule="self.readDiffusionThreshold <= self.maxMembers",message="readDiffusionThreshold must not exceed maxMembers"
type GroupsSpec struct {
	// ReadDiffusionThreshold is the member count above which a group switches
	// from write diffusion (inbox rows) to read diffusion (notify + pull).
	// +kubebuilder:default=500
	// +kubebuilder:validation:Minimum=2
	// +kubebuilder:validation:Maximum=1000000
	// +optional
	ReadDiffusionThreshold int32 `json:"readDiffusionThreshold,omitempty"`
	// MaxMembers of one group.
	// +kubebuilder:default=10000
	// +kubebuilder:validation:Minimum=2
	// +kubebuilder:validation:Maximum=1000000
	// +optional
	MaxMembers int32 `json:"maxMembers,omitempty"`
}

// DM policies: who may send a one-to-one message to a user.
const (
	DMPolicyAnyone  = "anyone"
	DMPolicyFriends = "friends"
)

// UsersSpec are account settings.
type UsersSpec struct {
	// DefaultDMPolicy is who may send a one-to-one message to a user who has
	// not chosen (PATCH /api/v1/users/me {dmPolicy}): anyone, or friends
	// only. Blocked users never can.
	// +kubebuilder:default=anyone
	// +kubebuilder:validation:Enum=anyone;friends
	// +kubebuilder:validation:XValidation:rule="self == 'anyone' || self == 'friends'",message="defaultDMPolicy must be anyone or friends"
	// +optional
	DefaultDMPolicy string `json:"defaultDMPolicy,omitempty"`
}

// MessagesSpec sets how long after sending a sender may recall or edit a
// message (group owners and admins recall at any time).
// +kubebuilder:validation:XValidation:rule="!has(self.recallWindowSeconds) || !has(self.editWindowSeconds) || (self.recallWindowSeconds <= 604800 && self.editWindowSeconds <= 604800)",message="recall and edit windows are at most 7 days (604800 seconds)"
type MessagesSpec struct {
	// RecallWindowSeconds: the sender may recall a message this long after sending it.
	// +kubebuilder:default=120
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=604800
	// +optional
	RecallWindowSeconds int32 `json:"recallWindowSeconds,omitempty"`
	// EditWindowSeconds: the sender may edit a message this long after sending it.
	// +kubebuilder:default=900
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=604800
	// +optional
	EditWindowSeconds int32 `json:"editWindowSeconds,omitempty"`
}

// ObservabilitySpec configures telemetry.
type ObservabilitySpec struct {
	// OTLPEndpoint receives traces and metrics (host:port or URL); empty turns
	// OTLP export off.
	// +kubebuilder:validation:MaxLength=512
	// +optional
	OTLPEndpoint string `json:"otlpEndpoint,omitempty"`
	// ServiceMonitor asks for a prometheus-operator ServiceMonitor (installed by
	// the Helm chart).
	// +kubebuilder:default=false
	// +optional
	ServiceMonitor bool `json:"serviceMonitor,omitempty"`
	// ServiceMonitorLabels are added to the ServiceMonitor's labels: a
	// Prometheus of kube-prometheus-stack selects monitors by label (e.g.
	// release: kube-prometheus-stack). The operator's own labels win.
	// +kubebuilder:validation:MaxProperties=16
	// +optional
	ServiceMonitorLabels map[string]string `json:"serviceMonitorLabels,omitempty"`
	// Dashboards asks for the Grafana dashboard ConfigMaps (installed by the
	// Helm chart).
	// +kubebuilder:default=false
	// +optional
	Dashboards bool `json:"dashboards,omitempty"`
}

// IMClusterComponents are the per-component replica counts.
type IMClusterComponents struct {
	// +optional
	Message ComponentStatus `json:"message,omitzero"`
	// +optional
	Sequence ComponentStatus `json:"sequence,omitzero"`
	// +optional
	User ComponentStatus `json:"user,omitzero"`
}

// IMClusterEndpoints are the in-cluster URLs of the services.
type IMClusterEndpoints struct {
	// +optional
	Message string `json:"message,omitempty"`
	// +optional
	Sequence string `json:"sequence,omitempty"`
	// +optional
	User string `json:"user,omitempty"`
}

// GatewayPoolSummary is one GatewayPool attached to the cluster.
type GatewayPoolSummary struct {
	// Name of the GatewayPool.
	Name string `json:"name"`
	// ReadyReplicas of its gateway Deployment.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas"`
	// Endpoint is the address clients connect to.
	// +optional
	Endpoint string `json:"endpoint,omitempty"`
}

// IMClusterStatus is the observed state.
type IMClusterStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready, Progressing, Degraded, DependenciesReady.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Image is the image (repository:tag) the components run.
	// +optional
	Image string `json:"image,omitempty"`
	// Components are the replica counts of message, sequence and user.
	// +optional
	Components IMClusterComponents `json:"components,omitzero"`
	// Endpoints are the in-cluster service URLs.
	// +optional
	Endpoints IMClusterEndpoints `json:"endpoints,omitzero"`
	// Isolation is the names the cluster uses in the shared dependencies
	// (spec.isolation with the derived defaults filled in).
	// +optional
	Isolation IsolationSpec `json:"isolation,omitzero"`
	// GatewayPools attached to this cluster.
	// +listType=map
	// +listMapKey=name
	// +optional
	GatewayPools []GatewayPoolSummary `json:"gatewayPools,omitempty"`
}

// IMCluster is one imkube instant-messaging platform.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=imc,categories=imkube
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Msg",type=integer,JSONPath=`.status.components.message.ready`,description="ready message replicas"
// +kubebuilder:printcolumn:name="Seq",type=integer,JSONPath=`.status.components.sequence.ready`,description="ready sequence replicas"
// +kubebuilder:printcolumn:name="User",type=integer,JSONPath=`.status.components.user.ready`,description="ready user replicas"
// +kubebuilder:printcolumn:name="Image",type=string,JSONPath=`.status.image`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 40",message="IMCluster names are limited to 40 characters (they prefix the names of owned objects)"
type IMCluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   IMClusterSpec   `json:"spec"`
	Status IMClusterStatus `json:"status,omitzero"`
}

// IMClusterList is a list of IMCluster.
//
// +kubebuilder:object:root=true
type IMClusterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []IMCluster `json:"items"`
}
