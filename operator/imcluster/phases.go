package imcluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
	"github.com/imkube/imkube/operator/internal/readyz"
	"github.com/imkube/imkube/operator/internal/render"
)

// reconcileAuthSecret creates <cluster>-auth with a random jwt-key when the
// cluster names no auth Secret. An existing Secret is never touched.
func (r *Reconciler) reconcileAuthSecret(ctx context.Context, s *scope) (ctrl.Result, error) {
	c := s.cluster
	if c.Spec.Auth.SecretRef != nil {
		return ctrl.Result{}, nil
	}
	name := render.GeneratedAuthSecretName(c.Name)
	var sec corev1.Secret
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: c.Namespace, Name: name}, &sec)
	if err == nil {
		return ctrl.Result{}, nil
	}
	if !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("get auth Secret %q: %w", name, err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return ctrl.Result{}, fmt.Errorf("generate jwt key: %w", err)
	}
	desired := desiredAuthSecret(s, hex.EncodeToString(key))
	switch err := r.Client.Create(ctx, desired, client.FieldOwner(render.FieldManager)); {
	case apierrors.IsAlreadyExists(err):
		return ctrl.Result{}, nil
	case err != nil:
		return ctrl.Result{}, fmt.Errorf("create auth Secret %q: %w", name, err)
	}
	r.Recorder.Eventf(c, desired, corev1.EventTypeNormal, "AuthSecretCreated", "CreateSecret",
		"generated token signing key Secret %s", name)
	return ctrl.Result{}, nil
}

func (r *Reconciler) reconcileConfigMap(ctx context.Context, s *scope) (ctrl.Result, error) {
	_, err := r.applier().Apply(ctx, desiredConfigMap(s))
	return ctrl.Result{}, err
}

// reconcileComponents applies Deployment, Service, PDB and HPA of every
// component; an HPA no longer wanted (autoscaling removed) is deleted.
func (r *Reconciler) reconcileComponents(ctx context.Context, s *scope) (ctrl.Result, error) {
	var errs []error
	a := r.applier()
	for _, comp := range components() {
		// An autoscaled Deployment leaves replicas to its autoscaler; a new
		// one starts at minReplicas (handed off at once), so it runs that
		// many even while the autoscaler is missing (KEDA not installed)
		// or has not acted yet, instead of the API's default of 1.
		fresh := false
		if s.autoscaled(comp) {
			var live appsv1.Deployment
			err := r.Client.Get(ctx, types.NamespacedName{Namespace: s.cluster.Namespace, Name: s.name(comp)}, &live)
			if err == nil {
				err = a.HandOffReplicas(ctx, &live)
			}
			fresh = apierrors.IsNotFound(err)
			if client.IgnoreNotFound(err) != nil {
				errs = append(errs, err)
			}
		}
		d := desiredDeployment(s, comp)
		if fresh {
			d.Spec.Replicas = ptr.To(s.minReplicas(comp))
		}
		for _, obj := range []client.Object{d, desiredService(s, comp), desiredPDB(s, comp)} {
			if _, err := a.Apply(ctx, obj); err != nil {
				errs = append(errs, err)
			}
		}
		if fresh {
			var live appsv1.Deployment
			err := r.Client.Get(ctx, types.NamespacedName{Namespace: s.cluster.Namespace, Name: s.name(comp)}, &live)
			if err == nil {
				err = a.HandOffReplicas(ctx, &live)
			}
			if client.IgnoreNotFound(err) != nil {
				errs = append(errs, err)
			}
		}
		if hpa := desiredHPA(s, comp); hpa != nil {
			if _, err := a.Apply(ctx, hpa); err != nil {
				errs = append(errs, err)
			}
		} else if err := r.deleteOwnedHPA(ctx, s, s.name(comp)); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, r.reconcileScaledObject(ctx, s))
	return ctrl.Result{}, errors.Join(errs...)
}

// reconcileScaledObject applies the message service's KEDA ScaledObject
// (KEDA provider) or deletes an owned one. Without KEDA's CRD the cluster
// reports KEDANotInstalled (Degraded) and message keeps its replica count.
func (r *Reconciler) reconcileScaledObject(ctx context.Context, s *scope) error {
	a := r.applier()
	missing, err := a.ApplyOptional(ctx, render.ScaledObjectGVK, desiredScaledObject(s), s.cluster, s.cluster.Namespace, s.name(render.Message))
	s.kedaMissing = missing
	return err
}

func (r *Reconciler) deleteOwnedHPA(ctx context.Context, s *scope, name string) error {
	return r.deleteOwned(ctx, s, &autoscalingv2.HorizontalPodAutoscaler{}, "HPA", name)
}

// observe reads the Deployments and the GatewayPools of the cluster for the status.
func (r *Reconciler) observe(ctx context.Context, s *scope) (ctrl.Result, error) {
	c := s.cluster
	for _, comp := range components() {
		d := &appsv1.Deployment{}
		err := r.Client.Get(ctx, types.NamespacedName{Namespace: c.Namespace, Name: s.name(comp)}, d)
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return ctrl.Result{}, fmt.Errorf("get Deployment %s: %w", s.name(comp), err)
		default:
			s.deployments[comp] = d
		}
	}
	var pools imv1.GatewayPoolList
	if err := r.Client.List(ctx, &pools, client.InNamespace(c.Namespace)); err != nil {
		return ctrl.Result{}, fmt.Errorf("list GatewayPools: %w", err)
	}
	for _, p := range pools.Items {
		if p.Spec.ClusterRef.Name == c.Name {
			s.pools = append(s.pools, imv1.GatewayPoolSummary{
				Name: p.Name, ReadyReplicas: p.Status.ReadyReplicas, Endpoint: p.Status.Endpoint,
			})
		}
	}
	return r.diagnose(ctx, s)
}

// podRecheck is how often a cluster with pods that do not run is looked at
// again (a pod stuck not ready changes no object the controller watches).
const podRecheck = 15 * time.Second

// diagnose records why components do not run: a Deployment past its
// progress deadline, a container waiting in CrashLoopBackOff,
// ImagePullBackOff or CreateContainerConfigError, or a pod that runs but
// stays not ready, with what its /readyz says (the dependency it waits for).
func (r *Reconciler) diagnose(ctx context.Context, s *scope) (ctrl.Result, error) {
	c := s.cluster
	var pods corev1.PodList
	sel := client.MatchingLabels{render.LabelName: "imkube", render.LabelInstance: c.Name, render.LabelManagedBy: render.ManagedByValue}
	if err := r.Client.List(ctx, &pods, client.InNamespace(c.Namespace), sel); err != nil {
		return ctrl.Result{}, fmt.Errorf("list pods: %w", err)
	}
	byComponent := map[string][]corev1.Pod{}
	for _, p := range pods.Items {
		comp := p.Labels[render.LabelComponent]
		byComponent[comp] = append(byComponent[comp], p)
	}
	var res ctrl.Result
	for _, comp := range components() {
		p, recheck := readyz.Diagnose(ctx, r.Readyz, comp, s.deployments[comp], byComponent[comp])
		if p != nil {
			s.problems = append(s.problems, *p)
		}
		if recheck {
			res.RequeueAfter = podRecheck
		}
	}
	return res, nil
}

// reconcileServiceMonitor applies the cluster's ServiceMonitor when
// observability.serviceMonitor is on and prometheus-operator's CRD is
// installed (otherwise it records a warning and carries on), and deletes an
// owned one when the switch is off.
func (r *Reconciler) reconcileServiceMonitor(ctx context.Context, s *scope) (ctrl.Result, error) {
	c := s.cluster
	if _, err := r.Client.RESTMapper().RESTMapping(ServiceMonitorGVK.GroupKind(), ServiceMonitorGVK.Version); err != nil {
		if !meta.IsNoMatchError(err) {
			return ctrl.Result{}, fmt.Errorf("look up ServiceMonitor kind: %w", err)
		}
		if c.Spec.Observability.ServiceMonitor && c.Status.ObservedGeneration != c.Generation { // once per spec change
			r.Recorder.Eventf(c, nil, corev1.EventTypeWarning, "ServiceMonitorUnavailable", "ApplyServiceMonitor",
				"observability.serviceMonitor is on but the ServiceMonitor CRD (monitoring.coreos.com/v1) is not installed")
		}
		return ctrl.Result{}, nil
	}
	desired := desiredServiceMonitor(s)
	if c.Spec.Observability.ServiceMonitor {
		_, err := r.applier().Apply(ctx, desired)
		return ctrl.Result{}, err
	}
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(ServiceMonitorGVK)
	switch err := r.Client.Get(ctx, client.ObjectKeyFromObject(desired), live); {
	case apierrors.IsNotFound(err):
		return ctrl.Result{}, nil
	case err != nil:
		return ctrl.Result{}, fmt.Errorf("get ServiceMonitor %s: %w", desired.GetName(), err)
	}
	if !metav1.IsControlledBy(live, c) {
		return ctrl.Result{}, nil
	}
	if err := r.Client.Delete(ctx, live); client.IgnoreNotFound(err) != nil {
		return ctrl.Result{}, fmt.Errorf("delete ServiceMonitor %s: %w", desired.GetName(), err)
	}
	return ctrl.Result{}, nil
}
