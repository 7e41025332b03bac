package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MediaSpec configures media messages (images, files, audio, video): the
// S3-compatible object store clients upload to with presigned URLs, the
// limits per kind, and when uploads no message uses are deleted. Without
// objectStore, media messages are off.
type MediaSpec struct {
	// ObjectStore is the S3-compatible store of the uploads.
	// +optional
	ObjectStore *ObjectStoreSpec `json:"objectStore,omitempty"`
	// Image uploads (default 10 MiB of PNG, JPEG, GIF or WebP).
	// +kubebuilder:default={maxBytes: 10485760}
	// +optional
	Image MediaKindSpec `json:"image,omitzero"`
	// File uploads (default 50 MiB of any type).
	// +kubebuilder:default={maxBytes: 52428800}
	// +optional
	File MediaKindSpec `json:"file,omitzero"`
	// Audio uploads (default 20 MiB of audio/mpeg, mp4, ogg, webm, wav, aac).
	// +kubebuilder:default={maxBytes: 20971520}
	// +optional
	Audio MediaKindSpec `json:"audio,omitzero"`
	// Video uploads (default 200 MiB of video/mp4, webm, quicktime).
	// +kubebuilder:default={maxBytes: 209715200}
	// +optional
	Video MediaKindSpec `json:"video,omitzero"`
	// MaxPendingUploads per user: uploads no message uses yet.
	// +kubebuilder:default=20
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	// +optional
	MaxPendingUploads int32 `json:"maxPendingUploads,omitempty"`
	// OrphanTTL: an upload no message uses is deleted this long after it
	// was requested.
	// +kubebuilder:default="24h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m')",message="orphanTTL must be at least 1m"
	// +optional
	OrphanTTL *metav1.Duration `json:"orphanTTL,omitempty"`
	// ThumbnailMaxPixels bounds the PNG and JPEG images the services decode
	// to make thumbnails (width x height); larger ones get none.
	// +kubebuilder:default=40000000
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=200000000
	// +optional
	ThumbnailMaxPixels int64 `json:"thumbnailMaxPixels,omitempty"`
}

// MediaKindSpec bounds the uploads of one kind.
type MediaKindSpec struct {
	// MaxBytes is the largest upload.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=5368709120
	// +optional
	MaxBytes int64 `json:"maxBytes,omitempty"`
	// ContentTypes allowed (lower-case media types like image/png; "*" for
	// any). Empty: the kind's defaults.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:Pattern=`^(\*|[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*)$`
	// +listType=set
	// +optional
	ContentTypes []string `json:"contentTypes,omitempty"`
}

// ObjectStoreSpec locates an S3-compatible object store.
type ObjectStoreSpec struct {
	// Endpoint is http(s)://host[:port] of the S3 API as the pods reach it.
	// +kubebuilder:validation:Pattern=`^https?://[^/\s]+/?$`
	Endpoint string `json:"endpoint"`
	// PublicEndpoint is the endpoint presigned URLs name, as clients reach it
	// (default: endpoint). Clients upload and download there directly.
	// +kubebuilder:validation:Pattern=`^https?://[^/\s]+/?$`
	// +optional
	PublicEndpoint string `json:"publicEndpoint,omitempty"`
	// Bucket of the uploads; it must exist.
	// +kubebuilder:validation:Pattern=`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`
	Bucket string `json:"bucket"`
	// Region of the bucket.
	// +kubebuilder:default="us-east-1"
	// +kubebuilder:validation:MaxLength=64
	// +optional
	Region string `json:"region,omitempty"`
	// PathStyle addresses the bucket as endpoint/bucket (most S3-compatible
	// stores) instead of bucket.endpoint (AWS virtual hosts).
	// +kubebuilder:default=true
	// +optional
	PathStyle *bool `json:"pathStyle,omitempty"`
	// CredentialsSecret names a Secret with the keys `accessKey` and
	// `secretKey`; only the message service's pods read it.
	CredentialsSecret corev1.LocalObjectReference `json:"credentialsSecret"`
}
