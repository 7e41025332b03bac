// Command coredns is CoreDNS v1.15.0 with only the plugins the local real node
// needs (hack/node.sh): the cluster.local zone served from the API server by the
// kubernetes plugin, plus bind, errors, log, health, ready, cache and
// loadbalance. Importing github.com/coredns/coredns/core/plugin instead would
// link every plugin (cloud DNS providers, etcd, ...) and make the cold build
// several times longer. There is deliberately no forward plugin: the node has
// no upstream resolver to forward to.
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

func main() {
	coremain.Run()
}
