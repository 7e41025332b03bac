package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// WebhooksSpec configures the integration hooks (docs/integrations.md):
// the before-send hook on the message path, the event hooks delivered at
// least once in order per conversation, and offline push. Every request is
// signed with HMAC-SHA256 under the key secretRef selects (header
// X-Imkube-Signature: sha256=<hex>). URLs and settings are hot-reloaded by
// the services; a changed key rolls the message service's pods.
// +kubebuilder:validation:XValidation:rule="!(has(self.beforeSend) || has(self.events) || has(self.offlinePush)) || has(self.secretRef)",message="webhooks need secretRef: the key that signs every hook request"
type WebhooksSpec struct {
	// BeforeSend is asked about every send before it is stored.
	// +optional
	BeforeSend *BeforeSendHookSpec `json:"beforeSend,omitempty"`
	// Events gets stored messages, recalls, edits and group events.
	// +optional
	Events *EventsHookSpec `json:"events,omitempty"`
	// OfflinePush is called for recipients with no online device.
	// +optional
	OfflinePush *OfflinePushHookSpec `json:"offlinePush,omitempty"`
	// SecretRef selects the key of a Secret holding the signing key; only
	// the message service's pods read it.
	// +optional
	SecretRef *corev1.SecretKeySelector `json:"secretRef,omitempty"`
}

// BeforeSendHookSpec is the synchronous before-send hook.
type BeforeSendHookSpec struct {
	// URL the message is POSTed to (http or https).
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''",message="url must be an http(s) URL with a host"
	URL string `json:"url"`
	// Timeout of one call; the send waits at most this long.
	// +kubebuilder:default="500ms"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10ms') && duration(self) <= duration('5s')",message="timeout must be between 10ms and 5s"
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`
	// FailOpen stores the message unchanged when the hook fails or times
	// out; false (the default) refuses it with UNAVAILABLE (retryable).
	// +optional
	FailOpen bool `json:"failOpen,omitempty"`
}

// EventsHookSpec is the asynchronous event hook.
type EventsHookSpec struct {
	// URL the events are POSTed to (http or https).
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''",message="url must be an http(s) URL with a host"
	URL string `json:"url"`
	// Kinds limits the events sent; empty: all.
	// +kubebuilder:validation:items:Enum=message.stored;message.recalled;message.edited;group.event;user.online;user.offline;friend.event
	// +kubebuilder:validation:MaxItems=8
	// +listType=set
	// +optional
	Kinds []string `json:"kinds,omitempty"`
}

// OfflinePushHookSpec is the offline push hook.
type OfflinePushHookSpec struct {
	// URL the batches are POSTed to (http or https).
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''",message="url must be an http(s) URL with a host"
	URL string `json:"url"`
}

// AdminSpec configures the admin API (ban, logout, system messages, delete
// for everyone). It is served by the message service on its own port,
// never on the gateways' public port, and every request needs the key.
type AdminSpec struct {
	// SecretRef selects the key of a Secret holding the admin key (at least
	// 16 characters). Without it the admin API is off.
	// +optional
	SecretRef *corev1.SecretKeySelector `json:"secretRef,omitempty"`
	// Port of the admin API on the message service's pods.
	// +kubebuilder:default=9091
	// +kubebuilder:validation:Minimum=1024
	// +kubebuilder:validation:Maximum=65535
	// +kubebuilder:validation:XValidation:rule="self != 8080 && self != 9090",message="port must differ from the service port 8080 and the internal port 9090"
	// +optional
	Port int32 `json:"port,omitempty"`
}
