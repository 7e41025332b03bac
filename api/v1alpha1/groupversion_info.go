// Package v1alpha1 holds the imkube custom resources: IMCluster (one IM
// platform: message, sequence and user services plus their configuration) and
// GatewayPool (a scalable pool of WebSocket gateways attached to an IMCluster).
//
// +kubebuilder:object:generate=true
// +groupName=im.imkube.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the API group and version of the imkube resources.
var GroupVersion = schema.GroupVersion{Group: "im.imkube.io", Version: "v1alpha1"}

// AddToScheme registers IMCluster and GatewayPool (and their lists) with a scheme.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&IMCluster{}, &IMClusterList{},
		&GatewayPool{}, &GatewayPoolList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
