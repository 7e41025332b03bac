//go:build tools

// Package tools pins the Kubernetes node commands hack/kube.sh builds. The blank
// imports must exist before `go mod tidy` so go.sum covers their packages.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
