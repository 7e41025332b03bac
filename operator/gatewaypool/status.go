package gatewaypool

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
	"github.com/imkube/imkube/operator/internal/render"
)

// computeStatus fills p.Status from what the phases observed and their
// joined error (nil: the reconcile succeeded). Every condition is always
// set; the generation is only claimed as observed when the reconcile
// succeeded.
func computeStatus(p *imv1.GatewayPool, s *scope, reconcileErr error) {
	st := &p.Status
	gen := render.ObservedGeneration(st.ObservedGeneration, p.Generation, reconcileErr)
	st.ObservedGeneration = gen
	st.Selector = labels.SelectorFromSet(s.selector()).String()
	st.Endpoint = fmt.Sprintf("%s.%s.svc:%d", s.name(), p.Namespace, s.servicePort())
	set := func(typ string, ok bool, reason, msg string) {
		render.SetCondition(&st.Conditions, gen, typ, ok, reason, msg)
	}
	if s.cluster == nil {
		msg := fmt.Sprintf("IMCluster %q not found in namespace %s", p.Spec.ClusterRef.Name, p.Namespace)
		set(imv1.ConditionReady, false, imv1.ReasonClusterNotFound, msg)
		set(imv1.ConditionProgressing, false, imv1.ReasonClusterNotFound, msg)
		set(imv1.ConditionDegraded, true, imv1.ReasonClusterNotFound, msg)
		return
	}
	st.Connections = s.connections
	desired, ready, done, detail := render.DeploymentProgress(s.deployment)
	// Image is what the gateways run: a new image only once the rollout to it is complete.
	if done && render.DeploymentsRun(s.image, s.deployment) {
		st.Image = s.image
	}
	st.ReadyReplicas = ready
	st.Replicas = desired
	if s.deployment != nil {
		st.Replicas = s.deployment.Status.Replicas
	}
	if done {
		set(imv1.ConditionProgressing, false, imv1.ReasonRolloutComplete, fmt.Sprintf("%d gateways run the current spec", desired))
	} else {
		set(imv1.ConditionProgressing, true, imv1.ReasonRollingOut, detail)
	}
	switch {
	case reconcileErr != nil:
		set(imv1.ConditionDegraded, true, imv1.ReasonApplyFailed, reconcileErr.Error())
		set(imv1.ConditionReady, false, imv1.ReasonApplyFailed, reconcileErr.Error())
	case !done:
		degraded(s, set)
		set(imv1.ConditionReady, false, imv1.ReasonComponentsNotReady, "gateway: "+detail)
	default:
		degraded(s, set)
		set(imv1.ConditionReady, true, imv1.ReasonAllReady, fmt.Sprintf("%d gateways available", ready))
	}
}

// kedaMissingMessage explains ReasonKEDANotInstalled.
const kedaMissingMessage = "autoscaling needs KEDA (the IMCluster's spec.autoscaling.provider is KEDA) but the keda.sh/v1alpha1 " +
	"ScaledObject CRD is not installed: install KEDA, or set the provider to HPA with a metrics adapter; the pool keeps its replicas"

// degraded sets Degraded from the diagnosis of the gateway pods: True with
// the pod's reason (CrashLoopBackOff, ImagePullBackOff, a dependency named by
// /readyz, ...) while one does not run, cleared when they do.
func degraded(s *scope, set func(typ string, ok bool, reason, msg string)) {
	if s.problem != nil {
		set(imv1.ConditionDegraded, true, s.problem.Reason, s.problem.Message)
		return
	}
	if s.kedaMissing {
		set(imv1.ConditionDegraded, true, imv1.ReasonKEDANotInstalled, kedaMissingMessage)
		return
	}
	set(imv1.ConditionDegraded, false, imv1.ReasonAsExpected, "")
}

// writeStatus patches the status when it changed and records Ready
// transitions. reconcileErr is the joined error of the phases.
func (r *Reconciler) writeStatus(ctx context.Context, orig, p *imv1.GatewayPool, s *scope, reconcileErr error) error {
	computeStatus(p, s, reconcileErr)
	if equality.Semantic.DeepEqual(orig.Status, p.Status) {
		return nil
	}
	if err := r.Client.Status().Patch(ctx, p, client.MergeFrom(orig)); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("write GatewayPool status: %w", err)
	}
	wasReady := render.IsTrue(orig.Status.Conditions, imv1.ConditionReady)
	switch ready := render.IsTrue(p.Status.Conditions, imv1.ConditionReady); {
	case ready && !wasReady:
		r.Recorder.Eventf(p, nil, corev1.EventTypeNormal, imv1.ReasonAllReady, "Reconcile", "gateway pool is ready")
	case !ready && wasReady:
		r.Recorder.Eventf(p, nil, corev1.EventTypeWarning, "NotReady", "Reconcile", "gateway pool is no longer ready")
	}
	if s.cluster == nil && (len(orig.Status.Conditions) == 0 || wasReady) {
		r.Recorder.Eventf(p, nil, corev1.EventTypeWarning, imv1.ReasonClusterNotFound, "Reconcile",
			"IMCluster %q not found", p.Spec.ClusterRef.Name)
	}
	return nil
}
