package render

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
	"github.com/imkube/imkube/internal/config"
)

// DefaultAdminPort is the admin API's port on the message service's pods.
const DefaultAdminPort = 9091

// webhooksConfig is the webhooks section of config.json (spec.webhooks
// without the Secret, which reaches the pods as IMKUBE_WEBHOOK_SECRET).
func webhooksConfig(c *imv1.IMCluster) config.Webhooks {
	w := c.Spec.Webhooks
	var out config.Webhooks
	if b := w.BeforeSend; b != nil {
		out.BeforeSend = config.BeforeSend{URL: b.URL, FailOpen: b.FailOpen, Timeout: config.Duration(config.DefaultBeforeSendTimeout)}
		if b.Timeout != nil && b.Timeout.Duration > 0 && b.Timeout.Duration <= config.MaxBeforeSendTimeout {
			out.BeforeSend.Timeout = config.Duration(b.Timeout.Duration)
		}
	}
	if e := w.Events; e != nil {
		out.Events = config.Events{URL: e.URL, Kinds: append([]string(nil), e.Kinds...)}
	}
	if p := w.OfflinePush; p != nil {
		out.OfflinePush = config.OfflinePush{URL: p.URL}
	}
	return out
}

// IntegrationsEnv is the webhook and admin environment of component's pods:
// only the message service calls hooks and serves the admin API.
func IntegrationsEnv(c *imv1.IMCluster, component string) []corev1.EnvVar {
	if component != Message {
		return nil
	}
	var env []corev1.EnvVar
	if ref := c.Spec.Webhooks.SecretRef; ref != nil {
		env = append(env, corev1.EnvVar{Name: "IMKUBE_WEBHOOK_SECRET", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: ref.DeepCopy()}})
	}
	if ref := c.Spec.Admin.SecretRef; ref != nil {
		env = append(env,
			corev1.EnvVar{Name: "IMKUBE_ADMIN_ADDR", Value: ":" + strconv.Itoa(AdminPort(c))},
			corev1.EnvVar{Name: "IMKUBE_ADMIN_KEY", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: ref.DeepCopy()}})
	}
	return env
}

// AdminPort is spec.admin.port with its default.
func AdminPort(c *imv1.IMCluster) int {
	if p := c.Spec.Admin.Port; p > 0 {
		return int(p)
	}
	return DefaultAdminPort
}

// integrationRefs are the Secret keys of the webhooks and the admin API.
func integrationRefs(c *imv1.IMCluster) []corev1.SecretKeySelector {
	var refs []corev1.SecretKeySelector
	if r := c.Spec.Webhooks.SecretRef; r != nil {
		refs = append(refs, *r)
	}
	if r := c.Spec.Admin.SecretRef; r != nil {
		refs = append(refs, *r)
	}
	return refs
}
