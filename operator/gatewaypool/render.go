package gatewaypool

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
	"github.com/imkube/imkube/operator/internal/render"
)

// DesiredDeployment is the gateway Deployment of pool p of cluster c exactly
// as the operator applies it; version is the operator's version (the image
// tag when c sets none). For checks outside the operator (chart tests, the
// data-plane suite).
func DesiredDeployment(p *imv1.GatewayPool, c *imv1.IMCluster, version string) *appsv1.Deployment {
	return desiredDeployment(newScope(p, c, render.Options{Version: version}))
}

// DesiredService is the gateway Service of pool p as the operator applies it.
func DesiredService(p *imv1.GatewayPool, c *imv1.IMCluster) *corev1.Service {
	return desiredService(newScope(p, c, render.Options{}))
}
