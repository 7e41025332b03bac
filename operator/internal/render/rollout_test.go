package render

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestDeploymentProgress(t *testing.T) {
	dep := func(gen, observed int64, replicas, updated, available, total int32) *appsv1.Deployment {
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Generation: gen},
			Spec:       appsv1.DeploymentSpec{Replicas: ptr.To(replicas)},
			Status: appsv1.DeploymentStatus{ObservedGeneration: observed, UpdatedReplicas: updated,
				AvailableReplicas: available, Replicas: total},
		}
	}
	tests := []struct {
		name      string
		give      *appsv1.Deployment
		wantReady int32
		wantDone  bool
		wantWhy   string
	}{
		{"not created", nil, 0, false, "not created yet"},
		{"new spec not observed", dep(2, 1, 3, 3, 3, 3), 3, false, "spec change not observed yet"},
		{"half updated", dep(2, 2, 4, 2, 4, 6), 2, false, "2 of 4 replicas updated"},
		{"old pods still running", dep(2, 2, 3, 3, 3, 4), 3, false, "1 old replicas pending termination"},
		{"updated but not available", dep(1, 1, 3, 3, 1, 3), 1, false, "1 of 3 replicas available"},
		{"rolled out", dep(5, 5, 3, 3, 3, 3), 3, true, ""},
		{"scaled to zero", dep(1, 1, 0, 0, 0, 0), 0, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, ready, done, why := DeploymentProgress(tt.give)
			if ready != tt.wantReady || done != tt.wantDone || why != tt.wantWhy {
				t.Errorf("got ready %d done %v %q, want %d %v %q", ready, done, why, tt.wantReady, tt.wantDone, tt.wantWhy)
			}
		})
	}
}
