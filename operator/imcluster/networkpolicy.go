package imcluster

import (
	"context"
	"errors"
	"fmt"

	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;watch;create;patch;delete

// networkPoliciesEnabled: spec.networkPolicy.enabled, true when unset.
func (s *scope) networkPoliciesEnabled() bool {
	return ptr.Deref(s.cluster.Spec.NetworkPolicy.Enabled, true)
}

// reconcileNetworkPolicies applies the NetworkPolicy of the gateways,
// message, user and sequence pods, or, when spec.networkPolicy.enabled is
// false, deletes the ones this cluster owns.
func (r *Reconciler) reconcileNetworkPolicies(ctx context.Context, s *scope) (ctrl.Result, error) {
	var errs []error
	a := r.applier()
	for _, comp := range networkPolicyComponents() {
		if s.networkPoliciesEnabled() {
			if _, err := a.Apply(ctx, desiredNetworkPolicy(s, comp)); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if err := r.deleteOwnedNetworkPolicy(ctx, s, s.networkPolicyName(comp)); err != nil {
			errs = append(errs, err)
		}
	}
	return ctrl.Result{}, errors.Join(errs...)
}

func (r *Reconciler) deleteOwnedNetworkPolicy(ctx context.Context, s *scope, name string) error {
	return r.deleteOwned(ctx, s, &networkingv1.NetworkPolicy{}, "NetworkPolicy", name)
}

// deleteOwned deletes the object of the cluster's namespace called name
// (read into obj) when the cluster controls it; a missing object or one
// that somebody else owns is left alone.
func (r *Reconciler) deleteOwned(ctx context.Context, s *scope, obj client.Object, kind, name string) error {
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: s.cluster.Namespace, Name: name}, obj)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("get %s %s: %w", kind, name, err)
	}
	if !metav1.IsControlledBy(obj, s.cluster) {
		return nil
	}
	if err := r.Client.Delete(ctx, obj); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("delete %s %s: %w", kind, name, err)
	}
	return nil
}
