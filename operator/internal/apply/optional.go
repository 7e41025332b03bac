package apply

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Installed reports whether the API server serves gvk (an optional CRD such
// as KEDA's ScaledObject or prometheus-operator's ServiceMonitor).
func (a Applier) Installed(gvk schema.GroupVersionKind) (bool, error) {
	if _, err := a.Client.RESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
		if meta.IsNoMatchError(err) {
			return false, nil
		}
		return false, fmt.Errorf("look up %s: %w", gvk.Kind, err)
	}
	return true, nil
}

// DeleteOwnedUnstructured deletes the object of kind gvk named
// namespace/name when owner controls it (an object somebody else made is
// left alone). A kind that is not installed has nothing to delete.
func (a Applier) DeleteOwnedUnstructured(ctx context.Context, gvk schema.GroupVersionKind, owner metav1.Object, namespace, name string) error {
	if ok, err := a.Installed(gvk); err != nil || !ok {
		return err
	}
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(gvk)
	switch err := a.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, live); {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("get %s %s: %w", gvk.Kind, name, err)
	}
	if !metav1.IsControlledBy(live, owner) {
		return nil
	}
	if err := a.Client.Delete(ctx, live); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("delete %s %s: %w", gvk.Kind, name, err)
	}
	return nil
}

// ApplyOptional applies desired, an object of a kind another project
// installs (gvk), or deletes owner's object namespace/name when desired is
// nil. missing reports that desired is wanted but its kind is not installed
// (nothing is written then).
func (a Applier) ApplyOptional(ctx context.Context, gvk schema.GroupVersionKind, desired *unstructured.Unstructured, owner metav1.Object, namespace, name string) (missing bool, err error) {
	if desired == nil {
		return false, a.DeleteOwnedUnstructured(ctx, gvk, owner, namespace, name)
	}
	switch ok, err := a.Installed(gvk); {
	case err != nil:
		return false, err
	case !ok:
		return true, nil
	}
	_, err = a.Apply(ctx, desired)
	return false, err
}
