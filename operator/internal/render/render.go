// Package render holds what the IMCluster and GatewayPool controllers share
// when they build desired objects: names, labels, the cluster ConfigMap
// content, the pod security settings and the container environment of the
// service runtime contract. Everything here is pure: no client calls.
package render

import (
	"cmp"
	"errors"
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
)

// FieldManager is the one server-side apply field manager of the operator.
const FieldManager = "imkube-operator"

// Labels and annotations the operator sets.
const (
	LabelName      = "app.kubernetes.io/name"
	LabelInstance  = "app.kubernetes.io/instance"
	LabelComponent = "app.kubernetes.io/component"
	LabelManagedBy = "app.kubernetes.io/managed-by"
	LabelPartOf    = "app.kubernetes.io/part-of"
	LabelVersion   = "app.kubernetes.io/version"
	// LabelGatewayPool marks gateway objects with their pool.
	LabelGatewayPool = "im.imkube.io/gateway-pool"
	// AnnotationConfigHash on the cluster ConfigMap fingerprints its data.
	// Pod templates do not carry it: every process hot-reloads the ConfigMap
	// (limits, group settings, media settings, Sentinel rules), so changing
	// them rolls no pod.
	AnnotationConfigHash = "im.imkube.io/config-hash"

	// ManagedByValue is the value of LabelManagedBy on every owned object;
	// the manager's cache only holds objects with it.
	ManagedByValue = "imkube-operator"
	appName        = "imkube"
)

// Components of an IMCluster (and the gateway of a GatewayPool).
const (
	Message  = "message"
	Sequence = "sequence"
	User     = "user"
	Gateway  = "gateway"
)

// Container runtime contract.
const (
	HTTPPort     = 8080
	HTTPPortName = "http"
	// InternalPort serves /metrics, /healthz and /readyz (IMKUBE_INTERNAL_ADDR):
	// the probes, Prometheus and the operator use it; clients and the other
	// components use HTTPPort only. MetricsPortName is its name (Services,
	// ServiceMonitor, NetworkPolicies).
	InternalPort    = 9090
	MetricsPortName = "internal"
	ConfigDir       = "/etc/imkube/config"
	// TmpDir is the emptyDir of every pod (the root filesystem is
	// read-only); HomeDir, the container's $HOME, lies on it: the RocketMQ
	// client keeps state under $HOME/.rocketmq_client_go.
	TmpDir          = "/tmp"
	HomeDir         = TmpDir
	AuthDir         = "/etc/imkube/auth"
	ConfigFileKey   = "config.json"
	SentinelFileKey = "sentinel-rules.json"
	JWTKeyKey       = "jwt-key"
	nonRootUID      = 65532
)

// DefaultImage is the image repository when an IMCluster names none.
const DefaultImage = "ghcr.io/imkube/imkube"

// Options are the operator-wide settings the builders need.
type Options struct {
	// Version is the image tag used when an IMCluster sets no version (the
	// operator's own version).
	Version string
}

// ComponentName is the name of the Deployment, Service, HPA and PDB of an
// IMCluster component: "<cluster>-<component>".
func ComponentName(cluster, component string) string { return cluster + "-" + component }

// GatewayName is the name of the gateway objects of a pool: "<pool>-gateway".
func GatewayName(pool string) string { return pool + "-" + Gateway }

// ConfigMapName is the name of the cluster's ConfigMap.
func ConfigMapName(cluster string) string { return cluster + "-config" }

// GeneratedAuthSecretName is the Secret the operator creates when
// spec.auth.secretRef is absent.
func GeneratedAuthSecretName(cluster string) string { return cluster + "-auth" }

// AuthSecretName is the Secret holding jwt-key for the cluster.
func AuthSecretName(c *imv1.IMCluster) string {
	if c.Spec.Auth.SecretRef != nil && c.Spec.Auth.SecretRef.Name != "" {
		return c.Spec.Auth.SecretRef.Name
	}
	return GeneratedAuthSecretName(c.Name)
}

// ServiceURL is the in-cluster URL of a component service.
func ServiceURL(c *imv1.IMCluster, component string) string {
	return "http://" + ComponentName(c.Name, component) + ":8080"
}

// Image is "<repository>:<tag>" for the cluster.
func Image(c *imv1.IMCluster, o Options) string {
	return cmp.Or(c.Spec.Image, DefaultImage) + ":" + cmp.Or(c.Spec.Version, o.Version, "dev")
}

// Selector is the pod selector of a component of cluster (pool is set for gateways).
func Selector(cluster, component, pool string) map[string]string {
	m := map[string]string{
		LabelName:      appName,
		LabelInstance:  cluster,
		LabelComponent: component,
	}
	if pool != "" {
		m[LabelGatewayPool] = pool
	}
	return m
}

// Labels are the labels of every object for a component (selector labels
// plus managed-by and version).
func Labels(cluster, component, pool, version string) map[string]string {
	m := Selector(cluster, component, pool)
	m[LabelManagedBy] = ManagedByValue
	m[LabelPartOf] = appName
	if version != "" && len(version) <= 63 {
		m[LabelVersion] = version
	}
	return m
}

// ImageTag returns the tag part of an image reference.
func ImageTag(image string) string {
	if i := strings.LastIndex(image, ":"); i >= 0 && !strings.Contains(image[i:], "/") {
		return image[i+1:]
	}
	return ""
}

// OwnerReference makes owner the controller of an object.
func OwnerReference(owner metav1.Object, kind string) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion:         imv1.GroupVersion.String(),
		Kind:               kind,
		Name:               owner.GetName(),
		UID:                owner.GetUID(),
		Controller:         ptr.To(true),
		BlockOwnerDeletion: ptr.To(true),
	}
}

// PodSecurityContext runs pods as the contract's non-root user.
func PodSecurityContext() *corev1.PodSecurityContext {
	return &corev1.PodSecurityContext{
		RunAsNonRoot:   ptr.To(true),
		RunAsUser:      ptr.To[int64](nonRootUID),
		RunAsGroup:     ptr.To[int64](nonRootUID),
		FSGroup:        ptr.To[int64](nonRootUID),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// ContainerSecurityContext: read-only root, no privilege escalation, no capabilities.
func ContainerSecurityContext() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false),
		ReadOnlyRootFilesystem:   ptr.To(true),
		RunAsNonRoot:             ptr.To(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// Volumes are the config, auth and /tmp volumes of every imkube pod; /tmp
// is bounded by tmpLimit (nil: unbounded), the container's
// ephemeral-storage limit.
func Volumes(c *imv1.IMCluster, tmpLimit *resource.Quantity) []corev1.Volume {
	return []corev1.Volume{
		{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: ConfigMapName(c.Name)},
			DefaultMode:          ptr.To[int32](0o444),
		}}},
		{Name: "auth", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName:  AuthSecretName(c),
			DefaultMode: ptr.To[int32](0o440),
			Items:       []corev1.KeyToPath{{Key: JWTKeyKey, Path: JWTKeyKey}},
		}}},
		{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: tmpLimit}}},
	}
}

// VolumeMounts mount Volumes into the container.
func VolumeMounts() []corev1.VolumeMount {
	return []corev1.VolumeMount{
		{Name: "config", MountPath: ConfigDir, ReadOnly: true},
		{Name: "auth", MountPath: AuthDir, ReadOnly: true},
		{Name: "tmp", MountPath: TmpDir},
	}
}

// Env is the environment of the contract shared by every component.
func Env(c *imv1.IMCluster) []corev1.EnvVar {
	deps := c.Spec.Dependencies
	env := []corev1.EnvVar{
		{Name: "HOME", Value: HomeDir},
		{Name: "IMKUBE_ADDR", Value: fmt.Sprintf(":%d", HTTPPort)},
		{Name: "IMKUBE_INTERNAL_ADDR", Value: fmt.Sprintf(":%d", InternalPort)},
		{Name: "IMKUBE_LOG_LEVEL", Value: cmp.Or(c.Spec.LogLevel, "info")},
		{Name: "IMKUBE_REDIS_ADDR", Value: strings.Join(deps.Redis.Addresses, ",")},
		{Name: "IMKUBE_REDIS_MODE", Value: string(cmp.Or(deps.Redis.Mode, imv1.RedisStandalone))},
	}
	if ref := deps.Redis.PasswordSecretRef; ref != nil {
		env = append(env, corev1.EnvVar{Name: "IMKUBE_REDIS_PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: ref.DeepCopy()}})
	}
	iso := Isolation(c)
	env = append(env,
		corev1.EnvVar{Name: "IMKUBE_REDIS_PREFIX", Value: iso.SessionKeyPrefix},
		corev1.EnvVar{Name: "IMKUBE_SEQ_REDIS_PREFIX", Value: iso.SequenceKeyPrefix},
		corev1.EnvVar{Name: "IMKUBE_MYSQL_DSN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: deps.MySQL.DSNSecretRef.DeepCopy()}},
		corev1.EnvVar{Name: "IMKUBE_MYSQL_DATABASE", Value: iso.MySQLDatabase},
		corev1.EnvVar{Name: "IMKUBE_ROCKETMQ_NAMESRV", Value: strings.Join(deps.RocketMQ.NameServers, ";")},
		corev1.EnvVar{Name: "IMKUBE_UPSTREAM_TOPIC", Value: iso.UpstreamTopic},
		corev1.EnvVar{Name: "IMKUBE_PUSH_TOPIC", Value: iso.PushTopic},
		corev1.EnvVar{Name: "IMKUBE_BUS_GROUP_PREFIX", Value: iso.ConsumerGroupPrefix},
		corev1.EnvVar{Name: "IMKUBE_JWT_KEY_FILE", Value: AuthDir + "/" + JWTKeyKey},
		corev1.EnvVar{Name: "IMKUBE_CONFIG_FILE", Value: ConfigDir + "/" + ConfigFileKey},
		corev1.EnvVar{Name: "IMKUBE_SENTINEL_RULES_FILE", Value: ConfigDir + "/" + SentinelFileKey},
	)
	recall, edit := c.Spec.Messages.RecallWindowSeconds, c.Spec.Messages.EditWindowSeconds
	if recall <= 0 {
		recall = 120
	}
	if edit <= 0 {
		edit = 900
	}
	env = append(env,
		corev1.EnvVar{Name: "IMKUBE_RECALL_WINDOW", Value: fmt.Sprintf("%ds", recall)},
		corev1.EnvVar{Name: "IMKUBE_EDIT_WINDOW", Value: fmt.Sprintf("%ds", edit)},
	)
	if ep := c.Spec.Observability.OTLPEndpoint; ep != "" {
		env = append(env, corev1.EnvVar{Name: "IMKUBE_OTLP_ENDPOINT", Value: ep})
	}
	env = append(env,
		corev1.EnvVar{Name: "IMKUBE_USER_URL", Value: ServiceURL(c, User)},
		corev1.EnvVar{Name: "IMKUBE_MESSAGE_URL", Value: ServiceURL(c, Message)},
		corev1.EnvVar{Name: "IMKUBE_SEQUENCE_URL", Value: ServiceURL(c, Sequence)},
	)
	return env
}

// CheckWritablePaths reports a container of spec whose $HOME (or TMPDIR)
// is unset or not on a writable volume: with a read-only root filesystem
// every path a process writes must be a mounted emptyDir. Both controllers'
// tests run it on their Deployments.
func CheckWritablePaths(spec corev1.PodSpec) error {
	emptyDirs := map[string]bool{}
	for _, v := range spec.Volumes {
		emptyDirs[v.Name] = v.EmptyDir != nil
	}
	var errs []string
	for _, c := range spec.Containers {
		env := map[string]string{}
		for _, e := range c.Env {
			env[e.Name] = e.Value
		}
		for _, name := range []string{"HOME", "TMPDIR"} {
			path, ok := env[name]
			if name == "TMPDIR" && !ok {
				path = "/tmp" // the default of os.TempDir
			}
			if path == "" {
				errs = append(errs, fmt.Sprintf("container %s: %s is not set", c.Name, name))
				continue
			}
			writable := false
			for _, m := range c.VolumeMounts {
				if emptyDirs[m.Name] && !m.ReadOnly && (path == m.MountPath || strings.HasPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/")) {
					writable = true
				}
			}
			if !writable {
				errs = append(errs, fmt.Sprintf("container %s: %s=%s is not on a writable emptyDir", c.Name, name, path))
			}
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// Probes returns the liveness and readiness probes of the contract.
func Probes() (liveness, readiness *corev1.Probe) {
	get := func(path string) corev1.ProbeHandler {
		return corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: path, Port: intstr.FromString(MetricsPortName), Scheme: corev1.URISchemeHTTP,
		}}
	}
	liveness = &corev1.Probe{
		ProbeHandler: get("/healthz"), PeriodSeconds: 10, TimeoutSeconds: 2,
		FailureThreshold: 3, SuccessThreshold: 1,
	}
	readiness = &corev1.Probe{
		ProbeHandler: get("/readyz"), PeriodSeconds: 5, TimeoutSeconds: 2,
		FailureThreshold: 3, SuccessThreshold: 1,
	}
	return liveness, readiness
}

// ContainerPorts are the HTTP port (clients, calls between components) and
// the internal port (probes, metrics) of the contract.
func ContainerPorts() []corev1.ContainerPort {
	return []corev1.ContainerPort{
		{Name: HTTPPortName, ContainerPort: HTTPPort, Protocol: corev1.ProtocolTCP},
		{Name: MetricsPortName, ContainerPort: InternalPort, Protocol: corev1.ProtocolTCP},
	}
}

// InternalServicePort is the internal port on a Service (the ServiceMonitor
// scrapes the Services' ports of this name).
func InternalServicePort() corev1.ServicePort {
	return corev1.ServicePort{Name: MetricsPortName, Port: InternalPort, TargetPort: intstr.FromString(MetricsPortName), Protocol: corev1.ProtocolTCP}
}

// PodAnnotations are the pod template annotations: the hash of the Secret
// values the pods read as environment variables when known (rolls them when
// a DSN or password changes) and Prometheus scrape hints. No config hash:
// the ConfigMap is hot-reloaded (AnnotationConfigHash).
func PodAnnotations(secretsHash string) map[string]string {
	a := map[string]string{
		"prometheus.io/scrape": "true",
		"prometheus.io/port":   strconv.Itoa(InternalPort),
		"prometheus.io/path":   "/metrics",
	}
	if secretsHash != "" {
		a[AnnotationSecretsHash] = secretsHash
	}
	return a
}
