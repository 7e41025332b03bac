// Package readyz asks a not-ready imkube pod why: its /readyz answers 503
// with the dependency it waits for ("not ready: waiting for dependencies:
// mysql: ..."). The controllers use it to name the dependency in Degraded.
package readyz

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/imkube/imkube/operator/internal/render"
)

// Prober returns what a pod's /readyz says when it is not ready ("" when it
// is ready after all).
type Prober interface {
	NotReadyReason(ctx context.Context, pod *corev1.Pod) (string, error)
}

// HTTP probes http://<pod IP>:<port>/readyz.
type HTTP struct {
	Port    int
	Timeout time.Duration
	Client  *http.Client
}

var _ Prober = HTTP{}

// get fetches path of the pod's HTTP port (at most limit bytes of the
// body) within the probe timeout.
func (h HTTP) get(ctx context.Context, pod *corev1.Pod, path string, limit int64) (status int, body []byte, err error) {
	if pod.Status.PodIP == "" {
		return 0, nil, fmt.Errorf("pod %s has no IP", pod.Name)
	}
	ctx, cancel := context.WithTimeout(ctx, max(h.Timeout, time.Second))
	defer cancel()
	url := "http://" + net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(h.Port)) + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	c := h.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s of pod %s: %w", path, pod.Name, err)
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return 0, nil, fmt.Errorf("%s of pod %s: %w", path, pod.Name, err)
	}
	return resp.StatusCode, body, nil
}

// NotReadyReason gets /readyz of the pod and returns the body of a non-200 answer.
func (h HTTP) NotReadyReason(ctx context.Context, pod *corev1.Pod) (string, error) {
	status, body, err := h.get(ctx, pod, "/readyz", 4096)
	if err != nil || status == http.StatusOK {
		return "", err
	}
	return string(body), nil
}

// Diagnose says why a component's pods do not run (nil: they do, or no one
// can tell yet): a Deployment past its progress deadline, a container waiting
// in CrashLoopBackOff, ImagePullBackOff or CreateContainerConfigError, or a
// pod that runs but stays not ready, with what its /readyz says (the
// dependency it waits for; prober nil: not asked). recheck is true while any
// pod is not ready: a pod stuck not ready changes no watched object, so the
// caller looks again after a while.
func Diagnose(ctx context.Context, prober Prober, component string, d *appsv1.Deployment, pods []corev1.Pod) (p *render.Problem, recheck bool) {
	p = render.DeploymentProblem(component, d)
	if p == nil {
		p = render.PodProblem(component, pods)
	}
	if p == nil && prober != nil {
		if pod := render.UnreadyPod(pods, time.Now()); pod != nil {
			body, err := prober.NotReadyReason(ctx, pod)
			if err != nil {
				log.FromContext(ctx).V(1).Info("cannot ask a not-ready pod why", "pod", pod.Name, "error", err.Error())
			} else if body != "" {
				p = render.ReadyzProblem(component, pod, body)
			}
		}
	}
	for _, pod := range pods {
		if !render.PodReady(&pod) {
			recheck = true
		}
	}
	return p, recheck
}

// Connections reads imkube_gateway_connections from the pod's /metrics
// (Prometheus text format): the open client connections of a gateway.
func (h HTTP) Connections(ctx context.Context, pod *corev1.Pod) (int64, error) {
	status, body, err := h.get(ctx, pod, "/metrics", 4<<20)
	if err != nil {
		return 0, err
	}
	if status != http.StatusOK {
		return 0, fmt.Errorf("/metrics of pod %s: HTTP %d", pod.Name, status)
	}
	return GaugeValue(bytes.NewReader(body), "imkube_gateway_connections")
}

// GaugeValue returns the sum of the samples of metric name in a Prometheus
// text exposition (one sample per label set).
func GaugeValue(r io.Reader, name string) (int64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var sum float64
	found := false
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue // another metric with this prefix
		}
		if i := strings.LastIndexByte(rest, '}'); i >= 0 {
			rest = rest[i+1:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return 0, fmt.Errorf("metric %s: %w", name, err)
		}
		sum += v
		found = true
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	if !found {
		return 0, fmt.Errorf("metric %s not exported", name)
	}
	return int64(sum), nil
}
