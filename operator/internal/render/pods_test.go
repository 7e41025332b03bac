package render

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
)

func TestPodProblemNamesTheComponentPodAndReason(t *testing.T) {
	waiting := func(reason string) corev1.Pod {
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "demo-user-1"}, Status: corev1.PodStatus{
			ContainerStatuses: []corev1.ContainerStatus{{Name: "user", State: corev1.ContainerState{
				Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: "details"}}}}}}
	}
	tests := []struct {
		name string
		give corev1.Pod
		want string // reason; "" for no problem
	}{
		{name: "crash loop", give: waiting("CrashLoopBackOff"), want: imv1.ReasonCrashLoopBackOff},
		{name: "image pull back-off", give: waiting("ImagePullBackOff"), want: imv1.ReasonImagePullBackOff},
		{name: "image pull error", give: waiting("ErrImagePull"), want: imv1.ReasonImagePullBackOff},
		{name: "missing Secret key", give: waiting("CreateContainerConfigError"), want: imv1.ReasonContainerConfigError},
		{name: "a container still being created is progress", give: waiting("ContainerCreating")},
		{name: "a running pod", give: corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := PodProblem(User, []corev1.Pod{tt.give})
			switch {
			case tt.want == "" && p != nil:
				t.Errorf("problem %+v, want none", p)
			case tt.want != "" && (p == nil || p.Reason != tt.want || p.Message != "user: pod demo-user-1 container user: "+tt.give.Status.ContainerStatuses[0].State.Waiting.Reason+": details"):
				t.Errorf("problem %+v, want reason %s naming user, the pod and the details", p, tt.want)
			}
		})
	}
}

func TestUnreadyPodIsAskedOnlyAfterTheGrace(t *testing.T) {
	now := time.Now()
	pod := func(started time.Duration, ready corev1.ConditionStatus) corev1.Pod {
		return corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1",
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: ready}},
			ContainerStatuses: []corev1.ContainerStatus{{State: corev1.ContainerState{
				Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(now.Add(-started))}}}}}}
	}
	if UnreadyPod([]corev1.Pod{pod(5*time.Second, corev1.ConditionFalse)}, now) != nil {
		t.Error("a pod starting up was asked")
	}
	if UnreadyPod([]corev1.Pod{pod(time.Minute, corev1.ConditionTrue)}, now) != nil {
		t.Error("a ready pod was asked")
	}
	if UnreadyPod([]corev1.Pod{pod(time.Minute, corev1.ConditionFalse)}, now) == nil {
		t.Error("a pod not ready for a minute was not asked")
	}
	p := pod(time.Minute, corev1.ConditionFalse)
	got := ReadyzProblem(Message, &p, "not ready: waiting for dependencies: redis: dial tcp: i/o timeout\n")
	if got.Reason != imv1.ReasonDependencyUnreachable || got.Message != "message: pod  is not ready: waiting for dependencies: redis: dial tcp: i/o timeout" {
		t.Errorf("ReadyzProblem = %+v", got)
	}
}
