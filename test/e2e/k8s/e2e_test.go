//go:build e2e

// Package k8s is imkube's end-to-end suite on a real Kubernetes control plane:
// helm install of charts/imkube, the samples of crds/samples applied with
// kubectl, every owned object checked, day-2 operations (limits, scale,
// version, delete, invalid objects). It runs against any cluster named by
// KUBECONFIG: the node-less control plane of hack/cluster.sh with kwok (the
// operator runs as a process on the host, pods are faked Running by kwok),
// or a kind cluster (`make e2e-kind`, the operator in its pod). See docs/e2e.md.
package k8s

import (
	"bufio"
	"fmt"
	"k8s.io/apimachinery/pkg/api/equality"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
	"github.com/imkube/imkube/internal/testenv"
)

const (
	// namespace and release are fixed so that a run cleans up what an aborted
	// earlier run left behind (the chart's ClusterRole is named after the release).
	namespace = "imkube-e2e"
	release   = "imkube"
	// The objects of the samples in crds/samples.
	clusterName = "demo"
	poolName    = "edge"

	labelConfigHash = "im.imkube.io/config-hash"
	labelManagedBy  = "app.kubernetes.io/managed-by"
	managedByValue  = "imkube-operator"
)

// Operator modes (IMKUBE_E2E_OPERATOR).
const (
	// modeProcess: the chart's operator Deployment is scaled to 0 after it
	// became available and `imkube operator` runs on the host with the token
	// of the chart's ServiceAccount (a node-less cluster has no containers).
	modeProcess = "process"
	// modeInCluster: the chart's operator pod does the work (kind).
	modeInCluster = "in-cluster"
)

// config is what the environment chooses.
type config struct {
	kubeconfig, helm string
	mode             string
	// image overrides the chart's image (repository:tag), in-cluster mode.
	image string
	// namesrv/broker replace the sample's RocketMQ addresses (process mode);
	// in-cluster mode uses the chart's demo dependencies the sample points at.
	namesrv, broker string
	// readyTimeout bounds waiting for Ready (longer with real pods).
	readyTimeout time.Duration
}

func loadConfig(t *testing.T) config {
	t.Helper()
	c := config{
		kubeconfig:   testenv.Require(t, "KUBECONFIG"),
		helm:         testenv.Require(t, "IMKUBE_HELM"),
		mode:         os.Getenv("IMKUBE_E2E_OPERATOR"),
		image:        os.Getenv("IMKUBE_E2E_IMAGE"),
		readyTimeout: 3 * time.Minute,
	}
	if c.mode == "" {
		c.mode = modeProcess
	}
	switch c.mode {
	case modeProcess:
		c.namesrv = testenv.Require(t, "IMKUBE_ROCKETMQ_NAMESRV")
		c.broker = testenv.Require(t, "IMKUBE_ROCKETMQ_BROKER")
	case modeInCluster:
		c.readyTimeout = 10 * time.Minute // image pulls, RocketMQ start-up
	default:
		t.Fatalf("IMKUBE_E2E_OPERATOR=%q: want %q or %q", c.mode, modeProcess, modeInCluster)
	}
	if v := os.Getenv("IMKUBE_E2E_READY_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("IMKUBE_E2E_READY_TIMEOUT: %v", err)
		}
		c.readyTimeout = d
	}
	return c
}

// repoRoot is the module root (this package is test/e2e/k8s).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "charts", "imkube", "Chart.yaml")); err != nil {
		t.Fatalf("repo root %s: %v", root, err)
	}
	return root
}

// TestPlatform is one ordered scenario: the steps depend on each other, so a
// failing step stops the rest (t.Fatal inside t.Run ends only that subtest,
// hence the explicit checks).
func TestPlatform(t *testing.T) {
	s := &suite{cfg: loadConfig(t), root: repoRoot(t), workdir: os.Getenv("IMKUBE_E2E_WORKDIR")}
	if s.workdir == "" {
		s.workdir = t.TempDir() // the top-level test's: the operator outlives the steps
	}
	k := s.kube(t)

	resetNamespace(t, k)
	t.Cleanup(func() {
		if os.Getenv("IMKUBE_E2E_KEEP") == "true" {
			t.Logf("IMKUBE_E2E_KEEP=true: leaving namespace %s (the next run removes it)", namespace)
			return
		}
		teardown(t, k)
	})
	// Registered after teardown, so it runs before it.
	t.Cleanup(s.stopOperator)

	steps := []struct {
		name string
		run  func(t *testing.T, s *suite, k *kube)
	}{
		{"HelmInstall", helmInstall},
		{"ApplySamples", applySamples},
		{"OwnedObjects", checkOwnedObjects},
		{"InvalidObjectsRejected", checkInvalidRejected},
		{"LimitsRollPods", changeLimits},
		{"ScaleGatewayPool", scalePool},
		{"ChangeVersion", changeVersion},
		{"DeleteGarbageCollects", deleteCluster},
	}
	for _, st := range steps {
		ok := t.Run(st.name, func(t *testing.T) { st.run(t, s, s.kube(t)) })
		if !ok {
			t.Fatalf("step %s failed; skipping the later steps.\n%s\noperator log tail:\n%s",
				st.name, dumpState(k), s.operatorLog(80))
		}
	}
}

// suite is the state shared by the ordered steps of TestPlatform.
type suite struct {
	cfg  config
	root string
	// workdir holds the operator binary, its kubeconfig and its log.
	workdir string
	// stop ends the operator process (process mode); logPath is its log.
	stop    func()
	logPath string
}

func (s *suite) kube(t *testing.T) *kube {
	return &kube{t: t, kubeconfig: s.cfg.kubeconfig, helm: s.cfg.helm, ns: namespace}
}

func (s *suite) stopOperator() {
	if s.stop != nil {
		s.stop()
		s.stop = nil
	}
}

// operatorLog is the tail of the operator's log, for failure messages.
func (s *suite) operatorLog(n int) string {
	if s.logPath == "" {
		return "(the operator runs in the cluster: kubectl -n " + namespace + " logs deploy/" + release + "-operator)"
	}
	return tail(s.logPath, n)
}

// resetNamespace removes what an earlier, aborted run left and creates the
// test namespace.
func resetNamespace(t *testing.T, k *kube) {
	t.Helper()
	if r := k.kubectl("get", "namespace", namespace); r.err == nil {
		t.Logf("namespace %s exists (an earlier run was aborted): removing it", namespace)
		teardown(t, k)
	}
	k.must("create", "namespace", namespace)
}

// teardown uninstalls the release and deletes the namespace, bounded.
func teardown(t *testing.T, k *kube) {
	t.Helper()
	if r := k.exec(3*time.Minute, "", k.helm, "uninstall", release, "-n", namespace, "--wait", "--timeout", "2m"); r.err != nil &&
		!strings.Contains(r.stderr, "not found") {
		t.Errorf("helm uninstall: %v", r)
	}
	// Custom resources first (their finalizer-free deletion lets GC run), then the namespace.
	k.kubectl("delete", "imclusters,gatewaypools", "--all", "--wait=false")
	r := k.exec(4*time.Minute, "", "kubectl", "delete", "namespace", namespace, "--ignore-not-found", "--wait", "--timeout", "3m")
	if r.err != nil {
		t.Errorf("delete namespace %s: %v", namespace, r)
	}
}

// ---- steps ---------------------------------------------------------------------

func helmInstall(t *testing.T, s *suite, k *kube) {
	cfg, root := s.cfg, s.root
	crdNames := []string{"imclusters.im.imkube.io", "gatewaypools.im.imkube.io"}
	crdsExisted := k.exec(cmdTimeout, "", "kubectl", append([]string{"get", "crd"}, crdNames...)...).err == nil

	// The quick start's helm install (docs/install.md), rewritten only as
	// quickstartSteps says.
	helmTimeout := max(5*time.Minute, cfg.readyTimeout) // in-cluster: the demo dependencies start too
	install := quickstartSteps(t, quickstartBlock(t, root), cfg, helmTimeout)[0]
	if r := install.run(k, root, "", helmTimeout+time.Minute); r.err != nil {
		t.Fatalf("%s: %v", install, r)
	}
	if crdsExisted {
		// Helm never upgrades CRDs in crds/; a cluster kept from an earlier run
		// gets the current ones (a no-op when unchanged).
		k.must("apply", "--server-side", "--force-conflicts", "-f", filepath.Join(root, "charts", "imkube", "crds"))
	}
	for _, n := range crdNames {
		k.wait(time.Minute, "--for=condition=Established", "crd/"+n)
	}

	operator := release + "-operator"
	k.wait(3*time.Minute, "--for=condition=Available", "deployment/"+operator)
	var d appsv1.Deployment
	k.mustGet(&d, "deployment", operator)
	if got := d.Status.AvailableReplicas; got < 1 {
		t.Fatalf("operator deployment: %d available replicas", got)
	}
	for _, kind := range []string{"serviceaccount", "clusterrole", "clusterrolebinding", "role", "rolebinding"} {
		name := operator
		if kind == "role" || kind == "rolebinding" {
			name = operator + "-leader-election"
		}
		if r := k.kubectl("get", kind, name); r.err != nil {
			t.Errorf("chart object %s/%s: %v", kind, name, r)
		}
	}

	if cfg.mode == modeProcess {
		// kwok made the operator pod "Running" without a container: replace it
		// with a real process that uses the chart's ServiceAccount and RBAC.
		k.must("scale", "deployment/"+operator, "--replicas", "0")
		eventually(t, 2*time.Minute, "operator pods gone after scaling to 0", func() (bool, string, error) {
			var pods corev1.PodList
			if _, err := k.get(&pods, "pods", "-l", "app.kubernetes.io/component=operator"); err != nil {
				return false, "", err
			}
			return len(pods.Items) == 0, fmt.Sprintf("%d pods", len(pods.Items)), nil
		})
		startOperator(t, s, k, operator)
	}
}

// startOperator builds cmd/imkube and runs `imkube operator` against the
// cluster with a token of the chart's ServiceAccount, so the chart's RBAC is
// what the operator gets. It stops with the top-level test.
func startOperator(t *testing.T, s *suite, k *kube, serviceAccount string) {
	t.Helper()
	root, dir := s.root, s.workdir
	bin := filepath.Join(dir, "imkube")
	build := exec.Command("go", "build", "-o", bin, "./cmd/imkube")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/imkube: %v\n%s", err, out)
	}

	token := strings.TrimSpace(k.must("create", "token", serviceAccount, "--duration", "2h"))
	kc, err := clientcmd.LoadFromFile(k.kubeconfig)
	if err != nil {
		t.Fatalf("load kubeconfig: %v", err)
	}
	ctx := kc.Contexts[kc.CurrentContext]
	if ctx == nil {
		t.Fatalf("kubeconfig %s has no current context", k.kubeconfig)
	}
	kc.AuthInfos = map[string]*clientcmdapi.AuthInfo{"operator": {Token: token}}
	ctx.AuthInfo = "operator"
	ctx.Namespace = namespace
	saConfig := filepath.Join(dir, "operator.kubeconfig")
	if err := clientcmd.WriteToFile(*kc, saConfig); err != nil {
		t.Fatalf("write operator kubeconfig: %v", err)
	}

	logPath := filepath.Join(dir, "operator.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "operator", "--kubeconfig", saConfig, "--leader-elect",
		"--leader-election-namespace", namespace, "--metrics-addr", "0", "--health-addr", "0")
	cmd.Env = append(os.Environ(), "IMKUBE_LOG_LEVEL=debug")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start operator: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// Stopped by the top-level test's cleanup (s.stopOperator): the operator
	// must outlive this step.
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(45 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		_ = logFile.Close()
	}
	s.stop, s.logPath = stop, logPath
	t.Logf("operator running (pid %d), log: %s", cmd.Process.Pid, logPath)

	// The leader takes the Lease within the lease duration; wait for it so the
	// later steps measure reconciliation, not election.
	eventually(t, time.Minute, "operator holds the leader Lease", func() (bool, string, error) {
		select {
		case err := <-done:
			done <- err
			return false, "", fmt.Errorf("operator exited: %v\n%s", err, tail(logPath, 40))
		default:
		}
		var lease struct {
			Spec struct {
				HolderIdentity string `json:"holderIdentity"`
			} `json:"spec"`
		}
		found, err := k.get(&lease, "lease", "imkube-operator.im.imkube.io")
		if err != nil || !found {
			return false, fmt.Sprintf("lease found=%v err=%v", found, err), nil
		}
		return lease.Spec.HolderIdentity != "", "no holder", nil
	})
}

func applySamples(t *testing.T, s *suite, k *kube) {
	cfg, root := s.cfg, s.root
	samples := filepath.Join(root, "crds", "samples")
	raw, err := os.ReadFile(filepath.Join(samples, "imcluster.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// The quick start's kubectl apply and kubectl wait (docs/install.md).
	steps := quickstartSteps(t, quickstartBlock(t, root), cfg, 0)
	if r := steps[1].run(k, root, imclusterManifest(t, raw, cfg), cmdTimeout); r.err != nil {
		t.Fatalf("%s: %v", steps[1], r)
	}
	if r := steps[2].run(k, root, "", cfg.readyTimeout+30*time.Second); r.err != nil {
		var imc imv1.IMCluster
		k.get(&imc, "imc", clusterName)
		var gwp imv1.GatewayPool
		k.get(&gwp, "gwp", poolName)
		t.Fatalf("%s: %v\nIMCluster conditions: %s\nGatewayPool conditions: %s\noperator log tail:\n%s",
			steps[2], r, conditions(imc.Status.Conditions), conditions(gwp.Status.Conditions), s.operatorLog(60))
	}
	waitReady(t, s, k)
}

// imclusterManifest returns the sample's documents; in process mode the
// RocketMQ addresses become the real RocketMQ of hack/deps.sh (the sample
// expects the chart's demo dependencies); in in-cluster mode it is applied
// as it is.
func imclusterManifest(t *testing.T, raw []byte, cfg config) string {
	t.Helper()
	var out []string
	for _, doc := range splitYAML(string(raw)) {
		var u unstructured.Unstructured
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			t.Fatalf("sample imcluster.yaml: %v", err)
		}
		switch u.GetKind() {
		case "IMCluster":
			if cfg.mode == modeProcess {
				setNested(t, &u, []any{cfg.namesrv}, "spec", "dependencies", "rocketmq", "nameServers")
				setNested(t, &u, []any{cfg.broker}, "spec", "dependencies", "rocketmq", "brokerAddresses")
			}
		}
		b, err := yaml.Marshal(u.Object)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return strings.Join(out, "---\n")
}

func setNested(t *testing.T, u *unstructured.Unstructured, v any, fields ...string) {
	t.Helper()
	if _, found, err := unstructured.NestedFieldNoCopy(u.Object, fields...); err != nil || !found {
		t.Fatalf("sample has no %s (found=%v, err=%v): update the test with the sample", strings.Join(fields, "."), found, err)
	}
	if err := unstructured.SetNestedField(u.Object, v, fields...); err != nil {
		t.Fatal(err)
	}
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

func splitYAML(s string) []string {
	var docs []string
	for _, d := range docSep.Split(s, -1) {
		if strings.TrimSpace(stripComments(d)) != "" {
			docs = append(docs, d)
		}
	}
	return docs
}

func stripComments(s string) string {
	var b strings.Builder
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// waitReady waits for Ready on both samples and for their status to describe
// the current generation.
func waitReady(t *testing.T, s *suite, k *kube) {
	t.Helper()
	cfg := s.cfg
	r := k.exec(cfg.readyTimeout+30*time.Second, "", "kubectl", "-n", namespace, "wait", "--for=condition=Ready",
		"--timeout", cfg.readyTimeout.String(), "imc/"+clusterName, "gwp/"+poolName)
	if r.err != nil {
		var imc imv1.IMCluster
		k.get(&imc, "imc", clusterName)
		var gwp imv1.GatewayPool
		k.get(&gwp, "gwp", poolName)
		t.Fatalf("kubectl wait Ready: %v\nIMCluster conditions: %s\nGatewayPool conditions: %s\noperator log tail:\n%s",
			r, conditions(imc.Status.Conditions), conditions(gwp.Status.Conditions), s.operatorLog(60))
	}
	eventually(t, time.Minute, "status observes the current generation", func() (bool, string, error) {
		var imc imv1.IMCluster
		k.mustGet(&imc, "imc", clusterName)
		var gwp imv1.GatewayPool
		k.mustGet(&gwp, "gwp", poolName)
		okC := imc.Status.ObservedGeneration == imc.Generation && isTrue(imc.Status.Conditions, "Ready")
		okP := gwp.Status.ObservedGeneration == gwp.Generation && isTrue(gwp.Status.Conditions, "Ready")
		return okC && okP, fmt.Sprintf("imc gen %d/%d %s; gwp gen %d/%d %s",
			imc.Status.ObservedGeneration, imc.Generation, conditions(imc.Status.Conditions),
			gwp.Status.ObservedGeneration, gwp.Generation, conditions(gwp.Status.Conditions)), nil
	})
}

func isTrue(conds []metav1.Condition, typ string) bool {
	for _, c := range conds {
		if c.Type == typ {
			return c.Status == metav1.ConditionTrue
		}
	}
	return false
}

func conditions(conds []metav1.Condition) string {
	var parts []string
	for _, c := range conds {
		parts = append(parts, fmt.Sprintf("%s=%s(%s: %s)", c.Type, c.Status, c.Reason, c.Message))
	}
	return strings.Join(parts, "; ")
}

// ownedObject names one object the operator must create.
type ownedObject struct {
	kind, name string
	owner      string // "IMCluster" or "GatewayPool"
}

func ownedObjects() []ownedObject {
	var objs []ownedObject
	for _, c := range []string{"message", "sequence", "user"} {
		n := clusterName + "-" + c
		objs = append(objs,
			ownedObject{"deployment", n, "IMCluster"},
			ownedObject{"service", n, "IMCluster"},
			ownedObject{"poddisruptionbudget", n, "IMCluster"})
	}
	gw := poolName + "-gateway"
	return append(objs,
		// The sample autoscales message (consumer lag, through KEDA: see
		// checkOwnedObjects) and user (CPU, a plain HPA), not sequence.
		ownedObject{"horizontalpodautoscaler", clusterName + "-user", "IMCluster"},
		ownedObject{"configmap", clusterName + "-config", "IMCluster"},
		ownedObject{"deployment", gw, "GatewayPool"},
		ownedObject{"service", gw, "GatewayPool"},
		ownedObject{"poddisruptionbudget", gw, "GatewayPool"},
	)
}

func checkOwnedObjects(t *testing.T, s *suite, k *kube) {
	cfg := s.cfg
	var imc imv1.IMCluster
	k.mustGet(&imc, "imc", clusterName)
	var gwp imv1.GatewayPool
	k.mustGet(&gwp, "gwp", poolName)
	uids := map[string]string{"IMCluster": string(imc.UID), "GatewayPool": string(gwp.UID)}

	for _, o := range ownedObjects() {
		var m struct {
			metav1.ObjectMeta `json:"metadata"`
		}
		k.mustGet(&m, o.kind, o.name)
		if got := m.Labels[labelManagedBy]; got != managedByValue {
			t.Errorf("%s/%s: label %s=%q, want %q", o.kind, o.name, labelManagedBy, got, managedByValue)
		}
		ref := metav1.GetControllerOf(&m.ObjectMeta)
		if ref == nil || ref.Kind != o.owner || string(ref.UID) != uids[o.owner] {
			t.Errorf("%s/%s: controller reference %+v, want the %s", o.kind, o.name, ref, o.owner)
		}
	}
	if r := k.kubectl("get", "hpa", clusterName+"-sequence"); r.err == nil {
		t.Errorf("hpa %s-sequence exists, but the sample does not autoscale sequence", clusterName)
	}

	// Deployments: replicas of the sample, every pod Running and Ready (kwok
	// or a real node), the contract's env with the cluster's dependencies.
	wantReplicas := map[string]int32{
		clusterName + "-message": 2, clusterName + "-sequence": 2, clusterName + "-user": 2, poolName + "-gateway": 2,
	}
	for name, want := range wantReplicas {
		var d appsv1.Deployment
		k.mustGet(&d, "deployment", name)
		if d.Spec.Replicas == nil || *d.Spec.Replicas != want {
			t.Errorf("deployment %s: replicas %v, want %d", name, d.Spec.Replicas, want)
		}
		if d.Status.AvailableReplicas != want {
			t.Errorf("deployment %s: %d available, want %d", name, d.Status.AvailableReplicas, want)
		}
		if _, ok := d.Spec.Template.Annotations[labelConfigHash]; ok {
			t.Errorf("deployment %s: %s on the pod template (the ConfigMap is hot-reloaded)", name, labelConfigHash)
		}
		env := containerEnv(d)
		if cfg.mode == modeProcess && env["IMKUBE_ROCKETMQ_NAMESRV"] != cfg.namesrv {
			t.Errorf("deployment %s: IMKUBE_ROCKETMQ_NAMESRV=%q, want %q", name, env["IMKUBE_ROCKETMQ_NAMESRV"], cfg.namesrv)
		}
		for _, key := range []string{"IMKUBE_ADDR", "IMKUBE_REDIS_ADDR", "IMKUBE_CONFIG_FILE", "IMKUBE_JWT_KEY_FILE"} {
			if _, ok := env[key]; !ok {
				t.Errorf("deployment %s: no %s in the container env", name, key)
			}
		}
		pods := podsOf(t, k, d)
		if int32(len(pods)) != want {
			t.Errorf("deployment %s: %d pods, want %d", name, len(pods), want)
		}
		for _, p := range pods {
			if p.Status.Phase != corev1.PodRunning || !podReady(p) {
				t.Errorf("pod %s: phase %s, ready %v", p.Name, p.Status.Phase, podReady(p))
			}
		}
	}

	var svc corev1.Service
	k.mustGet(&svc, "service", poolName+"-gateway")
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 80 || svc.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("gateway service: type %s ports %+v, want ClusterIP port 80", svc.Spec.Type, svc.Spec.Ports)
	}

	var cm corev1.ConfigMap
	k.mustGet(&cm, "configmap", clusterName+"-config")
	for _, key := range []string{"config.json", "sentinel-rules.json"} {
		if cm.Data[key] == "" {
			t.Errorf("configmap %s-config: no %s", clusterName, key)
		}
	}
	if !strings.Contains(strings.ReplaceAll(cm.Data["config.json"], " ", ""), `"sendRatePerSecond":10`) {
		t.Errorf("config.json does not carry the sample's sendRatePerSecond 10:\n%s", cm.Data["config.json"])
	}

	var sec corev1.Secret
	k.mustGet(&sec, "secret", clusterName+"-auth")
	if len(sec.Data["jwt-key"]) == 0 {
		t.Errorf("secret %s-auth: no jwt-key", clusterName)
	}

	// The sample's message autoscaling uses the default provider, KEDA, which
	// this cluster does not have: no autoscaler for message (and no plain HPA
	// either), and the IMCluster says why in Degraded.
	if r := k.kubectl("get", "hpa", clusterName+"-message"); r.err == nil {
		t.Errorf("hpa %s-message exists, but the sample's provider is KEDA", clusterName)
	}
	var hpa autoscalingv2.HorizontalPodAutoscaler
	k.mustGet(&hpa, "hpa", clusterName+"-user")
	if hpa.Spec.MaxReplicas != 6 || hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas != 2 ||
		hpa.Spec.ScaleTargetRef.Name != clusterName+"-user" {
		t.Errorf("hpa %s-user: min %v max %d target %s, want 2..6 on the user deployment",
			clusterName, hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas, hpa.Spec.ScaleTargetRef.Name)
	}
	if c := meta.FindStatusCondition(imc.Status.Conditions, imv1.ConditionDegraded); c == nil ||
		c.Status != metav1.ConditionTrue || c.Reason != imv1.ReasonKEDANotInstalled {
		t.Errorf("imc Degraded = %+v, want True/%s (KEDA is not installed here)", c, imv1.ReasonKEDANotInstalled)
	}
	var pdb policyv1.PodDisruptionBudget
	k.mustGet(&pdb, "pdb", poolName+"-gateway")
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("pdb %s-gateway: maxUnavailable %v, want 1", poolName, pdb.Spec.MaxUnavailable)
	}

	// Status: components and the pool.
	if c := imc.Status.Components.Message; c.Ready != 2 || c.Desired != 2 {
		t.Errorf("imc status message component %+v, want 2/2", c)
	}
	if !isTrue(imc.Status.Conditions, "DependenciesReady") {
		t.Errorf("imc DependenciesReady not True: %s", conditions(imc.Status.Conditions))
	}
	if gwp.Status.ReadyReplicas != 2 || gwp.Status.Selector == "" {
		t.Errorf("gwp status: ready %d selector %q, want 2 and a selector", gwp.Status.ReadyReplicas, gwp.Status.Selector)
	}
}

func containerEnv(d appsv1.Deployment) map[string]string {
	env := map[string]string{}
	if len(d.Spec.Template.Spec.Containers) == 0 {
		return env
	}
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		env[e.Name] = e.Value
	}
	return env
}

// podsOf lists the live (not terminating) pods of a Deployment.
func podsOf(t *testing.T, k *kube, d appsv1.Deployment) []corev1.Pod {
	t.Helper()
	sel := labels.SelectorFromSet(d.Spec.Selector.MatchLabels).String()
	var list corev1.PodList
	k.mustGet(&list, "pods", "-l", sel)
	var pods []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			pods = append(pods, p)
		}
	}
	return pods
}

func podReady(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func checkInvalidRejected(t *testing.T, s *suite, k *kube) {
	tests := []struct {
		name     string
		give     string
		wantCEL  string
		wantKind string
	}{
		{
			name: "autoscaling min above max",
			give: `apiVersion: im.imkube.io/v1alpha1
kind: GatewayPool
metadata: {name: e2e-invalid}
spec:
  clusterRef: {name: ` + clusterName + `}
  autoscaling: {minReplicas: 5, maxReplicas: 2}
`,
			wantCEL: "minReplicas must be less than or equal to maxReplicas",
		},
		{
			name: "replicas and autoscaling",
			give: `apiVersion: im.imkube.io/v1alpha1
kind: GatewayPool
metadata: {name: e2e-invalid}
spec:
  clusterRef: {name: ` + clusterName + `}
  replicas: 2
  autoscaling: {minReplicas: 2, maxReplicas: 4}
`,
			wantCEL: "exactly one of replicas or autoscaling must be set",
		},
		{
			name: "changed clusterRef",
			give: `apiVersion: im.imkube.io/v1alpha1
kind: GatewayPool
metadata: {name: ` + poolName + `}
spec:
  clusterRef: {name: other}
  replicas: 2
`,
			wantCEL: "clusterRef is immutable",
		},
		{
			name: "burst below rate",
			give: `apiVersion: im.imkube.io/v1alpha1
kind: IMCluster
metadata: {name: e2e-invalid}
spec:
  dependencies:
    rocketmq: {nameServers: ["127.0.0.1:9876"]}
    redis: {addresses: ["127.0.0.1:6379"]}
    mysql: {dsnSecretRef: {name: imkube-mysql, key: dsn}}
  limits: {sendRatePerSecond: 50, sendBurst: 10}
`,
			wantCEL: "sendBurst must be at least sendRatePerSecond",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := k.kubectlIn(tt.give, "apply", "-f", "-")
			var exit *exec.ExitError
			if r.err == nil || !asExit(r.err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("kubectl apply: want exit code 1, got %v", r)
			}
			if !strings.Contains(r.stderr, tt.wantCEL) {
				t.Errorf("stderr does not carry the CEL message %q:\n%s", tt.wantCEL, r.stderr)
			}
		})
	}
	for _, kind := range []string{"gwp", "imc"} {
		if r := k.kubectl("get", kind, "e2e-invalid"); r.err == nil {
			t.Errorf("%s e2e-invalid was created", kind)
		}
	}
	var gwp imv1.GatewayPool
	k.mustGet(&gwp, "gwp", poolName)
	if gwp.Spec.ClusterRef.Name != clusterName {
		t.Errorf("gwp clusterRef changed to %q", gwp.Spec.ClusterRef.Name)
	}
}

func asExit(err error, target **exec.ExitError) bool {
	for e := err; e != nil; {
		if x, ok := e.(*exec.ExitError); ok {
			*target = x
			return true
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		e = u.Unwrap()
	}
	return false
}

// changeLimits: a limits change rewrites the ConfigMap (config.json and the
// Sentinel rules, both hot-reloaded by the processes) and rolls no pod.
func changeLimits(t *testing.T, s *suite, k *kube) {
	names := []string{clusterName + "-message", clusterName + "-sequence", clusterName + "-user", poolName + "-gateway"}
	before := map[string]appsv1.Deployment{}
	for _, name := range names {
		var d appsv1.Deployment
		k.mustGet(&d, "deployment", name)
		before[name] = d
	}
	var cmBefore corev1.ConfigMap
	k.mustGet(&cmBefore, "configmap", clusterName+"-config")
	var secBefore corev1.Secret
	k.mustGet(&secBefore, "secret", clusterName+"-auth")

	k.must("patch", "imc", clusterName, "--type", "merge", "-p",
		`{"spec":{"limits":{"sendRatePerSecond":25,"sendBurst":50}}}`)

	eventually(t, 2*time.Minute, "ConfigMap carries the new limits", func() (bool, string, error) {
		var cm corev1.ConfigMap
		k.mustGet(&cm, "configmap", clusterName+"-config")
		c := strings.ReplaceAll(cm.Data["config.json"], " ", "")
		return strings.Contains(c, `"sendRatePerSecond":25`) && strings.Contains(c, `"sendBurst":50`), c, nil
	})
	var cm corev1.ConfigMap
	k.mustGet(&cm, "configmap", clusterName+"-config")
	if cm.Data["sentinel-rules.json"] == cmBefore.Data["sentinel-rules.json"] {
		t.Errorf("sentinel-rules.json unchanged; the gateway.send hotspot rule carries the send rate")
	}
	eventually(t, 2*time.Minute, "the cluster observed the change", func() (bool, string, error) {
		var c imv1.IMCluster
		k.mustGet(&c, "imc", clusterName)
		return c.Status.ObservedGeneration == c.Generation, fmt.Sprintf("observed %d of %d", c.Status.ObservedGeneration, c.Generation), nil
	})
	time.Sleep(3 * time.Second) // the pool reconciles on the cluster's change too
	for _, name := range names {
		var d appsv1.Deployment
		k.mustGet(&d, "deployment", name)
		if d.Generation != before[name].Generation || !equality.Semantic.DeepEqual(d.Spec.Template, before[name].Spec.Template) {
			t.Errorf("deployment %s: a limits change changed the pod template (generation %d -> %d)", name, before[name].Generation, d.Generation)
		}
	}
	var secAfter corev1.Secret
	k.mustGet(&secAfter, "secret", clusterName+"-auth")
	if string(secAfter.Data["jwt-key"]) != string(secBefore.Data["jwt-key"]) {
		t.Errorf("auth secret changed by a limits change")
	}
	waitReady(t, s, k)
}

func scalePool(t *testing.T, s *suite, k *kube) {
	cfg := s.cfg
	const deploy = poolName + "-gateway"
	k.must("scale", "gwp", poolName, "--replicas", "3")
	eventually(t, 2*time.Minute, "gateway deployment scaled to 3", func() (bool, string, error) {
		var d appsv1.Deployment
		k.mustGet(&d, "deployment", deploy)
		return d.Spec.Replicas != nil && *d.Spec.Replicas == 3, fmt.Sprintf("replicas %v", d.Spec.Replicas), nil
	})
	k.rollout(cfg.readyTimeout, deploy)
	eventually(t, 2*time.Minute, "gwp status reports 3 ready", func() (bool, string, error) {
		var gwp imv1.GatewayPool
		k.mustGet(&gwp, "gwp", poolName)
		return gwp.Status.ReadyReplicas == 3 && gwp.Status.Replicas == 3,
			fmt.Sprintf("replicas %d ready %d", gwp.Status.Replicas, gwp.Status.ReadyReplicas), nil
	})
	// Scale back down through the same subresource.
	k.must("scale", "gwp", poolName, "--replicas", "1")
	eventually(t, 2*time.Minute, "gateway deployment scaled to 1", func() (bool, string, error) {
		var d appsv1.Deployment
		k.mustGet(&d, "deployment", deploy)
		return d.Spec.Replicas != nil && *d.Spec.Replicas == 1, fmt.Sprintf("replicas %v", d.Spec.Replicas), nil
	})
	waitReady(t, s, k)
}

func changeVersion(t *testing.T, s *suite, k *kube) {
	cfg := s.cfg
	const version = "e2e-next"
	deploys := []string{clusterName + "-message", clusterName + "-sequence", clusterName + "-user", poolName + "-gateway"}
	k.must("patch", "imc", clusterName, "--type", "merge", "-p", `{"spec":{"version":"`+version+`"}}`)
	eventually(t, 2*time.Minute, "deployments use the new image tag", func() (bool, string, error) {
		var old []string
		for _, name := range deploys {
			var d appsv1.Deployment
			k.mustGet(&d, "deployment", name)
			if img := d.Spec.Template.Spec.Containers[0].Image; !strings.HasSuffix(img, ":"+version) {
				old = append(old, name+"="+img)
			}
		}
		return len(old) == 0, fmt.Sprintf("old images: %v", old), nil
	})
	if cfg.mode == modeInCluster {
		// No such image exists on a real node: the rollout cannot finish (and,
		// with maxUnavailable 0, the old pods keep serving). The spec is what we check.
		return
	}
	for _, name := range deploys {
		k.rollout(cfg.readyTimeout, name)
	}
	var imc imv1.IMCluster
	eventually(t, 2*time.Minute, "imc status reports the new image", func() (bool, string, error) {
		k.mustGet(&imc, "imc", clusterName)
		return strings.HasSuffix(imc.Status.Image, ":"+version), "image " + imc.Status.Image, nil
	})
	waitReady(t, s, k)
}

func deleteCluster(t *testing.T, s *suite, k *kube) {
	// Objects the IMCluster does not own must survive: an unrelated ConfigMap,
	// the generated auth Secret (deliberately not owned), the chart's operator.
	k.mustIn(`apiVersion: v1
kind: ConfigMap
metadata: {name: e2e-unrelated, labels: {app.kubernetes.io/instance: `+clusterName+`}}
data: {keep: "yes"}
`, "apply", "-f", "-")

	r := k.exec(3*time.Minute, "", "kubectl", "-n", namespace, "delete", "imc", clusterName, "--wait", "--timeout", "2m")
	if r.err != nil {
		t.Fatalf("kubectl delete imc: %v", r)
	}
	waitGone(t, k, func(o ownedObject) bool { return o.owner == "IMCluster" })

	var cm corev1.ConfigMap
	k.mustGet(&cm, "configmap", "e2e-unrelated")
	if cm.Data["keep"] != "yes" {
		t.Errorf("unrelated configmap changed: %v", cm.Data)
	}
	k.mustGet(&corev1.Secret{}, "secret", clusterName+"-auth")
	k.mustGet(&appsv1.Deployment{}, "deployment", release+"-operator")
	// The pool is not owned by the cluster: it stays and reports the missing cluster.
	eventually(t, 2*time.Minute, "pool reports ClusterNotFound", func() (bool, string, error) {
		var gwp imv1.GatewayPool
		k.mustGet(&gwp, "gwp", poolName)
		for _, c := range gwp.Status.Conditions {
			if c.Type == "Ready" {
				return c.Status == metav1.ConditionFalse && c.Reason == "ClusterNotFound", conditions(gwp.Status.Conditions), nil
			}
		}
		return false, "no Ready condition", nil
	})

	r = k.exec(3*time.Minute, "", "kubectl", "-n", namespace, "delete", "gwp", poolName, "--wait", "--timeout", "2m")
	if r.err != nil {
		t.Fatalf("kubectl delete gwp: %v", r)
	}
	waitGone(t, k, func(o ownedObject) bool { return o.owner == "GatewayPool" })
	eventually(t, 2*time.Minute, "all owned pods gone", func() (bool, string, error) {
		var pods corev1.PodList
		k.mustGet(&pods, "pods", "-l", labelManagedBy+"="+managedByValue)
		return len(pods.Items) == 0, fmt.Sprintf("%d pods left", len(pods.Items)), nil
	})
	k.mustGet(&cm, "configmap", "e2e-unrelated")
}

// waitGone waits until the garbage collector removed the selected owned objects.
func waitGone(t *testing.T, k *kube, sel func(ownedObject) bool) {
	t.Helper()
	objs := slices.DeleteFunc(ownedObjects(), func(o ownedObject) bool { return !sel(o) })
	eventually(t, 3*time.Minute, "owned objects garbage-collected", func() (bool, string, error) {
		var left []string
		for _, o := range objs {
			var m struct {
				metav1.ObjectMeta `json:"metadata"`
			}
			found, err := k.get(&m, o.kind, o.name)
			if err != nil {
				return false, "", err
			}
			if found {
				left = append(left, o.kind+"/"+o.name)
			}
		}
		return len(left) == 0, fmt.Sprintf("left: %v", left), nil
	})
}

// dumpState describes the namespace for a failure message.
func dumpState(k *kube) string {
	var b strings.Builder
	for _, args := range [][]string{
		{"get", "imc,gwp,deploy,rs,pods,svc,cm,hpa,pdb,lease", "-o", "wide"},
		{"get", "events", "--sort-by", ".lastTimestamp"},
	} {
		r := k.kubectl(args...)
		fmt.Fprintf(&b, "$ kubectl -n %s %s\n%s%s\n", namespace, strings.Join(args, " "), r.stdout, r.stderr)
	}
	return b.String()
}

// ---- helpers --------------------------------------------------------------------

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
