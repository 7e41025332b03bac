package gatewaypool

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func gatewayPod(name, hash, serving string, ready bool) corev1.Pod {
	p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{labelPodTemplateHash: hash}}}
	if serving != "" {
		p.Labels[LabelServing] = serving
	}
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}}
	return p
}

func TestServingLabelsKeepNewConnectionsOffOutdatedPodsDuringARoll(t *testing.T) {
	terminating := gatewayPod("old-c", "old", "true", true)
	terminating.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	tests := []struct {
		name string
		pods []corev1.Pod
		want map[string]string
	}{
		{"no rollout", []corev1.Pod{gatewayPod("a", "new", "true", true), gatewayPod("b", "new", "true", true)}, map[string]string{}},
		{"new pod not ready yet: old pods keep serving",
			[]corev1.Pod{gatewayPod("old-a", "old", "true", true), gatewayPod("old-b", "old", "true", true), gatewayPod("new-a", "new", "true", false)},
			map[string]string{}},
		{"a new pod is ready: old pods stop taking connections",
			[]corev1.Pod{gatewayPod("old-a", "old", "true", true), gatewayPod("old-b", "old", "true", false), gatewayPod("new-a", "new", "true", true), terminating},
			map[string]string{"old-a": "false", "old-b": "false"}},
		{"already steered: nothing to write",
			[]corev1.Pod{gatewayPod("old-a", "old", "false", true), gatewayPod("new-a", "new", "true", true)},
			map[string]string{}},
		{"rollback: the pods of the template that is current again serve",
			[]corev1.Pod{gatewayPod("old-a", "old", "false", true), gatewayPod("new-a", "new", "true", true)},
			nil}, // filled below with current = "old"
		{"pods from before the label: serving until a new pod is ready",
			[]corev1.Pod{gatewayPod("old-a", "old", "", true), gatewayPod("new-a", "new", "", false)},
			map[string]string{"old-a": "true", "new-a": "true"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			current, want := "new", tt.want
			if want == nil {
				current, want = "old", map[string]string{"old-a": "true", "new-a": "false"}
			}
			if diff := cmp.Diff(want, servingLabels(tt.pods, current)); diff != "" {
				t.Errorf("servingLabels (-want +got):\n%s", diff)
			}
		})
	}
}
