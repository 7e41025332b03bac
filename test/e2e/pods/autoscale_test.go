//go:build pods

package pods

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/imkube/imkube/internal/imtest"
)

// promURL is hack/metrics.sh's Prometheus on the node's host address.
const promURL = "http://10.245.0.1:19090"

// autoscale is issue 15's autoscaling test on real metrics: Prometheus and
// KEDA of hack/metrics.sh next to the node, the IMCluster on the KEDA provider
// (the documented default). A GatewayPool of 1..2 gateways at 5 connections
// per pod scales up when 12 connections are open and back down after the
// stabilisation window when they close (its remaining clients drained and
// resynced, 0 lost); the message service (1..2 replicas, 10 messages of lag
// per replica) scales up on the broker-side lag while its consumer is frozen
// (SIGSTOP from the host: the containers are host processes) and back down
// once the lag is gone, with every message delivered once and in order.
// Timings are logged, not asserted beyond the generous waits.
//
// Part of `make test`: hack/metrics.sh's builds (Prometheus, KEDA) start in
// the background first thing in `make test` (make metrics-prebuild) and are
// cached by version; `up` waits for them. Run on its own (PODS_RUN='...8_')
// it exchanges between users of its own.
func (s *suite) autoscale(alice, bob *imtest.Session) {
	t := s.t
	if alice == nil || bob == nil {
		url := s.gatewayURL()
		api := imtest.NewAPI(url)
		suffix := strconv.FormatInt(time.Now().UnixNano()%1_000_000_000, 36)
		alice = imtest.NewSession(api.Register(t, "erin"+suffix), "e1", url)
		bob = imtest.NewSession(api.Register(t, "frank"+suffix), "f1", url)
		for _, c := range []*imtest.Session{alice, bob} {
			if err := c.Connect(30 * time.Second); err != nil {
				t.Fatal(err)
			}
		}
		t.Cleanup(func() { alice.Close(); bob.Close() })
	}
	metricsSh := filepath.Join(s.root, "hack", "metrics.sh")
	start := time.Now()
	if r := s.exec(60*time.Minute, "", metricsSh, "up"); r.err != nil {
		t.Fatalf("hack/metrics.sh up: %v\n%s", r.err, r.stderr)
	}
	t.Cleanup(func() { s.exec(2*time.Minute, "", metricsSh, "down") })
	t.Logf("Prometheus + KEDA up in %.0fs", time.Since(start).Seconds())

	// Step 7 left a send rate of 2/s: the suite's limits again, and the
	// message autoscaler on KEDA with this Prometheus.
	s.must("patch", "imc", clusterName, "--type", "merge", "-p", fmt.Sprintf(
		`{"spec":{"limits":{"sendRatePerSecond":2000,"sendBurst":4000},"autoscaling":{"provider":"KEDA","prometheusAddress":%q},`+
			`"message":{"autoscaling":{"minReplicas":1,"maxReplicas":2,"targetLagPerReplica":10,"scaleDownStabilizationSeconds":30}}}}`, promURL))
	pool := `apiVersion: im.imkube.io/v1alpha1
kind: GatewayPool
metadata: {name: auto}
spec:
  clusterRef: {name: ` + clusterName + `}
  autoscaling: {minReplicas: 1, maxReplicas: 2, targetConnectionsPerPod: 5, scaleDownStabilizationSeconds: 30}
  drainTimeout: 10s
`
	if r := s.exec(cmdTimeout, pool, "kubectl", "-n", namespace, "apply", "-f", "-"); r.err != nil {
		t.Fatalf("apply GatewayPool auto: %v\n%s", r.err, r.stderr)
	}
	t.Cleanup(func() { s.kubectl("delete", "gwp", "auto", "--ignore-not-found", "--wait=true") })

	s.waitUnlimited()
	for _, so := range []string{clusterName + "-message", "auto-gateway"} {
		s.eventually(3*time.Minute, "ScaledObject "+so+" Ready", func() (bool, string) {
			var obj struct {
				Status struct {
					Conditions []struct{ Type, Status, Reason, Message string } `json:"conditions"`
				} `json:"status"`
			}
			if r := s.kubectl("get", "scaledobject", so, "-o", "json"); r.err != nil {
				return false, r.stderr
			} else if err := json.Unmarshal([]byte(r.stdout), &obj); err != nil {
				return false, err.Error()
			}
			for _, c := range obj.Status.Conditions {
				if c.Type == "Ready" {
					return c.Status == "True", fmt.Sprintf("Ready=%s %s: %s", c.Status, c.Reason, c.Message)
				}
			}
			return false, "no Ready condition"
		})
	}
	scale := func(d string) (spec, ready int) {
		var dep struct {
			Spec   struct{ Replicas int }      `json:"spec"`
			Status struct{ ReadyReplicas int } `json:"status"`
		}
		s.getJSON(&dep, "get", "deployment", d)
		return dep.Spec.Replicas, dep.Status.ReadyReplicas
	}
	at := func(d string, n int) func() (bool, string) {
		return func() (bool, string) {
			spec, ready := scale(d)
			return spec == n && ready == n && len(s.podsOf(d)) == n, fmt.Sprintf("%s: spec %d, ready %d", d, spec, ready)
		}
	}
	// Both start at their minimum (message came from the sample's 2).
	s.eventually(5*time.Minute, "message at its minimum of 1", at(clusterName+"-message", 1))
	s.eventually(3*time.Minute, "pool auto at its minimum of 1", at("auto-gateway", 1))

	// ---- gateways: connections above the target, then none
	var svc struct {
		Spec struct {
			ClusterIP string               `json:"clusterIP"`
			Ports     []struct{ Port int } `json:"ports"`
		} `json:"spec"`
	}
	s.getJSON(&svc, "get", "service", "auto-gateway")
	url := fmt.Sprintf("http://%s:%d", svc.Spec.ClusterIP, svc.Spec.Ports[0].Port)
	api := imtest.NewAPI(url)
	suffix := strconv.FormatInt(time.Now().UnixNano()%1_000_000_000, 36)
	load := api.Register(t, "load"+suffix)
	carol := imtest.NewSession(api.Register(t, "carol"+suffix), "c1", url)
	dave := imtest.NewSession(api.Register(t, "dave"+suffix), "d1", url)
	for _, c := range []*imtest.Session{carol, dave} {
		if err := c.Connect(30 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	var conns []*imtest.Conn
	for i := range 12 {
		c, _ := imtest.Connect(t, url, load.Token, fmt.Sprintf("l%d", i))
		conns = append(conns, c)
	}
	start = time.Now()
	s.eventually(6*time.Minute, "pool auto scaled up to 2 on 14 connections (target 5 per pod)", at("auto-gateway", 2))
	t.Logf("gateway scale-up: %.0fs after 14 connections", time.Since(start).Seconds())
	for _, c := range conns {
		c.Close()
	}
	start = time.Now()
	s.eventually(6*time.Minute, "pool auto back to 1 after the stabilisation window", at("auto-gateway", 1))
	t.Logf("gateway scale-down: %.0fs after the load left (30 s window + drain)", time.Since(start).Seconds())
	// carol and dave were drained off the removed gateway (or stayed): they
	// reconnect through the Service, resync, and lose nothing.
	imtest.Exchange(t, carol, dave, "as-gw-", 200, 0, nil)
	carol.Close()
	dave.Close()

	// ---- message: the consumer frozen, the broker lag grows, message scales up
	var frozen sync.Map // pid -> true
	stop := make(chan struct{})
	var stopOnce sync.Once
	thaw := func() {
		stopOnce.Do(func() { close(stop) })
		frozen.Range(func(k, _ any) bool {
			_ = syscall.Kill(k.(int), syscall.SIGCONT)
			return true
		})
	}
	t.Cleanup(thaw)
	var upAfter time.Duration
	done := make(chan struct{})
	fault := func() {
		t0 := time.Now()
		go func() {
			defer close(done)
			// Freeze the imkube process of every message pod (one at the
			// minimum; a pod still draining from the scale-down to it would
			// otherwise consume the backlog), again after each liveness
			// restart, until message has scaled up (or 7 minutes).
			for time.Since(t0) < 7*time.Minute {
				for _, victim := range s.podsOf(clusterName + "-message") {
					for _, pid := range podPIDs(victim.Metadata.UID, "imkube") {
						if _, seen := frozen.LoadOrStore(pid, true); !seen {
							_ = syscall.Kill(pid, syscall.SIGSTOP)
						}
					}
				}
				if spec, _ := scale(clusterName + "-message"); spec >= 2 {
					upAfter = time.Since(t0)
					break
				}
				select {
				case <-stop:
					return
				case <-time.After(time.Second):
				}
			}
			thaw()
		}()
	}
	imtest.Exchange(t, alice, bob, "as-lag-", 300, 1, fault)
	<-done
	if upAfter == 0 {
		t.Fatal("message did not scale up within 7 minutes of its consumers being frozen")
	}
	t.Logf("message scale-up: %.0fs after its consumer froze (lag from the brokers, via the operator, Prometheus and KEDA)", upAfter.Seconds())
	start = time.Now()
	s.eventually(6*time.Minute, "message back to 1 once the lag is gone", at(clusterName+"-message", 1))
	t.Logf("message scale-down: %.0fs after the backlog drained", time.Since(start).Seconds())
	imtest.Exchange(t, alice, bob, "as-after-", 100, 0, nil)
}

// waitUnlimited waits until a burst of 10 sends is no longer rate-limited
// (the limits hot-reload within the rules poll).
func (s *suite) waitUnlimited() {
	t := s.t
	url := s.gatewayURL()
	api := imtest.NewAPI(url)
	suffix := strconv.FormatInt(time.Now().UnixNano()%1_000_000_000, 36)
	from, to := api.Register(t, "rate"+suffix), api.Register(t, "rate2"+suffix)
	conn, _ := imtest.Connect(t, url, from.Token, "r1")
	defer conn.Close()
	round := 0
	s.eventually(4*time.Minute, "the suite's send rate applies again", func() (bool, string) {
		round++
		for i := range 10 {
			conn.SendJSON(map[string]any{"t": "send", "cmid": fmt.Sprintf("rate-%d-%d", round, i),
				"to": map[string]string{"user": to.ID}, "kind": "text", "body": "x"})
		}
		limited := 0
		for answered := 0; answered < 10; {
			f, err := conn.NextErr(30 * time.Second)
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			switch f.T() {
			case "ack":
				answered++
			case "error":
				answered++
				if f.Str("code") == "RATE_LIMITED" {
					limited++
				}
			}
		}
		return limited == 0, fmt.Sprintf("%d of 10 sends rate-limited", limited)
	})
}

// podPIDs returns the host PIDs of the processes named comm in the pod with
// uid (its cgroup path names the pod, with dashes or with underscores).
func podPIDs(uid, comm string) []int {
	forms := []string{"pod" + uid, "pod" + strings.ReplaceAll(uid, "-", "_")}
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		c, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err != nil || strings.TrimSpace(string(c)) != comm {
			continue
		}
		cg, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		if err != nil {
			continue
		}
		for _, f := range forms {
			if strings.Contains(string(cg), f) {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}
