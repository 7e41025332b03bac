// Command netpol enforces NetworkPolicy on the local real node (hack/node.sh)
// as a host process: the controller of sigs.k8s.io/kube-network-policies
// (nftables rules that queue the first packet of every connection to or from
// a pod with a policy to NFQUEUE, where the controller evaluates the
// policies), started with a kubeconfig. The upstream command only takes an
// in-cluster configuration, because it runs as a DaemonSet pod.
//
//	netpol --kubeconfig FILE --hostname-override NODE [--nfqueue-id N] [--metrics-bind-address ADDR]
//	netpol --check            exit 0 when the controller's nftables table exists (it synced)
//	netpol --cleanup          delete the nftables table (what a stopped controller leaves behind)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"sigs.k8s.io/kube-network-policies/pkg/networkpolicy"
)

// tableName is the controller's default nftables table (Config.Defaults).
const tableName = "kube-network-policies"

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the controller (list/watch NetworkPolicies, Pods, Namespaces)")
	node := flag.String("hostname-override", "", "name of the Node whose pods are enforced")
	queue := flag.Int("nfqueue-id", 100, "NFQUEUE number")
	metrics := flag.String("metrics-bind-address", "127.0.0.1:0", "address of /metrics")
	cleanup := flag.Bool("cleanup", false, "delete the nftables table and exit")
	check := flag.Bool("check", false, "exit 0 when the nftables table exists, 1 when not")
	klog.InitFlags(nil)
	flag.Parse()
	if *check {
		t, err := findTable()
		if err != nil || t == nil {
			fmt.Fprintln(os.Stderr, "netpol: no nftables table", tableName, err)
			os.Exit(1)
		}
		return
	}
	if *cleanup {
		if err := deleteTable(); err != nil {
			fmt.Fprintln(os.Stderr, "netpol:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*kubeconfig, *node, *queue, *metrics); err != nil {
		fmt.Fprintln(os.Stderr, "netpol:", err)
		os.Exit(1)
	}
}

func run(kubeconfig, node string, queue int, metrics string) error {
	if kubeconfig == "" || node == "" {
		return errors.New("--kubeconfig and --hostname-override are required")
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	factory := informers.NewSharedInformerFactory(cs, 0)
	ctrl, err := networkpolicy.NewController(cs,
		factory.Networking().V1().NetworkPolicies(), factory.Core().V1().Namespaces(), factory.Core().V1().Pods(),
		nil, nil, nil, nil,
		networkpolicy.Config{QueueID: queue, NodeName: node, NetfilterBug1766Fix: true, NFTableName: tableName,
			// Pod IPs come from the API server: no NRI socket on this node.
			NRIdisabled: true})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.Handler())
	go func() { _ = http.ListenAndServe(metrics, mux) }()
	done := make(chan error, 1)
	go func() { done <- ctrl.Run(ctx) }()
	factory.Start(ctx.Done())
	select {
	case err = <-done: // Run removes its table when it returns
	case <-ctx.Done():
		select {
		case err = <-done:
		case <-time.After(10 * time.Second):
			err = errors.New("controller did not stop within 10 s")
		}
	}
	return err
}

func findTable() (*nftables.Table, error) {
	nft, err := nftables.New()
	if err != nil {
		return nil, err
	}
	tables, err := nft.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, err
	}
	for _, t := range tables {
		if t.Name == tableName {
			return t, nil
		}
	}
	return nil, nil
}

func deleteTable() error {
	t, err := findTable()
	if err != nil || t == nil {
		return err
	}
	nft, err := nftables.New()
	if err != nil {
		return err
	}
	nft.DelTable(t)
	return nft.Flush()
}
