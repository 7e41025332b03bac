package gatewaypool

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
	"github.com/imkube/imkube/operator/internal/apply"
	"github.com/imkube/imkube/operator/internal/readyz"
	"github.com/imkube/imkube/operator/internal/render"
)

// reconcileObjects applies the gateway Deployment, Service, PDB and HPA; an
// HPA no longer wanted (autoscaling removed) is deleted.
func (r *Reconciler) reconcileObjects(ctx context.Context, s *scope) (ctrl.Result, error) {
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
	for _, obj := range []client.Object{desiredDeployment(s), desiredService(s), desiredInternalService(s), desiredPDB(s)} {
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
	errs = append(errs, r.reconcileScaledObject(ctx, s, a))
	return ctrl.Result{}, errors.Join(errs...)
}

// reconcileScaledObject applies the pool's KEDA ScaledObject (KEDA provider)
// or deletes an owned one (HPA provider, fixed size). Without KEDA's CRD the
// pool reports KEDANotInstalled (Degraded) and keeps its replica count.
func (r *Reconciler) reconcileScaledObject(ctx context.Context, s *scope, a apply.Applier) error {
	missing, err := a.ApplyOptional(ctx, render.ScaledObjectGVK, desiredScaledObject(s), s.pool, s.pool.Namespace, s.name())
	s.kedaMissing = missing
	return err
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

// observe reads the gateway Deployment and, for an autoscaled pool, the
// connections metric from the HPA for the status.
func (r *Reconciler) observe(ctx context.Context, s *scope) (ctrl.Result, error) {
	d := &appsv1.Deployment{}
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: s.pool.Namespace, Name: s.name()}, d)
	switch {
	case apierrors.IsNotFound(err):
		return ctrl.Result{}, nil
	case err != nil:
		return ctrl.Result{}, fmt.Errorf("get Deployment %s: %w", s.name(), err)
	}
	s.deployment = d
	res, err := r.diagnose(ctx, s)
	if err != nil || s.pool.Spec.Autoscaling == nil {
		return res, err
	}
	var hpa autoscalingv2.HorizontalPodAutoscaler
	if s.provider() == imv1.AutoscalingKEDA {
		// KEDA's HPA is not labelled as ours: not in the cache, and not
		// watched (read again periodically).
		resync := cmp.Or(r.ConnectionsResync, 30*time.Second)
		if res.RequeueAfter == 0 || res.RequeueAfter > resync {
			res.RequeueAfter = resync
		}
		err = r.APIReader.Get(ctx, types.NamespacedName{Namespace: s.pool.Namespace, Name: render.KEDAHPAName(s.name())}, &hpa)
	} else {
		err = r.Client.Get(ctx, types.NamespacedName{Namespace: s.pool.Namespace, Name: s.name()}, &hpa)
	}
	if err != nil {
		return res, client.IgnoreNotFound(err)
	}
	s.connections = connections(&hpa)
	return res, nil
}

// podRecheck is how often a pool with gateways that do not run is looked at
// again (a pod stuck not ready changes no object the controller watches).
const podRecheck = 15 * time.Second

// diagnose records why the gateways do not run (readyz.Diagnose): the
// Degraded condition names the pod and its reason.
func (r *Reconciler) diagnose(ctx context.Context, s *scope) (ctrl.Result, error) {
	var pods corev1.PodList
	if err := r.Client.List(ctx, &pods, client.InNamespace(s.pool.Namespace), client.MatchingLabels(s.selector())); err != nil {
		return ctrl.Result{}, fmt.Errorf("list gateway pods: %w", err)
	}
	p, recheck := readyz.Diagnose(ctx, r.Readyz, render.Gateway, s.deployment, pods.Items)
	s.problem = p
	if recheck {
		return ctrl.Result{RequeueAfter: podRecheck}, nil
	}
	return ctrl.Result{}, nil
}

// connections is the pool total of the connections metric from the HPA's
// status (average per pod x current replicas), or nil when not reported yet.
// KEDA's HPA has the one trigger as an External metric (AverageValue).
func connections(hpa *autoscalingv2.HorizontalPodAutoscaler) *int64 {
	for _, m := range hpa.Status.CurrentMetrics {
		var avg *resource.Quantity
		switch {
		case m.Type == autoscalingv2.PodsMetricSourceType && m.Pods != nil && m.Pods.Metric.Name == ConnectionsMetric:
			avg = m.Pods.Current.AverageValue
		case m.Type == autoscalingv2.ExternalMetricSourceType && m.External != nil && hpa.Name != "" &&
			strings.HasPrefix(hpa.Name, render.KEDAHPAName("")):
			avg = m.External.Current.AverageValue
		}
		if avg != nil {
			total := avg.MilliValue() * int64(hpa.Status.CurrentReplicas) / 1000
			return &total
		}
	}
	return nil
}
