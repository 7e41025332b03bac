// Package imcluster reconciles IMCluster objects into the message, sequence
// and user Deployments, their Services, HPAs and PodDisruptionBudgets, the
// NetworkPolicies of the cluster's pods, the
// cluster ConfigMap, the generated auth Secret and the RocketMQ topics.
package imcluster

import (
	"context"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
	"github.com/imkube/imkube/internal/telemetry"
	"github.com/imkube/imkube/operator/internal/apply"
	"github.com/imkube/imkube/operator/internal/phase"
	"github.com/imkube/imkube/operator/internal/readyz"
	"github.com/imkube/imkube/operator/internal/render"
	"github.com/imkube/imkube/operator/rocketmq"
)

// Reconciler reconciles IMCluster objects.
type Reconciler struct {
	Client client.Client
	// APIReader reads Secrets directly from the API server, so the manager
	// does not cache (and need list/watch on) every Secret.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Topics    rocketmq.TopicEnsurer
	Options   render.Options
	// Metrics (nil: none) counts and times reconciles.
	Metrics *telemetry.Operator
	// RetryInterval is the requeue delay after a failed dependency check.
	RetryInterval time.Duration
	// ResyncInterval re-checks dependencies of a healthy cluster.
	ResyncInterval time.Duration
	// Readyz asks a pod that runs but stays not ready why (nil: not asked;
	// Degraded then only reports what the pod status says).
	Readyz readyz.Prober

	topicChecks checkCache
}

// +kubebuilder:rbac:groups=im.imkube.io,resources=imclusters,verbs=get;list;watch
// +kubebuilder:rbac:groups=im.imkube.io,resources=imclusters/status,verbs=get;patch
// +kubebuilder:rbac:groups=im.imkube.io,resources=gatewaypools,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups="",resources=services;configmaps,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups=autoscaling,resources=horizontalpodautoscalers,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=monitoring.coreos.com,resources=servicemonitors,verbs=get;create;patch;delete
// +kubebuilder:rbac:groups=keda.sh,resources=scaledobjects,verbs=get;create;patch;delete

// SetupWithManager registers the controller: IMClusters, the objects they
// own, and the GatewayPools that point at them (for the pool summary).
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.RetryInterval == 0 {
		r.RetryInterval = 30 * time.Second
	}
	if r.ResyncInterval == 0 {
		r.ResyncInterval = 10 * time.Minute
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("imcluster").
		For(&imv1.IMCluster{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&appsv1.Deployment{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.ConfigMap{}).
		Owns(&autoscalingv2.HorizontalPodAutoscaler{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		Owns(&networkingv1.NetworkPolicy{}).
		Watches(&imv1.GatewayPool{}, handler.EnqueueRequestsFromMapFunc(poolToCluster)).
		// The pods of the components: Degraded reports why they do not run.
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(podToCluster)).
		// The Secrets a cluster references: a changed DSN or password must
		// reach the pods (hashSecrets). Metadata only: no Secret values are
		// cached; the reconcile reads the referenced ones directly.
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.secretToClusters), builder.OnlyMetadata).
		Complete(r)
}

func poolToCluster(_ context.Context, o client.Object) []reconcile.Request {
	p, ok := o.(*imv1.GatewayPool)
	if !ok || p.Spec.ClusterRef.Name == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: p.Namespace, Name: p.Spec.ClusterRef.Name}}}
}

// secretToClusters maps a Secret to the IMClusters of its namespace that
// reference it.
func (r *Reconciler) secretToClusters(ctx context.Context, o client.Object) []reconcile.Request {
	var list imv1.IMClusterList
	if err := r.Client.List(ctx, &list, client.InNamespace(o.GetNamespace())); err != nil {
		log.FromContext(ctx).Error(err, "list IMClusters for a Secret change", "secret", o.GetName())
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		if render.ReferencesSecret(&list.Items[i], o.GetName()) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
		}
	}
	return reqs
}

// podToCluster maps a pod of a message, sequence or user Deployment to its IMCluster.
func podToCluster(_ context.Context, o client.Object) []reconcile.Request {
	l := o.GetLabels()
	switch l[render.LabelComponent] {
	case render.Message, render.Sequence, render.User:
	default:
		return nil
	}
	if l[render.LabelManagedBy] != render.ManagedByValue || l[render.LabelInstance] == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: l[render.LabelInstance]}}}
}

// Reconcile brings one IMCluster's owned objects to the desired state and
// writes its status with every condition set. It asks to be called again
// after RetryInterval while dependencies are missing and after
// ResyncInterval otherwise (see reconcileDependencies).
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return phase.Reconcile(ctx, req, phase.Controller[imv1.IMCluster, *imv1.IMCluster, *scope]{
		Name:    "imcluster",
		Client:  r.Client,
		Metrics: r.Metrics,
		Scope: func(_ context.Context, c *imv1.IMCluster) (*scope, error) {
			return newScope(c, r.Options), nil
		},
		Phases: func(*scope) []phase.Func[*scope] {
			return []phase.Func[*scope]{
				r.reconcileDependencies,
				r.reconcileAuthSecret,
				r.reconcileConfigMap,
				r.reconcileComponents,
				r.reconcileNetworkPolicies,
				r.reconcileServiceMonitor,
				r.observe,
			}
		},
		WriteStatus: r.writeStatus,
	})
}

func (r *Reconciler) applier() apply.Applier {
	return apply.Applier{Client: r.Client, FieldManager: render.FieldManager}
}
