package apply

import (
	"context"
	"encoding/json"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// HandOffReplicas prepares a Deployment whose replica count is about to be
// left to an HPA. If the operator's field manager owns spec.replicas, simply
// applying without it would remove the field and the Deployment would drop
// to 1 replica until the HPA acts. So first the current value is applied
// under a second manager ("<manager>-handoff"), which keeps the field alive;
// the HPA then takes it over with its own updates.
func (a Applier) HandOffReplicas(ctx context.Context, live *appsv1.Deployment) error {
	if live == nil || live.Spec.Replicas == nil || !owns(live, a.FieldManager, "f:spec", "f:replicas") {
		return nil
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps/v1",
		"kind":       "Deployment",
		"metadata":   map[string]any{"name": live.Name, "namespace": live.Namespace},
		"spec":       map[string]any{"replicas": int64(*live.Spec.Replicas)},
	}}
	if err := a.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u),
		client.FieldOwner(a.FieldManager+"-handoff"), client.ForceOwnership); err != nil {
		return fmt.Errorf("hand off replicas of Deployment %s: %w", live.Name, err)
	}
	return nil
}

// owns reports whether manager's apply entry contains the field path.
func owns(obj metav1.Object, manager string, path ...string) bool {
	for _, e := range obj.GetManagedFields() {
		if e.Manager != manager || e.Operation != metav1.ManagedFieldsOperationApply || e.FieldsV1 == nil {
			continue
		}
		var tree map[string]any
		if json.Unmarshal(e.FieldsV1.Raw, &tree) != nil {
			return false
		}
		for i, p := range path {
			sub, ok := tree[p]
			if !ok {
				return false
			}
			if i < len(path)-1 {
				if tree, ok = sub.(map[string]any); !ok {
					return false
				}
			}
		}
		return true
	}
	return false
}
