package render

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
)

// DeploymentProgress summarises a Deployment: desired and ready (available on
// the current template) replicas, and whether the rollout is complete.
func DeploymentProgress(d *appsv1.Deployment) (desired, ready int32, done bool, detail string) {
	if d == nil {
		return 0, 0, false, "not created yet"
	}
	desired = 1
	if d.Spec.Replicas != nil {
		desired = *d.Spec.Replicas
	}
	st := d.Status
	ready = min(st.AvailableReplicas, st.UpdatedReplicas)
	switch {
	case st.ObservedGeneration < d.Generation:
		return desired, ready, false, "spec change not observed yet"
	case st.UpdatedReplicas < desired:
		return desired, ready, false, fmt.Sprintf("%d of %d replicas updated", st.UpdatedReplicas, desired)
	case st.Replicas > st.UpdatedReplicas:
		return desired, ready, false, fmt.Sprintf("%d old replicas pending termination", st.Replicas-st.UpdatedReplicas)
	case st.AvailableReplicas < desired:
		return desired, ready, false, fmt.Sprintf("%d of %d replicas available", st.AvailableReplicas, desired)
	}
	return desired, ready, true, ""
}

// DeploymentsRun reports whether every Deployment exists and has image in
// all of its pod template's containers (a rollout to image is only complete
// when DeploymentProgress is done too).
func DeploymentsRun(image string, ds ...*appsv1.Deployment) bool {
	for _, d := range ds {
		if d == nil || len(d.Spec.Template.Spec.Containers) == 0 {
			return false
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			if c.Image != image {
				return false
			}
		}
	}
	return true
}
