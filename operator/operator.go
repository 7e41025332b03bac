// Package operator runs the imkube Kubernetes operator: the IMCluster and
// GatewayPool controllers in one controller-runtime manager with leader
// election, metrics and health probes. `imkube operator` calls Main.
package operator

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/apache/rocketmq-client-go/v2/rlog"
	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
	"github.com/imkube/imkube/internal/buildinfo"
	busrocketmq "github.com/imkube/imkube/internal/bus/rocketmq"
	"github.com/imkube/imkube/internal/telemetry"
	"github.com/imkube/imkube/operator/gatewaypool"
	"github.com/imkube/imkube/operator/imcluster"
	"github.com/imkube/imkube/operator/internal/readyz"
	"github.com/imkube/imkube/operator/internal/render"
	"github.com/imkube/imkube/operator/rocketmq"
)

// Leader election and events need these beyond what the controllers declare.
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

// LeaderElectionID is the Lease the operator replicas compete for.
const LeaderElectionID = "imkube-operator.im.imkube.io"

// Config is the command line of `imkube operator`.
type Config struct {
	MetricsAddr             string
	HealthAddr              string
	LeaderElect             bool
	LeaderElectionNamespace string
	Namespace               string
	Kubeconfig              string
}

// ParseFlags parses the command line of `imkube operator` (after the
// subcommand). The chart's tests parse the args of the rendered operator
// Deployment with it, so the chart never passes a flag the operator lacks.
// It returns flag.ErrHelp for -h.
func ParseFlags(args []string, out io.Writer) (Config, error) {
	var cfg Config
	fs := flag.NewFlagSet("imkube operator", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", ":8080", "address of the Prometheus /metrics endpoint (0 disables)")
	fs.StringVar(&cfg.HealthAddr, "health-addr", ":8081", "address of the /healthz and /readyz probes (0 disables)")
	fs.BoolVar(&cfg.LeaderElect, "leader-elect", false, "elect one active replica through a Lease (set when running more than one)")
	fs.StringVar(&cfg.LeaderElectionNamespace, "leader-election-namespace", "", "namespace of the Lease (default: --namespace, or the pod's namespace in-cluster)")
	fs.StringVar(&cfg.Namespace, "namespace", "", "only watch this namespace (default: all namespaces)")
	fs.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "path to a kubeconfig (default: $KUBECONFIG, in-cluster config, or ~/.kube/config)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("operator: unexpected arguments %q", fs.Args())
	}
	return cfg, nil
}

// Main runs the operator until ctx ends.
func Main(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger) error {
	cfg, err := ParseFlags(args, stdout)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	restCfg, err := restConfig(cfg.Kubeconfig)
	if err != nil {
		return fmt.Errorf("operator: kubernetes config: %w", err)
	}
	ctrl.SetLogger(logr.FromSlogHandler(log.Handler()))

	rlog.SetLogLevel("warn") // the RocketMQ client logs every admin call at info
	topics := rocketmq.NewAdmin(log.With("component", "rocketmq-admin"))
	defer func() {
		if err := topics.Close(); err != nil {
			log.Warn("closing rocketmq admin", "err", err)
		}
	}()
	mgr, err := NewManager(restCfg, cfg, ManagerOptions{})
	if err != nil {
		return err
	}
	// imkube's own metrics go to controller-runtime's registry, so the one
	// metrics endpoint serves them beside controller_runtime_*.
	var metrics *telemetry.Operator
	tel, err := telemetry.New(ctx, telemetry.Config{ServiceName: "imkube-operator", ServiceVersion: buildinfo.Version,
		Registerer: ctrlmetrics.Registry, Gatherer: ctrlmetrics.Registry, Logger: log}.FromEnv(os.Getenv))
	if err == nil {
		defer tel.Shutdown(context.WithoutCancel(ctx))
		metrics, err = telemetry.NewOperator(tel.MeterProvider())
	}
	if err != nil {
		log.Warn("operator metrics unavailable", "err", err)
	}
	probe := readyz.HTTP{Port: render.InternalPort, Timeout: 2 * time.Second}
	lag := func(ctx context.Context, nameServers []string, topic, group string) (int64, error) {
		return (&busrocketmq.LagReader{NameServers: nameServers}).Lag(ctx, topic, group)
	}
	if err := Register(mgr, Deps{Topics: topics, Version: buildinfo.Version, Metrics: metrics, Readyz: probe, Connections: probe, Lag: lag}); err != nil {
		return err
	}
	log.Info("operator starting", "version", buildinfo.Version, "namespace", cfg.Namespace,
		"leaderElect", cfg.LeaderElect, "metrics", cfg.MetricsAddr, "health", cfg.HealthAddr)
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("operator: %w", err)
	}
	return nil
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	return ctrl.GetConfig()
}

// NewScheme holds the built-in kinds and the imkube CRDs.
func NewScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := imv1.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, nil
}

// ManagerOptions are knobs for tests.
type ManagerOptions struct {
	// SkipNameValidation allows several managers in one process (tests).
	SkipNameValidation bool
}

// NewManager builds the controller manager. Its cache holds only objects the
// operator manages (label app.kubernetes.io/managed-by=imkube-operator) for
// the owned kinds, and only --namespace when set.
func NewManager(restCfg *rest.Config, cfg Config, o ManagerOptions) (ctrl.Manager, error) {
	scheme, err := NewScheme()
	if err != nil {
		return nil, err
	}
	managed := cache.ByObject{Label: labels.SelectorFromSet(labels.Set{render.LabelManagedBy: render.ManagedByValue})}
	cacheOpts := cache.Options{ByObject: map[client.Object]cache.ByObject{
		&appsv1.Deployment{}:                     managed,
		&appsv1.ReplicaSet{}:                     managed, // gateway rollouts: the current template (gatewaypool.LabelServing)
		&corev1.Service{}:                        managed,
		&corev1.ConfigMap{}:                      managed,
		&autoscalingv2.HorizontalPodAutoscaler{}: managed,
		&policyv1.PodDisruptionBudget{}:          managed,
		&networkingv1.NetworkPolicy{}:            managed,
		&corev1.Pod{}:                            managed, // the pods of owned Deployments carry the label
	}}
	if cfg.Namespace != "" {
		cacheOpts.DefaultNamespaces = map[string]cache.Config{cfg.Namespace: {}}
	}
	leNS := cfg.LeaderElectionNamespace
	if leNS == "" {
		leNS = cfg.Namespace
	}
	opts := ctrl.Options{
		Scheme:                        scheme,
		Cache:                         cacheOpts,
		Metrics:                       metricsserver.Options{BindAddress: cfg.MetricsAddr},
		HealthProbeBindAddress:        cfg.HealthAddr,
		LeaderElection:                cfg.LeaderElect,
		LeaderElectionID:              LeaderElectionID,
		LeaderElectionNamespace:       leNS,
		LeaderElectionReleaseOnCancel: true,
		GracefulShutdownTimeout:       ptr.To(30 * time.Second),
	}
	if o.SkipNameValidation {
		opts.Controller.SkipNameValidation = ptr.To(true)
	}
	mgr, err := ctrl.NewManager(restCfg, opts)
	if err != nil {
		return nil, fmt.Errorf("operator: new manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	return mgr, nil
}

// Deps are what Register wires into the controllers.
type Deps struct {
	Topics  rocketmq.TopicEnsurer
	Version string
	// RetryInterval and ResyncInterval tune the IMCluster requeues (0: defaults).
	RetryInterval, ResyncInterval time.Duration
	// WrapClient, if set, wraps the manager client the controllers use (tests
	// count writes with it).
	WrapClient func(client.Client) client.Client
	// Metrics (nil: none) counts and times reconciles.
	Metrics *telemetry.Operator
	// Readyz asks not-ready pods why (nil: none; Main uses HTTP to the pod IP).
	Readyz readyz.Prober
	// PruneInterval is the period of the push group pruner (0: 5 minutes).
	PruneInterval time.Duration
	// Connections reads a gateway pod's connection count for its
	// pod-deletion-cost (nil: the annotation is not kept; Main asks /metrics).
	Connections gatewaypool.Connections
	// DeletionCostTicks drives the deletion-cost passes (tests; nil: every 30 s).
	DeletionCostTicks <-chan time.Time
	// Lag reads a consumer group's lag from the brokers for
	// imkube_broker_consumer_lag (nil, or Metrics nil: not exported).
	Lag imcluster.LagFunc
	// LagInterval is the period of the lag passes (0: 15 s).
	LagInterval time.Duration
}

// Register adds the IMCluster and GatewayPool controllers to mgr.
func Register(mgr ctrl.Manager, d Deps) error {
	c := mgr.GetClient()
	if d.WrapClient != nil {
		c = d.WrapClient(c)
	}
	opts := render.Options{Version: d.Version}
	imc := &imcluster.Reconciler{
		Client:         c,
		APIReader:      mgr.GetAPIReader(),
		Recorder:       mgr.GetEventRecorder("imkube-operator"),
		Topics:         d.Topics,
		Options:        opts,
		RetryInterval:  d.RetryInterval,
		ResyncInterval: d.ResyncInterval,
		Metrics:        d.Metrics,
		Readyz:         d.Readyz,
	}
	if err := imc.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("operator: imcluster controller: %w", err)
	}
	// Push groups of gone gateways, deleted from the brokers on the leader.
	pruner := &imcluster.Pruner{
		Client: mgr.GetClient(),
		Log:    mgr.GetLogger().WithName("push-group-pruner"),
		New: func(nameServers []string, pushTopic, prefix string) imcluster.GroupPruner {
			return &busrocketmq.Pruner{NameServers: nameServers, PushTopic: pushTopic, PushGroupPrefix: prefix}
		},
		Interval: d.PruneInterval,
	}
	if err := mgr.Add(pruner); err != nil {
		return fmt.Errorf("operator: push group pruner: %w", err)
	}
	if d.Lag != nil && d.Metrics != nil {
		// The message autoscaler's metric, from the brokers.
		lag := &imcluster.LagExporter{Client: mgr.GetClient(), Lag: d.Lag, Metrics: d.Metrics,
			Log: mgr.GetLogger().WithName("consumer-lag"), Interval: d.LagInterval}
		if err := mgr.Add(lag); err != nil {
			return fmt.Errorf("operator: consumer lag exporter: %w", err)
		}
	}
	if d.Connections != nil {
		// Scale-down removes the emptiest gateways first.
		cost := &gatewaypool.DeletionCost{Client: c, Connections: d.Connections,
			Log: mgr.GetLogger().WithName("gateway-deletion-cost"), Ticks: d.DeletionCostTicks}
		if err := mgr.Add(cost); err != nil {
			return fmt.Errorf("operator: gateway deletion cost: %w", err)
		}
	}
	gwp := &gatewaypool.Reconciler{
		Client:    c,
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("imkube-operator"),
		Options:   opts,
		Metrics:   d.Metrics,
		Readyz:    d.Readyz,
		// The IMCluster resync, when set (tests), also paces the pools'
		// reads of KEDA's HPA.
		ConnectionsResync: d.ResyncInterval,
	}
	if err := gwp.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("operator: gatewaypool controller: %w", err)
	}
	return nil
}
