package gatewaypool

import (
	"context"
	"errors"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/imkube/imkube/operator/internal/render"
)

// LabelServing on a gateway pod is "true" while the pool's client Service
// sends it new connections. The pod template carries "true"; during a
// rollout the operator sets "false" on the pods of the outdated template once
// a pod of the current template is ready. Their clients keep their
// connections until the pod's drain evacuates them, and those clients (and
// every new one) reconnect only to current-template pods: no client is
// evacuated twice in one roll. The Deployment's selector does not include the
// label, so the pods stay owned by their ReplicaSets.
const LabelServing = "im.imkube.io/serving"

const (
	labelPodTemplateHash = appsv1.DefaultDeploymentUniqueLabelKey // "pod-template-hash"
	annotationRevision   = "deployment.kubernetes.io/revision"
)

// steerServing keeps LabelServing of the pool's pods as servingLabels says.
// It does nothing while the Deployment controller has not yet observed the
// latest template (the current ReplicaSet is not known then).
func (r *Reconciler) steerServing(ctx context.Context, s *scope) (ctrl.Result, error) {
	d := s.deployment
	if d == nil || d.Status.ObservedGeneration < d.Generation {
		return ctrl.Result{}, nil
	}
	hash, err := r.currentTemplateHash(ctx, d)
	if err != nil || hash == "" {
		return ctrl.Result{}, err
	}
	var pods corev1.PodList
	if err := r.Client.List(ctx, &pods, client.InNamespace(d.Namespace), client.MatchingLabels(s.selector())); err != nil {
		return ctrl.Result{}, fmt.Errorf("list gateway pods: %w", err)
	}
	var errs []error
	for name, want := range servingLabels(pods.Items, hash) {
		for i := range pods.Items {
			p := &pods.Items[i]
			if p.Name != name {
				continue
			}
			patch := client.MergeFrom(p.DeepCopy())
			if p.Labels == nil {
				p.Labels = map[string]string{}
			}
			p.Labels[LabelServing] = want
			if err := r.Client.Patch(ctx, p, patch); client.IgnoreNotFound(err) != nil {
				errs = append(errs, fmt.Errorf("label gateway pod %s %s=%s: %w", p.Name, LabelServing, want, err))
			}
		}
	}
	return ctrl.Result{}, errors.Join(errs...)
}

// servingLabels returns the pods whose LabelServing must change, with the
// value they need: "false" for a pod of an outdated template (pod-template-hash
// other than current) once some pod of the current template is ready, "true"
// for every other pod (a rollout that has no ready new pod yet takes nothing
// away; a rollback makes old pods current again; pods created before the
// label existed get it). Terminating pods are left alone.
func servingLabels(pods []corev1.Pod, current string) map[string]string {
	newReady := false
	for i := range pods {
		p := &pods[i]
		if p.DeletionTimestamp == nil && p.Labels[labelPodTemplateHash] == current && render.PodReady(p) {
			newReady = true
		}
	}
	out := map[string]string{}
	for i := range pods {
		p := &pods[i]
		if p.DeletionTimestamp != nil || p.Labels[labelPodTemplateHash] == "" {
			continue
		}
		want := "true"
		if newReady && p.Labels[labelPodTemplateHash] != current {
			want = "false"
		}
		if p.Labels[LabelServing] != want {
			out[p.Name] = want
		}
	}
	return out
}

// currentTemplateHash is the pod-template-hash of d's current ReplicaSet (the
// one of d's revision), or "" when there is none yet.
func (r *Reconciler) currentTemplateHash(ctx context.Context, d *appsv1.Deployment) (string, error) {
	rev := d.Annotations[annotationRevision]
	if rev == "" {
		return "", nil
	}
	var sets appsv1.ReplicaSetList
	if err := r.Client.List(ctx, &sets, client.InNamespace(d.Namespace), client.MatchingLabels(d.Spec.Selector.MatchLabels)); err != nil {
		return "", fmt.Errorf("list gateway ReplicaSets: %w", err)
	}
	for i := range sets.Items {
		rs := &sets.Items[i]
		if metav1.IsControlledBy(rs, d) && rs.Annotations[annotationRevision] == rev {
			return rs.Labels[labelPodTemplateHash], nil
		}
	}
	return "", nil
}
