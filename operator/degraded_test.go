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

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "demo-message-7d4f9-abcde", Labels: d.Spec.Template.Labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "message", Image: d.Spec.Template.Spec.Containers[0].Image}}},
	}
	if err := h.c.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	setStatus := func(st corev1.PodStatus) {
		t.Helper()
		h.eventually("pod status", func() error {
			if err := h.get(ns, pod.Name, pod); err != nil {
				return err
			}
			pod.Status = st
			return h.c.Status().Update(ctx, pod)
		})
	}
	waiting := func(reason, msg string) corev1.PodStatus {
		return corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{
			Name: "message", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}},
		}}}
	}
	running := func(ready bool) corev1.PodStatus {
		status := corev1.ConditionFalse
		if ready {
			status = corev1.ConditionTrue
		}
		return corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.5",
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: status}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "message", Ready: ready,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(time.Now().Add(-time.Minute))}}}}}
	}
	degraded := func(reason string, words ...string) func() error {
		return func() error {
			if err := h.clusterCondition(ns, "demo", imv1.ConditionDegraded, metav1.ConditionTrue, reason); err != nil {
				return err
			}
			var c imv1.IMCluster
			if err := h.get(ns, "demo", &c); err != nil {
				return err
			}
			cond, _ := condition(c.Status.Conditions, imv1.ConditionDegraded)
			for _, w := range words {
				if !strings.Contains(cond.Message, w) {
					return fmt.Errorf("Degraded message %q lacks %q", cond.Message, w)
				}
			}
			return nil
		}
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
	ctx := context.Background()
	ns := h.namespace("gwdegraded")
	h.applySamples(ns, "imcluster.yaml", "gatewaypool.yaml")
	var d appsv1.Deployment
	h.eventually("Deployment edge-gateway", func() error { return h.get(ns, "edge-gateway", &d) })
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "edge-gateway-6c9d7-fghij", Labels: d.Spec.Template.Labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "gateway", Image: d.Spec.Template.Spec.Containers[0].Image}}},
	}
	if err := h.c.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	setStatus := func(st corev1.PodStatus) {
		t.Helper()
		h.eventually("pod status", func() error {
			if err := h.get(ns, pod.Name, pod); err != nil {
				return err
			}
			pod.Status = st
			return h.c.Status().Update(ctx, pod)
		})
	}
	degraded := func(reason string, words ...string) func() error {
		return func() error {
			if err := h.poolCondition(ns, "edge", imv1.ConditionDegraded, metav1.ConditionTrue, reason); err != nil {
				return err
			}
			var p imv1.GatewayPool
			if err := h.get(ns, "edge", &p); err != nil {
				return err
			}
			cond, _ := condition(p.Status.Conditions, imv1.ConditionDegraded)
			for _, w := range words {
				if !strings.Contains(cond.Message, w) {
					return fmt.Errorf("Degraded message %q lacks %q", cond.Message, w)
				}
			}
			return nil
		}
	}
	setStatus(corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{
		Name: "gateway", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 20s"}},
	}}})
	h.eventually("pool Degraded CrashLoopBackOff", degraded(imv1.ReasonCrashLoopBackOff, "gateway: pod "+pod.Name, "CrashLoopBackOff"))

	running := func(ready bool) corev1.PodStatus {
		status := corev1.ConditionFalse
		if ready {
			status = corev1.ConditionTrue
		}
		return corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.6",
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: status}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "gateway", Ready: ready,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(time.Now().Add(-time.Minute))}}}}}
	}
	h.readyz.set(pod.Name, "not ready: waiting for dependencies: gateway: redis: dial tcp 10.0.0.9:6379: connect: connection refused\n")
	setStatus(running(false))
	h.eventually("pool Degraded DependencyUnreachable", degraded(imv1.ReasonDependencyUnreachable, "gateway: pod "+pod.Name, "redis: dial tcp"))

	h.readyz.set(pod.Name, "")
	setStatus(running(true))
	h.eventually("pool Degraded cleared", func() error {
		return h.poolCondition(ns, "edge", imv1.ConditionDegraded, metav1.ConditionFalse, imv1.ReasonAsExpected)
	})
}
