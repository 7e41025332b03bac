package imcluster

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/imkube/imkube/operator/internal/render"
)

// desiredConfigMap holds config.json and sentinel-rules.json, which every
// service (and gateway) hot-reloads from /etc/imkube/config.
func desiredConfigMap(s *scope) *corev1.ConfigMap {
	m := s.objectMeta(render.ConfigMapName(s.cluster.Name), "config")
	m.Annotations = map[string]string{render.AnnotationConfigHash: s.configHash}
	return &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: m,
		Data:       render.ConfigData(s.cluster),
	}
}
