// Package gatewaypool reconciles GatewayPool objects into a gateway
// Deployment, Service, HPA and PodDisruptionBudget, configured from the
// IMCluster the pool references.
package gatewaypool

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
	"github.com/imkube/imkube/operator/internal/phase"
	"github.com/imkube/imkube/operator/internal/readyz"
	"github.com/imkube/imkube/operator/internal/render"
	"github.com/imkube/imkube/operator/internal/secrets"
)

// Reconciler reconciles GatewayPool objects.
type Reconciler struct {
	Client client.Client
	// APIReader reads the referenced Secrets (not cached).
	APIReader client.Reader
	Recorder  events.EventRecorder
	Options   render.Options
	// Metrics (nil: none) counts and times reconciles.
	Metrics *telemetry.Operator
	// Readyz asks a gateway that runs but stays not ready why (nil: not asked).
	Readyz readyz.Prober
	// ConnectionsResync is how often a pool scaled by KEDA reads its
	// connections again (KEDA's HPA is not an owned object, its changes
	// trigger no reconcile; 0: 30 s).
	ConnectionsResync time.Duration
}

// +kubebuilder:rbac:groups=im.imkube.io,resources=gatewaypools,verbs=get;list;watch
// +kubebuilder:rbac:groups=im.imkube.io,resources=gatewaypools/status,verbs=get;patch
// +kubebuilder:rbac:groups=im.imkube.io,resources=imclusters,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups=apps,resources=replicasets,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups=autoscaling,resources=horizontalpodautoscalers,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=keda.sh,resources=scaledobjects,verbs=get;create;patch;delete
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;patch

// SetupWithManager registers the controller: GatewayPools, the objects they
// own, and IMCluster spec changes (image, limits, dependencies) fanned out to
// the pools that reference the cluster.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("gatewaypool").
		For(&imv1.GatewayPool{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&appsv1.Deployment{}).
		Owns(&corev1.Service{}).
		Owns(&autoscalingv2.HorizontalPodAutoscaler{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		Watches(&imv1.IMCluster{}, handler.EnqueueRequestsFromMapFunc(r.clusterToPools),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// The gateway pods: Degraded reports why they do not run.
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(podToPool)).
		// The Redis password Secret of the cluster (metadata only): a changed
		// password rolls the gateways (scope.secretsHash).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.secretToPools), builder.OnlyMetadata).
		Complete(r)
}

func (r *Reconciler) clusterToPools(ctx context.Context, o client.Object) []reconcile.Request {
	var pools imv1.GatewayPoolList
	if err := r.Client.List(ctx, &pools, client.InNamespace(o.GetNamespace())); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for _, p := range pools.Items {
		if p.Spec.ClusterRef.Name == o.GetName() {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&p)})
		}
	}
	return reqs
}

// podToPool maps a gateway pod to its GatewayPool.
func podToPool(_ context.Context, o client.Object) []reconcile.Request {
	l := o.GetLabels()
	if l[render.LabelComponent] != render.Gateway || l[render.LabelManagedBy] != render.ManagedByValue || l[render.LabelGatewayPool] == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: l[render.LabelGatewayPool]}}}
}

// secretToPools maps a Secret to the pools whose IMCluster's gateways read it.
func (r *Reconciler) secretToPools(ctx context.Context, o client.Object) []reconcile.Request {
	var clusters imv1.IMClusterList
	if err := r.Client.List(ctx, &clusters, client.InNamespace(o.GetNamespace())); err != nil {
		log.FromContext(ctx).Error(err, "list IMClusters for a Secret change", "secret", o.GetName())
		return nil
	}
	var reqs []reconcile.Request
	for i := range clusters.Items {
		for _, ref := range render.SecretEnvRefs(&clusters.Items[i], render.Gateway) {
			if ref.Name == o.GetName() {
				reqs = append(reqs, r.clusterToPools(ctx, &clusters.Items[i])...)
				break
			}
		}
	}
	return reqs
}

// Reconcile applies the gateway objects of one pool and writes its status.
// A pool whose IMCluster does not exist gets only its status (Degraded,
// ClusterNotFound); the IMCluster watch brings it back.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return phase.Reconcile(ctx, req, phase.Controller[imv1.GatewayPool, *imv1.GatewayPool, *scope]{
		Name:    "gatewaypool",
		Client:  r.Client,
		Metrics: r.Metrics,
		Scope:   r.newScope,
		Phases: func(s *scope) []phase.Func[*scope] {
			if s.cluster == nil {
				return nil
			}
			return []phase.Func[*scope]{r.reconcileObjects, r.observe, r.steerServing}
		},
		WriteStatus: r.writeStatus,
	})
}

// newScope reads the IMCluster the pool references (nil in the scope when
// there is none) and builds the scope.
func (r *Reconciler) newScope(ctx context.Context, p *imv1.GatewayPool) (*scope, error) {
	var c imv1.IMCluster
	switch err := r.Client.Get(ctx, types.NamespacedName{Namespace: p.Namespace, Name: p.Spec.ClusterRef.Name}, &c); {
	case apierrors.IsNotFound(err):
		return newScope(p, nil, r.Options), nil
	case err != nil:
		return nil, fmt.Errorf("get IMCluster %s: %w", p.Spec.ClusterRef.Name, err)
	}
	s := newScope(p, &c, r.Options)
	vals, err := secrets.NewReader(r.APIReader, p.Namespace).Read(ctx, render.SecretEnvRefs(&c, render.Gateway))
	if err != nil {
		return nil, err
	}
	s.secretsHash = secrets.Hash(vals)
	return s, nil
}
