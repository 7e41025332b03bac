package render

import (
	corev1 "k8s.io/api/core/v1"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
)

// AnnotationSecretsHash on a pod template changes with the values of the
// Secret keys the pod reads as environment variables. Environment variables
// are fixed when a container starts, so a changed DSN or Redis password must
// roll the pods to reach them. (The auth Secret is mounted as a file, which
// the kubelet refreshes in place and the processes reload: it is not hashed.)
const AnnotationSecretsHash = "im.imkube.io/secrets-hash"

// SecretEnvRefs are the Secret keys component reads through its environment
// (see Env): the MySQL DSN for the components that use MySQL (message, user,
// sequence) and the Redis password, when set, for those that use Redis
// (gateway, message, sequence).
func SecretEnvRefs(c *imv1.IMCluster, component string) []corev1.SecretKeySelector {
	var refs []corev1.SecretKeySelector
	if component != Gateway {
		refs = append(refs, c.Spec.Dependencies.MySQL.DSNSecretRef)
	}
	if p := c.Spec.Dependencies.Redis.PasswordSecretRef; p != nil && component != User {
		refs = append(refs, *p)
	}
	if component == Message {
		refs = append(refs, objectStoreRefs(c)...)
		refs = append(refs, integrationRefs(c)...)
	}
	return refs
}

// ReferencesSecret reports whether c reads Secret name in any way (env refs
// or the auth Secret): the Secret watches map a changed Secret to clusters.
func ReferencesSecret(c *imv1.IMCluster, name string) bool {
	if AuthSecretName(c) == name || c.Spec.Dependencies.MySQL.DSNSecretRef.Name == name {
		return true
	}
	if o := c.Spec.Media.ObjectStore; o != nil && o.CredentialsSecret.Name == name {
		return true
	}
	for _, r := range integrationRefs(c) {
		if r.Name == name {
			return true
		}
	}
	p := c.Spec.Dependencies.Redis.PasswordSecretRef
	return p != nil && p.Name == name
}
