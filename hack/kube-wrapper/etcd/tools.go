//go:build tools

// Package tools pins the etcd command hack/kube.sh builds. The blank import
// must exist before `go mod tidy` so go.sum covers its packages.
package tools

import _ "go.etcd.io/etcd/server/v3"
