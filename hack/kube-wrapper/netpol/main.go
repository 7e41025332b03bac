// Command netpol enforces NetworkPolicy on the local real node (hack/node.sh)
// as a host process: the network policy controller of kube-router
// (github.com/cloudnativelabs/kube-router/v2/pkg/controllers/netpol: iptables
// chains per pod and policy, ipsets of the selected pods, in the filter
// table's INPUT, FORWARD and OUTPUT; bridged pod-to-pod traffic reaches them
// through br_netfilter). Only that controller is built, not kube-router's
// BGP routing or service proxy, which this node does not use.
//
//	netpol --kubeconfig FILE --hostname-override NODE [--service-cluster-ip-range CIDR] [--metrics-bind-address ADDR]
//	netpol --check            exit 0 when the controller's chains exist (it synced)
//	netpol --cleanup --kubeconfig FILE --hostname-override NODE   remove its chains and ipsets
package main

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/cloudnativelabs/kube-router/v2/pkg/controllers/netpol"
	"github.com/cloudnativelabs/kube-router/v2/pkg/healthcheck"
	"github.com/cloudnativelabs/kube-router/v2/pkg/options"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

// topChain is the chain kube-router's controller adds to FORWARD first.
const topChain = "KUBE-ROUTER-FORWARD"

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the controller (list/watch NetworkPolicies, Pods, Namespaces; get Nodes)")
	node := flag.String("hostname-override", "", "name of the Node whose pods are enforced")
	serviceRange := flag.String("service-cluster-ip-range", "10.96.0.0/16", "the cluster's Service CIDR")
	metrics := flag.String("metrics-bind-address", "127.0.0.1:0", "address of /healthz")
	check := flag.Bool("check", false, "exit 0 when the controller's chains exist, 1 when not")
	cleanup := flag.Bool("cleanup", false, "remove the controller's iptables chains and ipsets and exit")
	klog.InitFlags(nil)
	flag.Parse()
	if *check {
		if err := exec.Command("iptables", "-w", "5", "-t", "filter", "-S", topChain).Run(); err != nil {
			fmt.Fprintln(os.Stderr, "netpol: no chain", topChain)
			os.Exit(1)
		}
		return
	}
	if err := run(*kubeconfig, *node, *serviceRange, *metrics, *cleanup); err != nil {
		fmt.Fprintln(os.Stderr, "netpol:", err)
		os.Exit(1)
	}
}

func run(kubeconfig, node, serviceRange, addr string, cleanup bool) error {
	if kubeconfig == "" || node == "" {
		return errors.New("--kubeconfig and --hostname-override are required")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	krc := options.NewKubeRouterConfig()
	krc.HostnameOverride, krc.ClusterIPCIDRs = node, []string{serviceRange}
	krc.EnableIPv4, krc.EnableIPv6, krc.RunFirewall = true, false, true
	krc.IPTablesSyncPeriod = time.Minute
	factory := informers.NewSharedInformerFactory(cs, 0)
	pods := factory.Core().V1().Pods().Informer()
	nss := factory.Core().V1().Namespaces().Informer()
	nps := factory.Networking().V1().NetworkPolicies().Informer()
	ipt, ipsets, err := netpol.NewIPTablesHandlers(krc)
	if err != nil {
		return err
	}
	var ipsetMutex sync.Mutex
	npc, err := netpol.NewNetworkPolicyController(cs, krc, pods, nps, nss, &ipsetMutex, ipt, ipsets)
	if err != nil {
		return err
	}
	if cleanup {
		npc.Cleanup()
		return nil
	}
	if _, err := pods.AddEventHandler(npc.PodEventHandler); err != nil {
		return err
	}
	if _, err := nss.AddEventHandler(npc.NamespaceEventHandler); err != nil {
		return err
	}
	if _, err := nps.AddEventHandler(npc.NetworkPolicyEventHandler); err != nil {
		return err
	}
	stop := make(chan struct{})
	factory.Start(stop)
	for typ, ok := range factory.WaitForCacheSync(stop) {
		if !ok {
			return fmt.Errorf("informer cache of %v did not sync", typ)
		}
	}
	// The controller reports a heartbeat after every sync; /healthz answers
	// 200 once one arrived within the last two sync periods.
	beats := make(chan *healthcheck.ControllerHeartbeat, 10)
	var mu sync.Mutex
	var last time.Time
	go func() {
		for b := range beats {
			mu.Lock()
			last = b.LastHeartBeat
			mu.Unlock()
		}
	}()
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		l := last
		mu.Unlock()
		if l.IsZero() || time.Since(l) > 2*krc.IPTablesSyncPeriod+30*time.Second {
			http.Error(w, "no sync yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	go func() { _ = http.ListenAndServe(addr, mux) }()
	var wg sync.WaitGroup
	wg.Add(1)
	go npc.Run(beats, stop, &wg)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	close(stop)
	wg.Wait()
	// Like kube-router, leave the rules in place on exit (pods stay
	// protected across a restart); `netpol --cleanup` removes them.
	return nil
}
