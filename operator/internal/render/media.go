package render

import (
	"cmp"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
	"github.com/imkube/imkube/internal/config"
)

// Keys of the object store credentials Secret (spec.media.objectStore.credentialsSecret).
const (
	ObjectStoreAccessKey = "accessKey"
	ObjectStoreSecretKey = "secretKey"
)

// mediaConfig is the media section of config.json: spec.media over the
// services' defaults.
func mediaConfig(c *imv1.IMCluster) config.Media {
	m, def := c.Spec.Media, config.DefaultMedia()
	kind := func(k imv1.MediaKindSpec, d config.MediaKind) config.MediaKind {
		out := config.MediaKind{MaxBytes: cmp.Or(k.MaxBytes, d.MaxBytes), ContentTypes: d.ContentTypes}
		if len(k.ContentTypes) > 0 {
			out.ContentTypes = append([]string(nil), k.ContentTypes...)
		}
		return out
	}
	out := config.Media{
		Image:              kind(m.Image, def.Image),
		File:               kind(m.File, def.File),
		Audio:              kind(m.Audio, def.Audio),
		Video:              kind(m.Video, def.Video),
		MaxPendingUploads:  cmp.Or(int(m.MaxPendingUploads), def.MaxPendingUploads),
		OrphanTTL:          def.OrphanTTL,
		ThumbnailMaxPixels: cmp.Or(m.ThumbnailMaxPixels, def.ThumbnailMaxPixels),
	}
	if m.OrphanTTL != nil && m.OrphanTTL.Duration >= time.Minute {
		out.OrphanTTL = config.Duration(m.OrphanTTL.Duration)
	}
	return out
}

// MediaEnv is the object store environment of component's pods: only the
// message service talks to the store (and reads its credentials).
func MediaEnv(c *imv1.IMCluster, component string) []corev1.EnvVar {
	o := c.Spec.Media.ObjectStore
	if o == nil || component != Message {
		return nil
	}
	pathStyle := o.PathStyle == nil || *o.PathStyle
	env := []corev1.EnvVar{
		{Name: "IMKUBE_S3_ENDPOINT", Value: o.Endpoint},
		{Name: "IMKUBE_S3_BUCKET", Value: o.Bucket},
		{Name: "IMKUBE_S3_REGION", Value: cmp.Or(o.Region, "us-east-1")},
		{Name: "IMKUBE_S3_PATH_STYLE", Value: strconv.FormatBool(pathStyle)},
	}
	if o.PublicEndpoint != "" {
		env = append(env, corev1.EnvVar{Name: "IMKUBE_S3_PUBLIC_ENDPOINT", Value: o.PublicEndpoint})
	}
	for _, ref := range objectStoreRefs(c) {
		name := "IMKUBE_S3_ACCESS_KEY"
		if ref.Key == ObjectStoreSecretKey {
			name = "IMKUBE_S3_SECRET_KEY"
		}
		env = append(env, corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: ref.DeepCopy()}})
	}
	return env
}

// objectStoreRefs are the credentials' Secret keys (none without a store).
func objectStoreRefs(c *imv1.IMCluster) []corev1.SecretKeySelector {
	o := c.Spec.Media.ObjectStore
	if o == nil {
		return nil
	}
	return []corev1.SecretKeySelector{
		{LocalObjectReference: o.CredentialsSecret, Key: ObjectStoreAccessKey},
		{LocalObjectReference: o.CredentialsSecret, Key: ObjectStoreSecretKey},
	}
}
