package v1alpha1

// Condition types. Every one of them is always present in the status of a
// reconciled object, so `kubectl wait --for=condition=Ready` works.
const (
	// ConditionReady is True when every component has its desired replicas
	// available on the current spec and nothing is degraded.
	ConditionReady = "Ready"
	// ConditionProgressing is True while a rollout or scale change is under way.
	ConditionProgressing = "Progressing"
	// ConditionDegraded is True when the operator cannot bring the object to the
	// desired state (a dependency failed, an apply was rejected, ...).
	ConditionDegraded = "Degraded"
	// ConditionDependenciesReady (IMCluster only) is True when RocketMQ topics
	// exist and the referenced Secrets are present.
	ConditionDependenciesReady = "DependenciesReady"
)

// Condition reasons (CamelCase, as metav1.Condition requires).
const (
	// ReasonAllReady: Ready=True, everything is available.
	ReasonAllReady = "AllReady"
	// ReasonComponentsNotReady: Ready=False, some Deployment is not available yet.
	ReasonComponentsNotReady = "ComponentsNotReady"
	// ReasonDependenciesNotReady: Ready=False because DependenciesReady=False.
	ReasonDependenciesNotReady = "DependenciesNotReady"
	// ReasonRollingOut: Progressing=True, Deployments are updating or scaling.
	ReasonRollingOut = "RollingOut"
	// ReasonRolloutComplete: Progressing=False, all Deployments are on the current spec.
	ReasonRolloutComplete = "RolloutComplete"
	// ReasonAsExpected: Degraded=False.
	ReasonAsExpected = "AsExpected"
	// ReasonApplyFailed: an owned object could not be written (Degraded=True, Ready=False).
	ReasonApplyFailed = "ApplyFailed"
	// ReasonDependencyFailed: Degraded=True because a dependency check failed.
	ReasonDependencyFailed = "DependencyFailed"
	// ReasonDependenciesAvailable: DependenciesReady=True.
	ReasonDependenciesAvailable = "DependenciesAvailable"
	// ReasonTopicsNotReady: DependenciesReady=False, RocketMQ topics could not be
	// checked or created.
	ReasonTopicsNotReady = "TopicsNotReady"
	// ReasonSecretNotFound: DependenciesReady=False, a referenced Secret or key is missing.
	ReasonSecretNotFound = "SecretNotFound"
	// Degraded=True reasons from the pods and Deployments of the cluster's
	// components; the message names the component, the pod and what it says.
	//
	// ReasonCrashLoopBackOff: a container keeps exiting.
	ReasonCrashLoopBackOff = "CrashLoopBackOff"
	// ReasonImagePullBackOff: the image cannot be pulled (ErrImagePull,
	// ImagePullBackOff, InvalidImageName).
	ReasonImagePullBackOff = "ImagePullBackOff"
	// ReasonContainerConfigError: the container cannot be created
	// (CreateContainerConfigError: a missing Secret or key, ...).
	ReasonContainerConfigError = "CreateContainerConfigError"
	// ReasonProgressDeadlineExceeded: a Deployment did not progress within
	// its deadline.
	ReasonProgressDeadlineExceeded = "ProgressDeadlineExceeded"
	// ReasonDependencyUnreachable: a pod runs but is not ready because it
	// waits for a dependency (its /readyz names it: mysql, redis, rocketmq).
	ReasonDependencyUnreachable = "DependencyUnreachable"
	// ReasonClusterNotFound: a GatewayPool's clusterRef names no IMCluster.
	ReasonClusterNotFound = "ClusterNotFound"
	// ReasonKEDANotInstalled: Degraded=True, an autoscaler asks for KEDA
	// (spec.autoscaling.provider of the IMCluster) but the ScaledObject CRD
	// (keda.sh/v1alpha1) is not installed; nothing scales until it is, or
	// until the provider is HPA.
	ReasonKEDANotInstalled = "KEDANotInstalled"
)

// ComponentStatus is the replica count of one Deployment.
type ComponentStatus struct {
	// Desired is the number of replicas the Deployment wants.
	// +optional
	Desired int32 `json:"desired"`
	// Ready is the number of available replicas running the current spec.
	// +optional
	Ready int32 `json:"ready"`
}

// ClusterReference names an IMCluster in the same namespace.
type ClusterReference struct {
	// Name of the IMCluster.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`
}
