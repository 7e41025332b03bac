package render

import (
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
)

// Problem is why a component is degraded: a Degraded reason (one of the
// pod reasons in api/v1alpha1) and a message that names the component, the
// pod and what Kubernetes (or the pod's /readyz) says.
type Problem struct {
	Reason, Message string
}

// waitingReasons maps container waiting reasons to Degraded reasons; other
// waiting reasons (ContainerCreating, PodInitializing) are progress.
var waitingReasons = map[string]string{
	"CrashLoopBackOff":           imv1.ReasonCrashLoopBackOff,
	"ImagePullBackOff":           imv1.ReasonImagePullBackOff,
	"ErrImagePull":               imv1.ReasonImagePullBackOff,
	"InvalidImageName":           imv1.ReasonImagePullBackOff,
	"CreateContainerConfigError": imv1.ReasonContainerConfigError,
	"CreateContainerError":       imv1.ReasonContainerConfigError,
}

// NotReadyGrace is how long a running pod may be not ready before the
// operator asks its /readyz why (start-up: migrations, first connections).
const NotReadyGrace = 20 * time.Second

// DeploymentProblem reports a Deployment whose rollout exceeded its
// progress deadline.
func DeploymentProblem(component string, d *appsv1.Deployment) *Problem {
	if d == nil {
		return nil
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse && c.Reason == "ProgressDeadlineExceeded" {
			return &Problem{Reason: imv1.ReasonProgressDeadlineExceeded,
				Message: fmt.Sprintf("%s: Deployment %s: %s", component, d.Name, c.Message)}
		}
	}
	return nil
}

// PodProblem reports the first pod of a component whose container waits for
// a reason that will not pass by itself (CrashLoopBackOff, an image that
// cannot be pulled, a container that cannot be created).
func PodProblem(component string, pods []corev1.Pod) *Problem {
	for _, p := range pods {
		if p.DeletionTimestamp != nil {
			continue
		}
		for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
			w := cs.State.Waiting
			if w == nil {
				continue
			}
			reason, ok := waitingReasons[w.Reason]
			if !ok {
				continue
			}
			msg := fmt.Sprintf("%s: pod %s container %s: %s", component, p.Name, cs.Name, w.Reason)
			if w.Message != "" {
				msg += ": " + w.Message
			}
			if t := cs.LastTerminationState.Terminated; t != nil && t.Message != "" {
				msg += " (last exit: " + strings.TrimSpace(t.Message) + ")"
			}
			return &Problem{Reason: reason, Message: msg}
		}
	}
	return nil
}

// PodReady reports the pod's Ready condition.
func PodReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// UnreadyPod returns a pod of the component that has run for longer than
// NotReadyGrace without being ready (nil: none): the one to ask why.
func UnreadyPod(pods []corev1.Pod, now time.Time) *corev1.Pod {
	for i, p := range pods {
		if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
			continue
		}
		if PodReady(&p) {
			continue
		}
		for _, cs := range p.Status.ContainerStatuses {
			if r := cs.State.Running; r != nil && now.Sub(r.StartedAt.Time) >= NotReadyGrace {
				return &pods[i]
			}
		}
	}
	return nil
}

// ReadyzProblem turns what a not-ready pod's /readyz says into a problem.
func ReadyzProblem(component string, p *corev1.Pod, body string) *Problem {
	body = strings.TrimSpace(body)
	if i := strings.IndexByte(body, '\n'); i >= 0 {
		body = body[:i]
	}
	body = strings.TrimPrefix(body, "not ready: ")
	return &Problem{Reason: imv1.ReasonDependencyUnreachable,
		Message: fmt.Sprintf("%s: pod %s is not ready: %s", component, p.Name, body)}
}
