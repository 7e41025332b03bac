//go:build pods

// Package pods is the end-to-end suite on REAL pods (issue 14): the chart and
// the samples of docs/install.md's quick start on the real node of
// hack/node.sh (containerd, kubelet, kube-proxy, CoreDNS), the image of
// `make image` imported without a registry, the dependencies of hack/deps.sh
// exposed into the namespace (hack/node.sh expose-deps). `make e2e-pods`
// (hack/pods.sh) starts and stops all of it; docs/e2e.md describes it.
package pods

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imkube/imkube/internal/imtest"
	"github.com/imkube/imkube/internal/testenv"
)

const (
	namespace   = "imkube-pods"
	release     = "imkube"
	clusterName = "demo"
	poolName    = "edge"
	docNS       = "chat"
	cmdTimeout  = 60 * time.Second

	// Message counts: one sender gets ~35 acks/s end to end on this 2-core
	// machine (all of one pair's messages go through one ordered queue).
	faultBurst   = 1000 // steps 3 and 4; the pod is deleted after a third
	rolloutRound = 200  // step 5 sends rounds of this many until every Deployment rolled
)

type env struct {
	kubeconfig, helm, nodeSh string
	image, nextTag           string // repository:tag of the installed image; the second tag
	artifacts                string
}

type suite struct {
	t    *stepT
	env  env
	root string
	logs *logCollector
	// timings, in step order
	timings []string
	// failures are the steps' failure messages, printed again after the
	// timings: a CI log excerpt shows the end of the output, where the
	// messages printed as they happened are cut off.
	failures []string
}

// stepT is a step's *testing.T that also keeps what it fails with in
// suite.failures.
type stepT struct {
	*testing.T
	failures *[]string
}

func (t *stepT) note(msg string) {
	lines := strings.Split(strings.TrimSpace(msg), "\n")
	if len(lines) > 12 {
		lines = append(lines[:12], fmt.Sprintf("... (%d more lines above)", len(lines)-12))
	}
	msg = strings.Join(lines, "\n    ")
	if len(msg) > 2000 {
		msg = msg[:2000] + " ..."
	}
	*t.failures = append(*t.failures, t.Name()+": "+msg)
}

func (t *stepT) Fatal(args ...any) {
	t.Helper()
	t.note(fmt.Sprint(args...))
	t.T.Fatal(args...)
}

func (t *stepT) Fatalf(format string, args ...any) {
	t.Helper()
	t.note(fmt.Sprintf(format, args...))
	t.T.Fatalf(format, args...)
}

func (t *stepT) Error(args ...any) {
	t.Helper()
	t.note(fmt.Sprint(args...))
	t.T.Error(args...)
}

func (t *stepT) Errorf(format string, args ...any) {
	t.Helper()
	t.note(fmt.Sprintf(format, args...))
	t.T.Errorf(format, args...)
}

func TestRealPods(t *testing.T) {
	e := env{
		kubeconfig: testenv.Require(t, "KUBECONFIG"),
		helm:       testenv.Require(t, "IMKUBE_HELM"),
		nodeSh:     testenv.Require(t, "IMKUBE_NODE_SH"),
		image:      testenv.Require(t, "IMKUBE_PODS_IMAGE"),
		nextTag:    testenv.Require(t, "IMKUBE_PODS_NEXT_TAG"),
		artifacts:  os.Getenv("IMKUBE_PODS_ARTIFACTS"),
	}
	if e.artifacts == "" {
		e.artifacts = t.TempDir()
	}
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	imtest.ExchangeTimeout, imtest.ExchangeResendEvery = 6*time.Minute, 20*time.Second
	s := &suite{env: e, root: root}
	s.t = &stepT{T: t, failures: &s.failures}
	s.logs = &logCollector{s: s, seen: map[string]bool{}, dir: filepath.Join(e.artifacts, "logs")}
	os.MkdirAll(s.logs.dir, 0o755)
	t0 := time.Now()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("state at failure:\n%s", s.dump())
		}
		s.teardown()
		s.timings = append(s.timings, fmt.Sprintf("%-28s %6.1fs", "total", time.Since(t0).Seconds()))
		t.Logf("timings:\n  %s\n  logs: %s", strings.Join(s.timings, "\n  "), s.logs.dir)
		if len(s.failures) > 0 {
			t.Logf("failed with:\n  %s", strings.Join(s.failures, "\n  "))
		}
	})

	var alice, bob *imtest.Session
	steps := []struct {
		name  string
		allow []string // level=ERROR lines this step may produce (regexps)
		run   func()
	}{
		{"reset", nil, s.reset},
		{"1 install + Ready", nil, s.install},
		{"1b NetworkPolicies enforced", nil, s.networkPolicies},
		{"2 1,000 messages", nil, func() { alice, bob = s.chat() }},
		{"3 gateway pod deleted", []string{`(?i)websocket|connection|broken pipe|context canceled`}, func() { s.deleteGateway(alice, bob) }},
		{"4 message pod deleted", []string{`(?i)connection|context canceled|shutdown|closed`}, func() { s.deleteMessage(alice, bob) }},
		{"5 version rollout", []string{`(?i)websocket|connection|context canceled|shutdown|closed|broken pipe`}, func() { s.rollVersion(alice, bob) }},
		{"6 wrong MySQL password", []string{`(?i)mysql|access denied|1045|database`}, s.wrongPassword},
		{"6b gateway roll, 200 clients", []string{`(?i)websocket|connection|context canceled|shutdown|closed|broken pipe`}, s.gatewayRoll},
		{"7 limits change: no restarts", nil, s.limitsHotReload},
		{"8 autoscaling on real metrics", []string{`(?i)websocket|connection|context canceled|shutdown|closed|broken pipe`}, func() { s.autoscale(alice, bob) }},
	}
	for _, st := range steps {
		start := time.Now()
		ok := t.Run(st.name, func(t *testing.T) {
			s.t = &stepT{T: t, failures: &s.failures}
			defer func() { s.t = nil }()
			st.run()
			s.logs.collect(s.t, st.allow)
		})
		s.t = &stepT{T: t, failures: &s.failures}
		s.timings = append(s.timings, fmt.Sprintf("%-28s %6.1fs", st.name, time.Since(start).Seconds()))
		t.Logf("step %q: %.1fs", st.name, time.Since(start).Seconds())
		if !ok {
			s.logs.collect(s.t, []string{`.`}) // keep the logs for the artifacts
			t.FailNow()
		}
	}
}

// ---- kubectl / helm --------------------------------------------------------

type result struct {
	stdout, stderr string
	err            error
}

func (s *suite) exec(timeout time.Duration, stdin, name string, args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = s.root
	cmd.Env = append(os.Environ(), "KUBECONFIG="+s.env.kubeconfig)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s %s: timed out after %s", name, strings.Join(args, " "), timeout)
	}
	return result{out.String(), errb.String(), err}
}

func (s *suite) kubectl(args ...string) result {
	return s.exec(cmdTimeout, "", "kubectl", append([]string{"-n", namespace}, args...)...)
}

func (s *suite) must(args ...string) string {
	s.t.Helper()
	r := s.kubectl(args...)
	if r.err != nil {
		s.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), r.err, r.stderr)
	}
	return r.stdout
}

func (s *suite) getJSON(out any, args ...string) {
	s.t.Helper()
	if err := json.Unmarshal([]byte(s.must(append(args, "-o", "json")...)), out); err != nil {
		s.t.Fatalf("kubectl get %v: %v", args, err)
	}
}

func (s *suite) eventually(timeout time.Duration, desc string, check func() (bool, string)) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		done, reason := check()
		if done {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: not reached within %s: %s", desc, timeout, reason)
		}
		time.Sleep(time.Second)
	}
}

// ---- setup / teardown ------------------------------------------------------

// reset removes what an aborted earlier run left (fixed names).
func (s *suite) reset() {
	s.exec(2*time.Minute, "", s.env.helm, "uninstall", release, "-n", namespace, "--wait", "--timeout", "90s")
	r := s.exec(3*time.Minute, "", "kubectl", "delete", "namespace", namespace, monitoringNS, "--ignore-not-found", "--wait=true", "--timeout=150s")
	if r.err != nil {
		s.t.Fatalf("delete namespace: %v\n%s", r.err, r.stderr)
	}
	// Helm never upgrades the CRDs in crds/: a control plane kept from an
	// earlier run (or `make e2e-pods` alone) may hold older ones.
	if r := s.exec(cmdTimeout, "", "kubectl", "apply", "--server-side", "--force-conflicts", "-f", filepath.Join(s.root, "charts", "imkube", "crds")); r.err != nil {
		s.t.Fatalf("apply the chart's CRDs: %v\n%s", r.err, r.stderr)
	}
}

func (s *suite) teardown() {
	s.exec(2*time.Minute, "", s.env.helm, "uninstall", release, "-n", namespace, "--wait", "--timeout", "90s")
	s.exec(3*time.Minute, "", "kubectl", "delete", "namespace", namespace, "--ignore-not-found", "--wait=true", "--timeout=150s")
}

func (s *suite) dump() string {
	var b strings.Builder
	for _, args := range [][]string{
		{"get", "imc,gwp,deploy,rs,pods,svc,endpointslices", "-o", "wide"},
		{"get", "imc", clusterName, "-o", "jsonpath={.status}"},
		{"get", "events", "--sort-by=.lastTimestamp"},
	} {
		r := s.kubectl(args...)
		fmt.Fprintf(&b, "$ kubectl %s\n%s%s\n", strings.Join(args, " "), r.stdout, r.stderr)
	}
	return b.String()
}

// install runs docs/install.md's quick start with these rewrites only: the
// namespace; no `--set dependencies.enabled=true` (the chart's demo
// dependencies need images from a registry; hack/deps.sh's are exposed under
// the same Service names instead); helm gets the image under test, --wait
// and a timeout; the IMCluster sample gets send/connect limits fit for a
// burst of 1,000 messages from one host; kubectl wait gets the suite's timeout.
func (s *suite) install() {
	t := s.t
	if r := s.exec(cmdTimeout, "", s.env.nodeSh, "expose-deps", namespace); r.err != nil {
		t.Fatalf("expose-deps: %v\n%s", r.err, r.stderr)
	}
	cmds, err := testenv.QuickstartBlock(s.root)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, c := range cmds {
		args := slices.Clone(c[1:])
		for i := range args {
			if args[i] == docNS && i > 0 && (args[i-1] == "-n" || args[i-1] == "--namespace") {
				args[i] = namespace
			}
		}
		switch {
		case c[0] == "helm" && len(args) > 2 && args[0] == "install":
			kinds = append(kinds, "helm install")
			args = slices.DeleteFunc(args, func(a string) bool { return a == "dependencies.enabled=true" })
			for i := 0; i < len(args); i++ { // the --set left without its value
				if args[i] == "--set" && (i+1 == len(args) || strings.HasPrefix(args[i+1], "-")) {
					args = slices.Delete(args, i, i+1)
					i--
				}
			}
			i := strings.LastIndex(s.env.image, ":")
			args = append(args, "--set", "image.repository="+s.env.image[:i], "--set", "image.tag="+s.env.image[i+1:],
				"--wait", "--timeout", "3m")
			if r := s.exec(4*time.Minute, "", s.env.helm, args...); r.err != nil {
				t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), r.err, r.stdout, r.stderr)
			}
		case c[0] == "kubectl" && slices.Contains(args, "apply"):
			kinds = append(kinds, "kubectl apply")
			stdin := ""
			for i := 0; i < len(args); i++ {
				if args[i] == "-f" && i+1 < len(args) && args[i+1] == "crds/samples/imcluster.yaml" {
					raw, err := os.ReadFile(filepath.Join(s.root, args[i+1]))
					if err != nil {
						t.Fatal(err)
					}
					stdin = patchLimits(t, string(raw))
					args[i+1] = "-"
				}
			}
			if r := s.exec(cmdTimeout, stdin, "kubectl", args...); r.err != nil {
				t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), r.err, r.stderr)
			}
		case c[0] == "kubectl" && slices.Contains(args, "wait"):
			kinds = append(kinds, "kubectl wait")
			args = slices.DeleteFunc(args, func(a string) bool { return strings.HasPrefix(a, "--timeout") })
			args = append(args, "--timeout", "5m")
			if r := s.exec(6*time.Minute, "", "kubectl", args...); r.err != nil {
				t.Fatalf("kubectl %s: %v\n%s\n%s", strings.Join(args, " "), r.err, r.stderr, s.dump())
			}
		default:
			t.Fatalf("quick start: no rewrite for %q", strings.Join(c, " "))
		}
	}
	if want := []string{"helm install", "kubectl apply", "kubectl wait"}; !slices.Equal(kinds, want) {
		t.Fatalf("quick start runs %v, the suite expects %v", kinds, want)
	}
}

// patchLimits raises the sample's per-user send rate and per-IP connection
// rate: every client of the suite comes from the host address.
func patchLimits(t testing.TB, sample string) string {
	repl := map[string]string{
		"sendRatePerSecond:":         "sendRatePerSecond: 2000",
		"sendBurst:":                 "sendBurst: 4000",
		"connectionsPerIPPerSecond:": "connectionsPerIPPerSecond: 1000",
	}
	var out []string
	n := 0
	for _, l := range strings.Split(sample, "\n") {
		tr := strings.TrimSpace(l)
		for k, v := range repl {
			if strings.HasPrefix(tr, k) {
				l = l[:len(l)-len(tr)] + v
				n++
			}
		}
		out = append(out, l)
	}
	if n != len(repl) {
		t.Fatalf("sample imcluster.yaml: found %d of the %d limits to raise: update the suite", n, len(repl))
	}
	return strings.Join(out, "\n")
}

// ---- pods ------------------------------------------------------------------

type pod struct {
	Metadata struct {
		Name              string            `json:"name"`
		UID               string            `json:"uid"`
		Labels            map[string]string `json:"labels"`
		DeletionTimestamp *string           `json:"deletionTimestamp"`
	} `json:"metadata"`
	Spec struct {
		Containers []struct {
			Name  string `json:"name"`
			Image string `json:"image"`
		} `json:"containers"`
	} `json:"spec"`
	Status struct {
		PodIP             string `json:"podIP"`
		Phase             string `json:"phase"`
		ContainerStatuses []struct {
			Name         string `json:"name"`
			Ready        bool   `json:"ready"`
			RestartCount int    `json:"restartCount"`
			Image        string `json:"image"`
		} `json:"containerStatuses"`
	} `json:"status"`
}

func (p pod) ready() bool {
	if p.Status.Phase != "Running" || len(p.Status.ContainerStatuses) == 0 || p.Metadata.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.ContainerStatuses {
		if !c.Ready {
			return false
		}
	}
	return true
}

// podsOf lists the pods of a Deployment (by its selector's labels).
func (s *suite) podsOf(deploy string) []pod {
	s.t.Helper()
	var d struct {
		Spec struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
		} `json:"spec"`
	}
	s.getJSON(&d, "get", "deployment", deploy)
	var sel []string
	for k, v := range d.Spec.Selector.MatchLabels {
		sel = append(sel, k+"="+v)
	}
	var l struct{ Items []pod }
	s.getJSON(&l, "get", "pods", "-l", strings.Join(sel, ","))
	return l.Items
}

func (s *suite) allPods() []pod {
	var l struct{ Items []pod }
	s.getJSON(&l, "get", "pods")
	return l.Items
}

func deployments() []string {
	return []string{clusterName + "-message", clusterName + "-sequence", clusterName + "-user", poolName + "-gateway"}
}

func (s *suite) rolledOut(timeout time.Duration) {
	s.t.Helper()
	for _, d := range deployments() {
		r := s.exec(timeout+30*time.Second, "", "kubectl", "-n", namespace, "rollout", "status", "deployment/"+d, "--timeout", timeout.String())
		if r.err != nil {
			s.t.Fatalf("rollout status %s: %v\n%s\n%s", d, r.err, r.stderr, s.dump())
		}
	}
}

// ---- chat ------------------------------------------------------------------

// gatewayURL is the gateway Service's ClusterIP (kube-proxy makes it
// reachable from the host).
func (s *suite) gatewayURL() string {
	var svc struct {
		Spec struct {
			ClusterIP string `json:"clusterIP"`
			Ports     []struct {
				Port int `json:"port"`
			} `json:"ports"`
		} `json:"spec"`
	}
	s.getJSON(&svc, "get", "service", poolName+"-gateway")
	if svc.Spec.ClusterIP == "" || len(svc.Spec.Ports) == 0 {
		s.getJSON(&svc, "get", "service", poolName)
	}
	return fmt.Sprintf("http://%s:%d", svc.Spec.ClusterIP, svc.Spec.Ports[0].Port)
}

// connections returns each ready gateway pod's open client connections
// (metric imkube_gateway_connections on the pod's /metrics).
func (s *suite) connections() map[string]int {
	out := map[string]int{}
	for _, p := range s.podsOf(poolName + "-gateway") {
		if !p.ready() {
			continue
		}
		out[p.Metadata.Name] = metricSum(fmt.Sprintf("http://%s:9090/metrics", p.Status.PodIP), "imkube_gateway_connections")
	}
	return out
}

func metricSum(url, name string) int {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 8<<20))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, name) {
			continue
		}
		rest := l[len(name):]
		if !(strings.HasPrefix(rest, " ") || strings.HasPrefix(rest, "{")) {
			continue
		}
		f := strings.Fields(l)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum += v
		}
	}
	return int(sum)
}

// podOf waits until the connections total want and returns the pods that
// gained one compared to before.
func (s *suite) landed(before map[string]int, want int) string {
	s.t.Helper()
	var on string
	s.eventually(30*time.Second, "gateway metrics show the connection", func() (bool, string) {
		now := s.connections()
		total := 0
		on = ""
		for p, n := range now {
			total += n
			if n > before[p] {
				on = p
			}
		}
		return total == want && on != "", fmt.Sprintf("connections %v (before %v)", now, before)
	})
	return on
}

func (s *suite) chat() (*imtest.Session, *imtest.Session) {
	t := s.t
	url := s.gatewayURL()
	api := imtest.NewAPI(url)
	suffix := strconv.FormatInt(time.Now().Unix()%1_000_000, 36)
	alice := imtest.NewSession(api.Register(t, "alice"+suffix), "a1", url)
	bob := imtest.NewSession(api.Register(t, "bob"+suffix), "b1", url)
	before := s.connections()
	if err := alice.Connect(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	podA := s.landed(before, sum(before)+1)
	var podB string
	for try := 1; ; try++ {
		before = s.connections()
		if err := bob.Connect(30 * time.Second); err != nil {
			t.Fatal(err)
		}
		podB = s.landed(before, sum(before)+1)
		if podB != podA {
			break
		}
		if try == 20 {
			t.Fatalf("20 connections through the Service all landed on %s", podA)
		}
		bob.Kill()
		s.eventually(30*time.Second, "bob's connection closed", func() (bool, string) {
			n := s.connections()
			return sum(n) == sum(before), fmt.Sprint(n)
		})
	}
	t.Logf("through %s: alice on %s, bob on %s", url, podA, podB)
	imtest.Exchange(t, alice, bob, "s2-", 1000, 0, nil)
	return alice, bob
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// deleteGateway deletes the gateway pod that holds bob's connection while
// alice sends; both reconnect through the Service (to the other pod) and sync.
func (s *suite) deleteGateway(alice, bob *imtest.Session) {
	t := s.t
	conns := s.connections()
	var victim string
	for p, n := range conns {
		if n > 0 && (victim == "" || n > conns[victim]) {
			victim = p
		}
	}
	if victim == "" {
		t.Fatalf("no gateway pod holds a connection: %v", conns)
	}
	imtest.Exchange(t, alice, bob, "s3-", faultBurst, faultBurst/3, func() {
		s.logs.save(victim)
		if r := s.kubectl("delete", "pod", victim, "--wait=false"); r.err != nil {
			t.Fatalf("delete pod %s: %v\n%s", victim, r.err, r.stderr)
		}
		t.Logf("deleted gateway pod %s (connections %v)", victim, conns)
	})
	s.rolledOut(3 * time.Minute)
	imtest.Exchange(t, alice, bob, "s3b-", 50, 0, nil)
}

func (s *suite) deleteMessage(alice, bob *imtest.Session) {
	t := s.t
	pods := s.podsOf(clusterName + "-message")
	if len(pods) == 0 {
		t.Fatal("no message pods")
	}
	victim := pods[0].Metadata.Name
	imtest.Exchange(t, alice, bob, "s4-", faultBurst, faultBurst/3, func() {
		s.logs.save(victim)
		if r := s.kubectl("delete", "pod", victim, "--wait=false"); r.err != nil {
			t.Fatalf("delete pod %s: %v\n%s", victim, r.err, r.stderr)
		}
		t.Logf("deleted message pod %s", victim)
	})
	s.rolledOut(3 * time.Minute)
}

type imcStatus struct {
	Metadata struct {
		Generation int64 `json:"generation"`
	} `json:"metadata"`
	Status struct {
		ObservedGeneration int64  `json:"observedGeneration"`
		Image              string `json:"image"`
		Conditions         []struct {
			Type, Status, Reason, Message string
		} `json:"conditions"`
	} `json:"status"`
}

func (c imcStatus) cond(typ string) (status, reason, msg string) {
	for _, x := range c.Status.Conditions {
		if x.Type == typ {
			return x.Status, x.Reason, x.Message
		}
	}
	return "", "", ""
}

// rollVersion changes spec.version while alice keeps sending: every
// Deployment rolls; the status reports the new image only once every pod
// runs it; nothing is lost, duplicated or reordered.
func (s *suite) rollVersion(alice, bob *imtest.Session) {
	t := s.t
	tag := s.env.nextTag
	var mu sync.Mutex
	var violations []string
	stop := make(chan struct{})
	watched := make(chan struct{})
	sawNew := false
	go func() { // the status never runs ahead of the pods
		defer close(watched)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Second):
			}
			// IMCluster status.image vs the message/sequence/user pods,
			// GatewayPool status.image vs the gateway pods.
			for _, kind := range []string{"imc/" + clusterName, "gwp/" + poolName} {
				var st imcStatus
				r := s.kubectl("get", kind, "-o", "json")
				if r.err != nil || json.Unmarshal([]byte(r.stdout), &st) != nil || !strings.HasSuffix(st.Status.Image, ":"+tag) {
					continue
				}
				var l struct{ Items []pod }
				r = s.kubectl("get", "pods", "-o", "json")
				if r.err != nil || json.Unmarshal([]byte(r.stdout), &l) != nil {
					continue
				}
				mu.Lock()
				sawNew = true
				for _, p := range l.Items {
					gw := strings.HasPrefix(p.Metadata.Name, poolName+"-gateway-")
					comp := strings.HasPrefix(p.Metadata.Name, clusterName+"-")
					if p.Metadata.DeletionTimestamp != nil || (kind[:3] == "imc" && !comp) || (kind[:3] == "gwp" && !gw) {
						continue // terminating, or not this object's pods
					}
					for _, c := range p.Spec.Containers {
						if !strings.HasSuffix(c.Image, ":"+tag) {
							violations = append(violations, fmt.Sprintf("%s status.image %s while pod %s runs %s", kind, st.Status.Image, p.Metadata.Name, c.Image))
						}
					}
				}
				mu.Unlock()
			}
		}
	}()
	defer func() { close(stop); <-watched }()

	rolled := make(chan struct{})
	s.must("patch", "imc", clusterName, "--type", "merge", "-p", `{"spec":{"version":"`+tag+`"}}`)
	start := time.Now()
	go func() {
		defer close(rolled)
		// The operator first writes the new image into every Deployment;
		// `rollout status` then waits for that revision.
		for end := time.Now().Add(2 * time.Minute); time.Now().Before(end); time.Sleep(time.Second) {
			old := 0
			for _, d := range deployments() {
				r := s.kubectl("get", "deployment", d, "-o", "jsonpath={.spec.template.spec.containers[0].image}")
				if r.err != nil || !strings.HasSuffix(strings.TrimSpace(r.stdout), ":"+tag) {
					old++
				}
			}
			if old == 0 {
				break
			}
		}
		for _, d := range deployments() {
			s.exec(6*time.Minute, "", "kubectl", "-n", namespace, "rollout", "status", "deployment/"+d, "--timeout", "5m")
		}
	}()
	round := 0
	for done := false; !done; {
		round++
		select {
		case <-rolled:
			done = true
		default:
		}
		imtest.Exchange(t, alice, bob, fmt.Sprintf("s5r%d-", round), rolloutRound, 0, nil)
		if time.Since(start) > 7*time.Minute {
			t.Fatalf("rollout did not finish within 7 minutes\n%s", s.dump())
		}
	}
	t.Logf("%d rounds of %d messages during the rollout (%.0fs)", round, rolloutRound, time.Since(start).Seconds())
	for _, d := range deployments() {
		for _, p := range s.podsOf(d) {
			if p.Metadata.DeletionTimestamp != nil {
				continue
			}
			if img := p.Spec.Containers[0].Image; !strings.HasSuffix(img, ":"+tag) {
				t.Fatalf("after the rollout pod %s runs %s", p.Metadata.Name, img)
			}
		}
	}
	s.eventually(2*time.Minute, "status reports the new image and Ready", func() (bool, string) {
		var imc imcStatus
		s.getJSON(&imc, "get", "imc", clusterName)
		st, _, _ := imc.cond("Ready")
		return strings.HasSuffix(imc.Status.Image, ":"+tag) && st == "True" && imc.Status.ObservedGeneration == imc.Metadata.Generation,
			fmt.Sprintf("image %s ready %s", imc.Status.Image, st)
	})
	mu.Lock()
	defer mu.Unlock()
	if len(violations) > 0 {
		t.Fatalf("status ran ahead of the pods: %v", violations[:min(5, len(violations))])
	}
	if !sawNew {
		t.Log("note: the watcher did not see the new status before the end")
	}
}

// wrongPassword breaks the MySQL password in the DSN Secret, expects
// Degraded=True naming MySQL within 2 minutes, restores it, expects Ready.
//
// The pods get the DSN as an env var (fixed at container start): the
// operator watches the Secrets a cluster references (metadata only) and
// hashes the referenced values into the pod templates
// (im.imkube.io/secrets-hash), so the change rolls the pods; the new pods
// stay not ready, their /readyz names MySQL and the operator reports it.
func (s *suite) wrongPassword() {
	t := s.t
	var sec struct {
		Data map[string]string `json:"data"`
	}
	s.getJSON(&sec, "get", "secret", clusterName+"-mysql")
	var good string
	if b, err := decodeB64(sec.Data["dsn"]); err == nil {
		good = b
	}
	if !strings.Contains(good, ":imkube@") {
		t.Fatalf("DSN %q: expected the password imkube", good)
	}
	bad := strings.Replace(good, ":imkube@", ":wrong-password@", 1)
	patch := func(dsn string) {
		b, _ := json.Marshal(map[string]any{"stringData": map[string]string{"dsn": dsn}})
		s.must("patch", "secret", clusterName+"-mysql", "--type", "merge", "-p", string(b))
	}
	patch(bad)
	start := time.Now()
	s.eventually(2*time.Minute, "Degraded=True naming MySQL", func() (bool, string) {
		var imc imcStatus
		s.getJSON(&imc, "get", "imc", clusterName)
		st, reason, msg := imc.cond("Degraded")
		return st == "True" && strings.Contains(strings.ToLower(reason+" "+msg), "mysql"), fmt.Sprintf("Degraded=%s %s: %s", st, reason, msg)
	})
	t.Logf("Degraded after %.0fs", time.Since(start).Seconds())
	patch(good)
	start = time.Now()
	s.eventually(5*time.Minute, "Ready again", func() (bool, string) {
		var imc imcStatus
		s.getJSON(&imc, "get", "imc", clusterName)
		st, reason, msg := imc.cond("Ready")
		// The sample autoscales message through KEDA, which this node does
		// not run: Degraded says KEDANotInstalled, never MySQL again.
		dg, dgReason, _ := imc.cond("Degraded")
		return st == "True" && (dg == "False" || dgReason == "KEDANotInstalled"),
			fmt.Sprintf("Ready=%s %s: %s; Degraded=%s %s", st, reason, msg, dg, dgReason)
	})
	t.Logf("Ready again after %.0fs", time.Since(start).Seconds())
}

// ---- logs ------------------------------------------------------------------

type logCollector struct {
	s    *suite
	mu   sync.Mutex
	seen map[string]bool // pod/line already judged
	dir  string
	// pending holds the logs saved of pods about to be deleted.
	pending map[string]string
}

var errorLine = regexp.MustCompile(`level=ERROR`)

// tolerated are level=ERROR lines accepted in any step, each printed: the
// RocketMQ client library logs a write timeout on its connection to the
// broker at ERROR and reconnects by itself; seen once on this 2-core machine
// under a load of 9 (the broker is reached through the node's forwarder);
// sends are retried and the step's figures are checked anyway.
var tolerated = regexp.MustCompile(`component=rocketmq-client.*conn error, close connection.*i/o timeout`)

// save keeps a pod's logs before the suite deletes it.
func (l *logCollector) save(name string) {
	r := l.s.kubectl("logs", name, "--all-containers", "--timestamps")
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pending == nil {
		l.pending = map[string]string{}
	}
	l.pending[name] = r.stdout
}

// collect fetches the logs of every pod in the namespace (and of restarted
// containers), writes them to the artifacts and fails t on any new
// level=ERROR line no allow pattern matches.
func (l *logCollector) collect(t testing.TB, allow []string) {
	logs := map[string]string{}
	l.mu.Lock()
	for k, v := range l.pending {
		logs[k] = v
	}
	l.pending = nil
	l.mu.Unlock()
	var pl struct{ Items []pod }
	r := l.s.kubectl("get", "pods", "-o", "json")
	if r.err == nil && json.Unmarshal([]byte(r.stdout), &pl) == nil {
		for _, p := range pl.Items {
			out := l.s.kubectl("logs", p.Metadata.Name, "--all-containers", "--timestamps").stdout
			for _, c := range p.Status.ContainerStatuses {
				if c.RestartCount > 0 {
					out = l.s.kubectl("logs", p.Metadata.Name, "-c", c.Name, "--previous", "--timestamps").stdout + out
				}
			}
			logs[p.Metadata.Name] = out
		}
	}
	var res []*regexp.Regexp
	for _, a := range allow {
		res = append(res, regexp.MustCompile(a))
	}
	var bad []string
	l.mu.Lock()
	defer l.mu.Unlock()
	for name, out := range logs {
		os.WriteFile(filepath.Join(l.dir, name+".log"), []byte(out), 0o644)
		for _, line := range strings.Split(out, "\n") {
			if !errorLine.MatchString(line) {
				continue
			}
			key := name + "/" + line
			if l.seen[key] {
				continue
			}
			l.seen[key] = true
			switch {
			case slices.ContainsFunc(res, func(re *regexp.Regexp) bool { return re.MatchString(line) }):
			case tolerated.MatchString(line):
				t.Logf("tolerated (see tolerated): %s: %s", name, line)
			default:
				bad = append(bad, name+": "+line)
			}
		}
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		t.Errorf("%d unexpected level=ERROR lines (logs in %s):\n%s", len(bad), l.dir, strings.Join(bad[:min(20, len(bad))], "\n"))
	}
}

func decodeB64(s string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	return string(b), err
}

// ---- NetworkPolicies -------------------------------------------------------

// probeImage is hack/node.sh's probe (hack/node/images/probe).
const probeImage = "localhost/imkube/probe:1.0"

// monitoringNS matches the IMCluster's default monitoringNamespaceSelector.
const monitoringNS = "monitoring"

// networkPolicies proves that the operator's NetworkPolicies are enforced on
// the real node (hack/node.sh runs kube-network-policies): probe pods check
// who reaches which port. A pod labelled as one of the cluster's gateways
// reaches user and message but not sequence; an unlabelled pod of the same
// namespace reaches the gateways (clients come from anywhere) and nothing
// else; a pod of the monitoring namespace reaches the internal port (9090)
// and not the API port. The chat steps after this one show that the
// cluster's own traffic passes.
func (s *suite) networkPolicies() {
	t := s.t
	svc := func(component string, port int) string {
		return fmt.Sprintf("%s-%s.%s.svc:%d", clusterName, component, namespace, port)
	}
	gw := strings.TrimPrefix(s.gatewayURL(), "http://")
	if r := s.exec(cmdTimeout, "apiVersion: v1\nkind: Namespace\nmetadata: {name: "+monitoringNS+"}\n", "kubectl", "apply", "-f", "-"); r.err != nil {
		t.Fatalf("namespace %s: %v\n%s", monitoringNS, r.err, r.stderr)
	}
	defer s.exec(2*time.Minute, "", "kubectl", "delete", "namespace", monitoringNS, "--wait=false")
	probes := []struct {
		name, ns string
		labels   map[string]string
		checks   []string
	}{
		{"np-gateway-like", namespace,
			map[string]string{"app.kubernetes.io/name": "imkube", "app.kubernetes.io/instance": clusterName, "app.kubernetes.io/component": "gateway"},
			[]string{"tcp:" + svc("message", 8080), "tcp:" + svc("user", 8080), "blocked:" + svc("sequence", 8080)}},
		{"np-outsider", namespace, map[string]string{"app": "outsider"},
			[]string{"tcp:" + gw, "blocked:" + svc("message", 8080), "blocked:" + svc("user", 8080),
				"blocked:" + svc("sequence", 8080), "blocked:" + svc("message", 9090)}},
		{"np-other-cluster", namespace,
			map[string]string{"app.kubernetes.io/name": "imkube", "app.kubernetes.io/instance": "other", "app.kubernetes.io/component": "gateway"},
			[]string{"blocked:" + svc("message", 8080), "blocked:" + svc("user", 8080)}},
		{"np-monitoring", monitoringNS, map[string]string{"app": "prometheus"},
			[]string{"tcp:" + svc("message", 9090), "tcp:" + svc("sequence", 9090), "blocked:" + svc("message", 8080)}},
	}
	for _, p := range probes {
		var labels, args []string
		for k, v := range p.labels {
			labels = append(labels, fmt.Sprintf("%q: %q", k, v))
		}
		for _, c := range p.checks {
			args = append(args, strconv.Quote(c))
		}
		manifest := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s, labels: {%s}}
spec:
  restartPolicy: Never
  securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: probe
    image: %q
    imagePullPolicy: Never
    args: [%s]
    securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
`, p.name, p.ns, strings.Join(labels, ", "), probeImage, strings.Join(args, ", "))
		if r := s.exec(cmdTimeout, manifest, "kubectl", "apply", "-f", "-"); r.err != nil {
			t.Fatalf("probe pod %s: %v\n%s", p.name, r.err, r.stderr)
		}
	}
	for _, p := range probes {
		var phase string
		s.eventually(4*time.Minute, "probe pod "+p.name+" finished", func() (bool, string) {
			phase = strings.TrimSpace(s.exec(cmdTimeout, "", "kubectl", "-n", p.ns, "get", "pod", p.name, "-o", "jsonpath={.status.phase}").stdout)
			return phase == "Succeeded" || phase == "Failed", phase
		})
		logs := s.exec(cmdTimeout, "", "kubectl", "-n", p.ns, "logs", p.name).stdout
		t.Logf("%s (%s):\n%s", p.name, phase, logs)
		if phase != "Succeeded" {
			t.Errorf("probe pod %s: %s", p.name, phase)
		}
		s.exec(cmdTimeout, "", "kubectl", "-n", p.ns, "delete", "pod", p.name, "--grace-period", "1", "--wait=false")
	}
}

// ---- hot-reloaded limits ---------------------------------------------------

// limitsHotReload lowers spec.limits.sendRatePerSecond: the ConfigMap changes,
// the kubelet updates the mounted files, the gateways' Sentinel rules poll
// picks the new per-user rate up, and no pod restarts or is replaced.
func (s *suite) limitsHotReload() {
	t := s.t
	type podState struct {
		uid      string
		restarts int
	}
	snapshot := func() map[string]podState {
		out := map[string]podState{}
		for _, d := range deployments() {
			for _, p := range s.podsOf(d) {
				n := 0
				for _, c := range p.Status.ContainerStatuses {
					n += c.RestartCount
				}
				out[p.Metadata.Name] = podState{p.Metadata.UID, n}
			}
		}
		return out
	}
	before := snapshot()
	url := s.gatewayURL()
	api := imtest.NewAPI(url)
	suffix := strconv.FormatInt(time.Now().UnixNano()%1_000_000_000, 36)
	carol := api.Register(t, "carol"+suffix)
	dave := api.Register(t, "dave"+suffix)
	conn, _ := imtest.Connect(t, url, carol.Token, "c1")
	defer conn.Close()
	// burst sends n messages at once and returns how many were refused with
	// RATE_LIMITED (every send is answered by an ack or an error).
	round := 0
	burst := func(n int) int {
		round++
		for i := 0; i < n; i++ {
			conn.SendJSON(map[string]any{"t": "send", "cmid": fmt.Sprintf("hot-%d-%d", round, i),
				"to": map[string]string{"user": dave.ID}, "kind": "text", "body": "x"})
		}
		limited := 0
		for answered := 0; answered < n; {
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
				} else {
					t.Fatalf("round %d: %v", round, f)
				}
			}
		}
		return limited
	}
	if n := burst(10); n != 0 {
		t.Fatalf("%d of 10 sends rate-limited before the change (the suite's limit is 2000/s)", n)
	}
	start := time.Now()
	s.must("patch", "imc", clusterName, "--type", "merge", "-p", `{"spec":{"limits":{"sendRatePerSecond":2,"sendBurst":2}}}`)
	s.eventually(4*time.Minute, "the new send rate applies", func() (bool, string) {
		n := burst(10)
		return n > 0, fmt.Sprintf("%d of 10 sends rate-limited", n)
	})
	t.Logf("the new limit applied %.0fs after the patch (kubelet ConfigMap sync + the 5 s rules poll)", time.Since(start).Seconds())
	time.Sleep(2 * time.Second)
	after := snapshot()
	for name, b := range before {
		a, ok := after[name]
		switch {
		case !ok:
			t.Errorf("pod %s was replaced by the limits change", name)
		case a.uid != b.uid || a.restarts != b.restarts:
			t.Errorf("pod %s restarted (%d -> %d restarts)", name, b.restarts, a.restarts)
		}
	}
	if len(after) != len(before) {
		t.Errorf("pods before %d, after %d: %v", len(before), len(after), after)
	}
}
