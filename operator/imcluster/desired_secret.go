package imcluster

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/imkube/imkube/operator/internal/render"
)

// desiredAuthSecret is the generated token signing key Secret. It has no
// owner reference on purpose: deleting and re-creating an IMCluster keeps the
// key, so issued tokens stay valid. The operator creates it once and never
// updates or deletes it.
func desiredAuthSecret(s *scope, key string) *corev1.Secret {
	return &corev1.Secret{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      render.GeneratedAuthSecretName(s.cluster.Name),
			Namespace: s.cluster.Namespace,
			Labels:    render.Labels(s.cluster.Name, "auth", "", ""),
		},
		Type:       corev1.SecretTypeOpaque,
		StringData: map[string]string{render.JWTKeyKey: key},
	}
}
