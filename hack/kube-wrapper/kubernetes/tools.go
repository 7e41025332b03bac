//go:build tools

// Package tools pins the Kubernetes commands hack/kube.sh builds. The blank
// imports must exist before `go mod tidy` so go.sum covers their packages.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
