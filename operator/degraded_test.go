package operator

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
)

// Degraded says which component does not run and why, from the pods'
// container states, the Deployments' progress deadline and, for a pod that
// runs but stays not ready, its /readyz; it clears when the pods run. There
// is no kubelet in envtest: the test writes the pod statuses a kubelet would.
func TestDegradedNamesTheComponentAndThePodsReason(t *testing.T) {
	h := startOperator(t)
	ctx := context.Background()
	ns := h.namespace("degraded")
	h.applySamples(ns, "imcluster.yaml")
	var d appsv1.Deployment
	h.eventually("Deployment demo-message", func() error { return h.get(ns, "demo-message", &d) })

	pod := h.podOf(&d, "demo-message-7d4f9-abcde", "message")
	setStatus := func(st corev1.PodStatus) { t.Helper(); h.setPodStatus(pod, st) }
	waiting := func(reason, msg string) corev1.PodStatus { return waitingStatus("message", reason, msg) }
	running := func(ready bool) corev1.PodStatus { return runningStatus("message", "10.0.0.5", ready) }
	degraded := func(reason string, words ...string) func() error {
		return degradedWith(func() ([]metav1.Condition, error) {
			var c imv1.IMCluster
			err := h.get(ns, "demo", &c)
			return c.Status.Conditions, err
		}, reason, words...)
	}
	healthy := func() error {
		return h.clusterCondition(ns, "demo", imv1.ConditionDegraded, metav1.ConditionFalse, imv1.ReasonAsExpected)
	}

	t.Run("a crash-looping container", func(t *testing.T) {
		setStatus(waiting("CrashLoopBackOff", "back-off 40s restarting failed container=message"))
		h.eventually("Degraded CrashLoopBackOff", degraded(imv1.ReasonCrashLoopBackOff, "message: pod "+pod.Name, "back-off 40s"))
	})
	t.Run("an image that cannot be pulled", func(t *testing.T) {
		setStatus(waiting("ImagePullBackOff", `Back-off pulling image "ghcr.io/imkube/imkube:nope"`))
		h.eventually("Degraded ImagePullBackOff", degraded(imv1.ReasonImagePullBackOff, "message: pod "+pod.Name, "imkube:nope"))
	})
	t.Run("a pod that waits for a dependency", func(t *testing.T) {
		h.readyz.set(pod.Name, "not ready: waiting for dependencies: mysql: Error 1045 (28000): Access denied for user 'imkube'\n")
		setStatus(running(false))
		h.eventually("Degraded DependencyUnreachable", degraded(imv1.ReasonDependencyUnreachable, "message: pod "+pod.Name, "mysql: Error 1045"))
	})
	t.Run("the pod runs: Degraded clears", func(t *testing.T) {
		h.readyz.set(pod.Name, "")
		setStatus(running(true))
		h.eventually("Degraded cleared", healthy)
	})
	t.Run("a Deployment past its progress deadline", func(t *testing.T) {
		setDeploymentCondition := func(cond appsv1.DeploymentCondition) {
			h.eventually("Deployment status", func() error {
				var u appsv1.Deployment
				if err := h.get(ns, "demo-user", &u); err != nil {
					return err
				}
				u.Status.ObservedGeneration = u.Generation
				u.Status.Conditions = []appsv1.DeploymentCondition{cond}
				return h.c.Status().Update(ctx, &u)
			})
		}
		setDeploymentCondition(appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse,
			Reason: "ProgressDeadlineExceeded", Message: `ReplicaSet "demo-user-5c6b" has timed out progressing.`})
		h.eventually("Degraded ProgressDeadlineExceeded", degraded(imv1.ReasonProgressDeadlineExceeded, "user: Deployment demo-user", "timed out"))
		setDeploymentCondition(appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: "NewReplicaSetAvailable"})
		h.eventually("Degraded cleared", healthy)
	})
}

// The same for gateways: the GatewayPool's Degraded names the gateway pod
// and its reason, and clears when it runs.
func TestGatewayPoolDegradedNamesThePodsReason(t *testing.T) {
	h := startOperator(t)
	ns := h.namespace("gwdegraded")
	h.applySamples(ns, "imcluster.yaml", "gatewaypool.yaml")
	var d appsv1.Deployment
	h.eventually("Deployment edge-gateway", func() error { return h.get(ns, "edge-gateway", &d) })
	pod := h.podOf(&d, "edge-gateway-6c9d7-fghij", "gateway")
	degraded := func(reason string, words ...string) func() error {
		return degradedWith(func() ([]metav1.Condition, error) {
			var p imv1.GatewayPool
			err := h.get(ns, "edge", &p)
			return p.Status.Conditions, err
		}, reason, words...)
	}
	h.setPodStatus(pod, waitingStatus("gateway", "CrashLoopBackOff", "back-off 20s"))
	h.eventually("pool Degraded CrashLoopBackOff", degraded(imv1.ReasonCrashLoopBackOff, "gateway: pod "+pod.Name, "CrashLoopBackOff"))

	h.readyz.set(pod.Name, "not ready: waiting for dependencies: gateway: redis: dial tcp 10.0.0.9:6379: connect: connection refused\n")
	h.setPodStatus(pod, runningStatus("gateway", "10.0.0.6", false))
	h.eventually("pool Degraded DependencyUnreachable", degraded(imv1.ReasonDependencyUnreachable, "gateway: pod "+pod.Name, "redis: dial tcp"))

	h.readyz.set(pod.Name, "")
	h.setPodStatus(pod, runningStatus("gateway", "10.0.0.6", true))
	h.eventually("pool Degraded cleared", func() error {
		return h.poolCondition(ns, "edge", imv1.ConditionDegraded, metav1.ConditionFalse, imv1.ReasonAsExpected)
	})
}

// podOf creates a pod of Deployment d's template, named name, with one
// container: the kubelet's part is the test's (setPodStatus).
func (h *harness) podOf(d *appsv1.Deployment, name, container string) *corev1.Pod {
	h.t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: d.Namespace, Name: name, Labels: d.Spec.Template.Labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: container, Image: d.Spec.Template.Spec.Containers[0].Image}}},
	}
	if err := h.c.Create(context.Background(), pod); err != nil {
		h.t.Fatal(err)
	}
	return pod
}

// setPodStatus writes the status a kubelet would.
func (h *harness) setPodStatus(pod *corev1.Pod, st corev1.PodStatus) {
	h.t.Helper()
	h.eventually("pod status", func() error {
		if err := h.get(pod.Namespace, pod.Name, pod); err != nil {
			return err
		}
		pod.Status = st
		return h.c.Status().Update(context.Background(), pod)
	})
}

// waitingStatus is a pod whose container waits with reason.
func waitingStatus(container, reason, msg string) corev1.PodStatus {
	return corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{
		Name: container, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}},
	}}}
}

// runningStatus is a pod whose container has run for a minute, ready or not.
func runningStatus(container, ip string, ready bool) corev1.PodStatus {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	return corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip,
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: status}},
		ContainerStatuses: []corev1.ContainerStatus{{Name: container, Ready: ready,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(time.Now().Add(-time.Minute))}}}}}
}

// degradedWith checks that conds (read by get) hold Degraded=True with reason
// and a message containing every word.
func degradedWith(get func() ([]metav1.Condition, error), reason string, words ...string) func() error {
	return func() error {
		conds, err := get()
		if err != nil {
			return err
		}
		cond, err := condition(conds, imv1.ConditionDegraded)
		if err != nil {
			return err
		}
		if cond.Status != metav1.ConditionTrue || cond.Reason != reason {
			return fmt.Errorf("Degraded = %+v, want True %s", cond, reason)
		}
		for _, w := range words {
			if !strings.Contains(cond.Message, w) {
				return fmt.Errorf("Degraded message %q lacks %q", cond.Message, w)
			}
		}
		return nil
	}
}
