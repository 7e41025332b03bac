// Package gatewaypool reconciles GatewayPool objects into a gateway
// Deployment, Service, HPA and PodDisruptionBudget, configured from the
// IMCluster the pool references.
package gatewaypool

import (
	"context"
	"errors"
	"fmt"
	"github.com/imkube/imkube/internal/telemetry"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
	"github.com/imkube/imkube/operator/internal/apply"
	"github.com/imkube/imkube/operator/internal/render"
)

// Reconciler reconciles GatewayPool objects.
type Reconciler struct {
	Client   client.Client
	Recorder events.EventRecorder
	Options  render.Options
	// Metrics (nil: none) counts and times reconciles.
	Metrics *telemetry.Operator
}

// +kubebuilder:rbac:groups=im.imkube.io,resources=gatewaypools,verbs=get;list;watch
// +kubebuilder:rbac:groups=im.imkube.io,resources=gatewaypools/status,verbs=get;patch
// +kubebuilder:rbac:groups=im.imkube.io,resources=imclusters,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups=autoscaling,resources=horizontalpodautoscalers,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

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

// Reconcile applies the gateway objects of one pool and writes its status in
// a deferred call.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, err error) {
	start := time.Now()
	defer func() {
		r.Metrics.Reconciled("gatewaypool", telemetry.ResultOf(res.RequeueAfter > 0 || res.Requeue, err), time.Since(start))
	}()
	var p imv1.GatewayPool
	if err := r.Client.Get(ctx, req.NamespacedName, &p); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !p.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	orig := p.DeepCopy()
	var c imv1.IMCluster
	switch err := r.Client.Get(ctx, types.NamespacedName{Namespace: p.Namespace, Name: p.Spec.ClusterRef.Name}, &c); {
	case apierrors.IsNotFound(err):
		s := newScope(&p, nil, r.Options)
		return ctrl.Result{}, r.writeStatus(ctx, orig, &p, s) // the IMCluster watch brings us back
	case err != nil:
		return ctrl.Result{}, fmt.Errorf("get IMCluster %s: %w", p.Spec.ClusterRef.Name, err)
	}
	s := newScope(&p, &c, r.Options)
	defer func() {
		err = errors.Join(err, r.writeStatus(ctx, orig, &p, s))
	}()

	phases := []func(context.Context, *scope) error{r.reconcileObjects, r.observe}
	var errs []error
	for _, phase := range phases {
		if err := phase(ctx, s); err != nil {
			errs = append(errs, err)
		}
	}
	s.applyErr = errors.Join(errs...)
	return ctrl.Result{}, s.applyErr
}

func (r *Reconciler) reconcileObjects(ctx context.Context, s *scope) error {
	a := apply.Applier{Client: r.Client, FieldManager: render.FieldManager}
	var errs []error
	if s.pool.Spec.Autoscaling != nil {
		var live appsv1.Deployment
		err := r.Client.Get(ctx, types.NamespacedName{Namespace: s.pool.Namespace, Name: s.name()}, &live)
		if err == nil {
			err = a.HandOffReplicas(ctx, &live)
		}
		if client.IgnoreNotFound(err) != nil {
			errs = append(errs, err)
		}
	}
	for _, obj := range []client.Object{desiredDeployment(s), desiredService(s), desiredPDB(s)} {
		if _, err := a.Apply(ctx, obj); err != nil {
			errs = append(errs, err)
		}
	}
	if hpa := desiredHPA(s); hpa != nil {
		if _, err := a.Apply(ctx, hpa); err != nil {
			errs = append(errs, err)
		}
	} else if err := r.deleteOwnedHPA(ctx, s); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (r *Reconciler) deleteOwnedHPA(ctx context.Context, s *scope) error {
	var hpa autoscalingv2.HorizontalPodAutoscaler
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: s.pool.Namespace, Name: s.name()}, &hpa)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("get HPA %s: %w", s.name(), err)
	}
	if !metav1.IsControlledBy(&hpa, s.pool) {
		return nil
	}
	if err := r.Client.Delete(ctx, &hpa); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("delete HPA %s: %w", s.name(), err)
	}
	return nil
}

func (r *Reconciler) observe(ctx context.Context, s *scope) error {
	d := &appsv1.Deployment{}
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: s.pool.Namespace, Name: s.name()}, d)
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("get Deployment %s: %w", s.name(), err)
	}
	s.deployment = d
	if s.pool.Spec.Autoscaling == nil {
		return nil
	}
	var hpa autoscalingv2.HorizontalPodAutoscaler
	err = r.Client.Get(ctx, types.NamespacedName{Namespace: s.pool.Namespace, Name: s.name()}, &hpa)
	if err != nil {
		return client.IgnoreNotFound(err)
	}
	s.connections = connections(&hpa)
	return nil
}

// connections is the pool total of the connections metric from the HPA's
// status (average per pod x current replicas), or nil when not reported yet.
func connections(hpa *autoscalingv2.HorizontalPodAutoscaler) *int64 {
	for _, m := range hpa.Status.CurrentMetrics {
		if m.Type != autoscalingv2.PodsMetricSourceType || m.Pods == nil || m.Pods.Metric.Name != ConnectionsMetric {
			continue
		}
		if avg := m.Pods.Current.AverageValue; avg != nil {
			total := avg.MilliValue() * int64(hpa.Status.CurrentReplicas) / 1000
			return &total
		}
	}
	return nil
}
