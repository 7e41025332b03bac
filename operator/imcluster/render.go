package imcluster

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
	"github.com/imkube/imkube/operator/internal/render"
)

// DesiredDeployments are the message, sequence and user Deployments of c
// exactly as the operator applies them; version is the operator's version
// (the image tag when c sets none). For checks outside the operator: the
// chart's tests and the data-plane suite, which runs the processes with the
// environment the operator gives them.
func DesiredDeployments(c *imv1.IMCluster, version string) []*appsv1.Deployment {
	s := newScope(c, render.Options{Version: version})
	var out []*appsv1.Deployment
	for _, comp := range components() {
		out = append(out, desiredDeployment(s, comp))
	}
	return out
}

// DesiredServices are the component Services of c as the operator applies them.
func DesiredServices(c *imv1.IMCluster) []*corev1.Service {
	s := newScope(c, render.Options{})
	var out []*corev1.Service
	for _, comp := range components() {
		out = append(out, desiredService(s, comp))
	}
	return out
}
