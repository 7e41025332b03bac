package imcluster

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
	"github.com/imkube/imkube/operator/internal/render"
)

// computeStatus fills c.Status from what the phases observed and their
// joined error (nil: the reconcile succeeded). Every condition is set on
// every reconcile; the generation is only claimed as observed when the
// reconcile succeeded.
func computeStatus(c *imv1.IMCluster, s *scope, reconcileErr error) {
	st := &c.Status
	gen := render.ObservedGeneration(st.ObservedGeneration, c.Generation, reconcileErr)
	st.ObservedGeneration = gen
	st.Endpoints = imv1.IMClusterEndpoints{
		Message:  render.ServiceURL(c, render.Message),
		Sequence: render.ServiceURL(c, render.Sequence),
		User:     render.ServiceURL(c, render.User),
	}
	st.GatewayPools = s.pools
	st.Isolation = render.Isolation(c)

	var pending []string
	for _, comp := range components() {
		desired, ready, done, detail := render.DeploymentProgress(s.deployments[comp])
		cs := imv1.ComponentStatus{Desired: desired, Ready: ready}
		switch comp {
		case render.Message:
			st.Components.Message = cs
		case render.Sequence:
			st.Components.Sequence = cs
		case render.User:
			st.Components.User = cs
		}
		if !done {
			pending = append(pending, comp+": "+detail)
		}
	}

	// Image is what the components run: a new image only once every
	// Deployment has it in its template and finished rolling out to it.
	if len(pending) == 0 && render.DeploymentsRun(s.image, s.deploymentList()...) {
		st.Image = s.image
	}

	set := func(typ string, ok bool, reason, msg string) {
		render.SetCondition(&st.Conditions, gen, typ, ok, reason, msg)
	}
	if s.depErr != nil {
		set(imv1.ConditionDependenciesReady, false, s.depReason, s.depErr.Error())
	} else {
		msg := fmt.Sprintf("%d RocketMQ topics present, referenced Secrets found", len(s.topics()))
		set(imv1.ConditionDependenciesReady, true, imv1.ReasonDependenciesAvailable, msg)
	}

	switch {
	case reconcileErr != nil:
		set(imv1.ConditionDegraded, true, imv1.ReasonApplyFailed, reconcileErr.Error())
	case s.depErr != nil:
		set(imv1.ConditionDegraded, true, imv1.ReasonDependencyFailed, s.depErr.Error())
	case len(s.problems) > 0:
		msgs := make([]string, len(s.problems))
		for i, p := range s.problems {
			msgs[i] = p.Message
		}
		set(imv1.ConditionDegraded, true, s.problems[0].Reason, strings.Join(msgs, "; "))
	case s.kedaMissing:
		set(imv1.ConditionDegraded, true, imv1.ReasonKEDANotInstalled, "message.autoscaling needs KEDA "+
			"(spec.autoscaling.provider is KEDA) but the keda.sh/v1alpha1 ScaledObject CRD is not installed: install KEDA, "+
			"or set the provider to HPA with a metrics adapter; message keeps its replicas")
	default:
		set(imv1.ConditionDegraded, false, imv1.ReasonAsExpected, "")
	}

	if len(pending) > 0 {
		set(imv1.ConditionProgressing, true, imv1.ReasonRollingOut, strings.Join(pending, "; "))
	} else {
		set(imv1.ConditionProgressing, false, imv1.ReasonRolloutComplete, "all components run the current spec")
	}

	switch {
	case reconcileErr != nil:
		set(imv1.ConditionReady, false, imv1.ReasonApplyFailed, reconcileErr.Error())
	case s.depErr != nil:
		set(imv1.ConditionReady, false, imv1.ReasonDependenciesNotReady, s.depErr.Error())
	case len(pending) > 0:
		set(imv1.ConditionReady, false, imv1.ReasonComponentsNotReady, strings.Join(pending, "; "))
	default:
		set(imv1.ConditionReady, true, imv1.ReasonAllReady, "message, sequence and user are available")
	}
}

// writeStatus patches the status when it changed and records events for
// Ready and DependenciesReady transitions. reconcileErr is the joined error
// of the phases.
func (r *Reconciler) writeStatus(ctx context.Context, orig, c *imv1.IMCluster, s *scope, reconcileErr error) error {
	computeStatus(c, s, reconcileErr)
	if equality.Semantic.DeepEqual(orig.Status, c.Status) {
		return nil
	}
	wasReady := render.IsTrue(orig.Status.Conditions, imv1.ConditionReady)
	depsWereReady := render.IsTrue(orig.Status.Conditions, imv1.ConditionDependenciesReady)
	if err := r.Client.Status().Patch(ctx, c, client.MergeFrom(orig)); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("write IMCluster status: %w", err)
	}
	switch ready := render.IsTrue(c.Status.Conditions, imv1.ConditionReady); {
	case ready && !wasReady:
		r.Recorder.Eventf(c, nil, corev1.EventTypeNormal, imv1.ReasonAllReady, "Reconcile", "IMCluster is ready")
	case !ready && wasReady:
		r.Recorder.Eventf(c, nil, corev1.EventTypeWarning, "NotReady", "Reconcile", "IMCluster is no longer ready")
	}
	if s.depErr != nil && (depsWereReady || len(orig.Status.Conditions) == 0) {
		r.Recorder.Eventf(c, nil, corev1.EventTypeWarning, s.depReason, "CheckDependencies", "%s", s.depErr.Error())
	}
	return nil
}
