# A real node on the local control plane (hack/node.sh; docs/e2e.md "A real
# node"): containerd + kubelet + kube-proxy + CoreDNS as host processes, real
# pods from images imported without a registry. Needs root. Not part of
# `make test` yet (issue 14 adds the suite that uses it).

.PHONY: node-up node-down node-status

node-up: ## Start the local control plane with a real node (hack/node.sh up; builds once, cached)
	hack/node.sh up

node-down: ## Stop the real node: pods' containers, kubelet, kube-proxy, CoreDNS, containerd, bridge, iptables
	hack/node.sh down

node-status: ## Show the real node's components and pods
	hack/node.sh status
