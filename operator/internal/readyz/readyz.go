// Package readyz asks a not-ready imkube pod why: its /readyz answers 503
// with the dependency it waits for ("not ready: waiting for dependencies:
// mysql: ..."). The controllers use it to name the dependency in Degraded.
package readyz

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
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

// NotReadyReason gets /readyz of the pod and returns the body of a non-200 answer.
func (h HTTP) NotReadyReason(ctx context.Context, pod *corev1.Pod) (string, error) {
	if pod.Status.PodIP == "" {
		return "", fmt.Errorf("pod %s has no IP", pod.Name)
	}
	ctx, cancel := context.WithTimeout(ctx, max(h.Timeout, time.Second))
	defer cancel()
	url := "http://" + net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(h.Port)) + "/readyz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	c := h.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", fmt.Errorf("readyz of pod %s: %w", pod.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return "", fmt.Errorf("readyz of pod %s: %w", pod.Name, err)
	}
	if resp.StatusCode == http.StatusOK {
		return "", nil
	}
	return string(body), nil
}
