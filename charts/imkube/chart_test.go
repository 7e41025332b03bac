// Package chart_test checks the Helm chart: helm lint, helm template with the
// default and the full values (rendered objects parse strictly into their Go
// types and match the golden files in testdata/), the pod security of every
// workload, and that the chart's CRDs are the generated ones.
//
// helm comes from hack/helm.sh (IMKUBE_HELM, set by `make test`). Update the
// golden files (manifests/imkube-operator.yaml, testdata/full.golden.yaml)
// with `make generate`, or: go test ./charts/imkube -run Golden -update
package chart_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
	"github.com/imkube/imkube/internal/testenv"
	"github.com/imkube/imkube/operator/gatewaypool"
	"github.com/imkube/imkube/operator/imcluster"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const (
	release   = "imkube"
	namespace = "imkube-system"
)

func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin := testenv.Require(t, "IMKUBE_HELM")
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

func TestChartLintsWithDefaultAndFullValues(t *testing.T) {
	tests := []struct {
		name string
		give []string
	}{
		{name: "default values", give: nil},
		{name: "full values", give: []string{"-f", "ci/full-values.yaml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := helm(t, append([]string{"lint", "--strict", "."}, tt.give...)...)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	}
}

// render runs helm template and decodes every document.
func render(t *testing.T, values ...string) (string, []*unstructured.Unstructured) {
	t.Helper()
	out, err := helm(t, append([]string{"template", release, ".", "--namespace", namespace}, values...)...)
	if err != nil {
		t.Fatal(err)
	}
	return out, decodeAll(t, out)
}

func decodeAll(t *testing.T, manifest string) []*unstructured.Unstructured {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufioReader(manifest))
	var objs []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read rendered YAML: %v", err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			t.Fatalf("rendered document is not YAML: %v\n%s", err, doc)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetAPIVersion() == "" || u.GetKind() == "" || u.GetName() == "" {
			t.Fatalf("rendered object lacks apiVersion, kind or metadata.name:\n%s", doc)
		}
		objs = append(objs, u)
	}
	return objs
}

func newScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := imv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

// typed decodes u strictly (unknown fields are errors) into its Go type; kinds
// outside the scheme (ServiceMonitor) return nil.
func typed(t *testing.T, s *runtime.Scheme, u *unstructured.Unstructured) runtime.Object {
	t.Helper()
	gvk := u.GroupVersionKind()
	if !s.Recognizes(gvk) {
		return nil
	}
	obj, err := s.New(gvk)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := yaml.Marshal(u.Object)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(raw, obj); err != nil {
		t.Errorf("%s %s does not parse as %T: %v", gvk.Kind, u.GetName(), obj, err)
	}
	return obj
}

func TestChartRendersTheGoldenManifests(t *testing.T) {
	tests := []struct {
		name   string
		give   []string
		golden string
		// wantKinds counts the rendered objects by kind.
		wantKinds map[string]int
	}{
		{
			// The default render is also the kubectl install path (docs/install.md).
			name:   "default values install only the operator",
			golden: "manifests/imkube-operator.yaml",
			wantKinds: map[string]int{"ServiceAccount": 1, "ClusterRole": 1, "ClusterRoleBinding": 1, "Role": 1,
				"RoleBinding": 1, "Service": 1, "Deployment": 1, "NetworkPolicy": 1},
		},
		{
			name:   "full values add monitoring, the example and the demo dependencies",
			give:   []string{"-f", "ci/full-values.yaml"},
			golden: "testdata/full.golden.yaml",
			wantKinds: map[string]int{"ServiceAccount": 1, "ClusterRole": 1, "ClusterRoleBinding": 1, "Role": 1,
				"RoleBinding": 1, "Service": 6, "Deployment": 1, "ServiceMonitor": 1, "ConfigMap": 6, "Secret": 2,
				"StatefulSet": 5, "IMCluster": 1, "GatewayPool": 1, "NetworkPolicy": 1, "PodDisruptionBudget": 1,
				"PrometheusRule": 1},
		},
	}
	s := newScheme(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, objs := render(t, tt.give...)
			kinds := map[string]int{}
			for _, u := range objs {
				kinds[u.GetKind()]++
				typed(t, s, u)
			}
			if fmt.Sprint(kinds) != fmt.Sprint(tt.wantKinds) {
				t.Errorf("rendered kinds = %v, want %v", kinds, tt.wantKinds)
			}
			golden := tt.golden
			if *update {
				if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if out != string(want) {
				t.Errorf("helm template differs from %s (run with -update and review the diff):\n%s", golden, firstDiff(string(want), out))
			}
		})
	}
}

func TestOperatorDeploymentRunsTheChartImageRestricted(t *testing.T) {
	_, objs := render(t)
	s := newScheme(t)
	var dep *appsv1.Deployment
	for _, u := range objs {
		if u.GetKind() == "Deployment" {
			dep = typed(t, s, u).(*appsv1.Deployment)
		}
	}
	if dep == nil {
		t.Fatal("no Deployment rendered")
	}
	appVersion := chartAppVersion(t)
	c := dep.Spec.Template.Spec.Containers[0]
	if want := "ghcr.io/imkube/imkube:" + appVersion; c.Image != want {
		t.Errorf("image = %q, want %q (tag defaults to appVersion)", c.Image, want)
	}
	if want := []string{"operator", "--leader-elect"}; !slices.Equal(c.Args, want) {
		t.Errorf("args = %v, want %v", c.Args, want)
	}
	if dep.Namespace != namespace || dep.Spec.Template.Spec.ServiceAccountName != "imkube-operator" {
		t.Errorf("namespace %q, service account %q", dep.Namespace, dep.Spec.Template.Spec.ServiceAccountName)
	}
	psc := dep.Spec.Template.Spec.SecurityContext
	if psc == nil || psc.RunAsUser == nil || *psc.RunAsUser != 65532 {
		t.Errorf("pod does not run as uid 65532: %+v", psc)
	}
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("operator root filesystem is not read-only: %+v", sc)
	}
	var tmp bool
	for _, m := range c.VolumeMounts {
		tmp = tmp || m.MountPath == "/tmp"
	}
	if !tmp {
		t.Error("no writable /tmp mounted for the read-only root filesystem")
	}
	var home string
	for _, e := range c.Env {
		if e.Name == "HOME" {
			home = e.Value
		}
	}
	if home != "/tmp" {
		t.Errorf("HOME = %q, want /tmp (the writable emptyDir; the image has no home folder)", home)
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Error("probes are not /healthz and /readyz")
	}

	custom, _ := render(t, "--set", "image.repository=registry.example.com/im/imkube", "--set", "image.tag=1.2.3")
	if !strings.Contains(custom, `image: "registry.example.com/im/imkube:1.2.3"`) {
		t.Error("image.repository/image.tag do not set the operator image")
	}
}

// Every container of every workload meets the restricted Pod Security
// Standard; the operator (and everything but the JVM/database demo
// dependencies) also has a read-only root filesystem.
func TestEveryWorkloadMeetsTheRestrictedPodSecurityStandard(t *testing.T) {
	_, objs := render(t, "-f", "ci/full-values.yaml")
	s := newScheme(t)
	var n int
	for _, u := range objs {
		var spec *corev1.PodSpec
		switch o := typed(t, s, u).(type) {
		case *appsv1.Deployment:
			spec = &o.Spec.Template.Spec
		case *appsv1.StatefulSet:
			spec = &o.Spec.Template.Spec
		default:
			continue
		}
		n++
		psc := spec.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s %s: pod security context %+v is not runAsNonRoot with seccomp RuntimeDefault", u.GetKind(), u.GetName(), psc)
		}
		for _, c := range spec.Containers {
			sc := c.SecurityContext
			if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
				t.Errorf("%s %s container %s: %+v does not forbid privilege escalation and drop ALL", u.GetKind(), u.GetName(), c.Name, sc)
			}
			if c.Resources.Requests.Memory().IsZero() {
				t.Errorf("%s %s container %s has no memory request", u.GetKind(), u.GetName(), c.Name)
			}
		}
	}
	if n != 6 {
		t.Errorf("checked %d workloads, want 6 (operator, redis, mysql, rocketmq name server and broker, s3)", n)
	}
}

func TestClusterRoleGrantsWhatTheOperatorManages(t *testing.T) {
	_, objs := render(t)
	s := newScheme(t)
	var role *rbacv1.ClusterRole
	for _, u := range objs {
		if u.GetKind() == "ClusterRole" {
			role = typed(t, s, u).(*rbacv1.ClusterRole)
		}
	}
	if role == nil {
		t.Fatal("no ClusterRole rendered")
	}
	tests := []struct {
		group, resource, verb string
	}{
		{"im.imkube.io", "imclusters", "watch"},
		{"im.imkube.io", "gatewaypools", "watch"},
		{"im.imkube.io", "imclusters/status", "patch"},
		{"im.imkube.io", "gatewaypools/status", "patch"},
		{"apps", "deployments", "patch"},
		{"", "services", "patch"},
		{"", "configmaps", "patch"},
		{"", "secrets", "create"},
		{"", "pods", "watch"}, // Degraded names why a component's pods do not run
		{"", "events", "create"},
		{"autoscaling", "horizontalpodautoscalers", "patch"},
		{"policy", "poddisruptionbudgets", "patch"},
		{"networking.k8s.io", "networkpolicies", "patch"},
		{"networking.k8s.io", "networkpolicies", "delete"}, // networkPolicy.enabled: false
		{"networking.k8s.io", "networkpolicies", "watch"},
	}
	for _, tt := range tests {
		if !allows(role.Rules, tt.group, tt.resource, tt.verb) {
			t.Errorf("ClusterRole does not allow %s on %s.%s", tt.verb, tt.resource, tt.group)
		}
	}
	if allows(role.Rules, "", "nodes", "get") || allows(role.Rules, "*", "*", "*") ||
		allows(role.Rules, "networking.k8s.io", "networkpolicies", "update") || allows(role.Rules, "networking.k8s.io", "networkpolicies", "deletecollection") {
		t.Error("ClusterRole grants more than the operator manages")
	}
}

func allows(rules []rbacv1.PolicyRule, group, resource, verb string) bool {
	for _, r := range rules {
		if (slices.Contains(r.APIGroups, group) || slices.Contains(r.APIGroups, "*")) &&
			(slices.Contains(r.Resources, resource) || slices.Contains(r.Resources, "*")) &&
			(slices.Contains(r.Verbs, verb) || slices.Contains(r.Verbs, "*")) {
			return true
		}
	}
	return false
}

func TestExampleWithoutDependenciesNeedsTheirAddresses(t *testing.T) {
	_, err := helm(t, "template", release, ".", "--set", "example.enabled=true")
	if err == nil || !strings.Contains(err.Error(), "example.rocketmq.nameServers is required") {
		t.Fatalf("err = %v, want the required-value message", err)
	}
	out, err := helm(t, "template", release, ".", "--namespace", namespace,
		"--set", "example.enabled=true",
		"--set", "example.rocketmq.nameServers={mq-0:9876}",
		"--set", "example.redis.addresses={redis:6379}",
		"--set", "example.mysql.dsnSecretRef.name=db", "--set", "example.mysql.dsnSecretRef.key=dsn")
	if err != nil {
		t.Fatal(err)
	}
	s := newScheme(t)
	for _, u := range decodeAll(t, out) {
		if c, ok := typed(t, s, u).(*imv1.IMCluster); ok {
			if got := c.Spec.Dependencies.MySQL.DSNSecretRef; got.Name != "db" || got.Key != "dsn" {
				t.Errorf("dsnSecretRef = %+v", got)
			}
			if got := c.Spec.Dependencies.RocketMQ.NameServers; !slices.Equal(got, []string{"mq-0:9876"}) {
				t.Errorf("nameServers = %v", got)
			}
			return
		}
	}
	t.Error("no IMCluster rendered")
}

func TestDashboardConfigMapsCarryEveryDashboardForTheGrafanaSidecar(t *testing.T) {
	_, objs := render(t, "--set", "dashboards.enabled=true")
	files, err := filepath.Glob("dashboards/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards: %v", err)
	}
	var got []string
	for _, u := range objs {
		if u.GetKind() != "ConfigMap" || u.GetLabels()["grafana_dashboard"] != "1" {
			continue
		}
		data, _, _ := unstructured.NestedStringMap(u.Object, "data")
		for k, v := range data {
			want, err := os.ReadFile(filepath.Join("dashboards", strings.TrimPrefix(k, "imkube-")))
			if err != nil {
				t.Fatalf("ConfigMap key %s has no dashboard file: %v", k, err)
			}
			if strings.TrimSpace(v) != strings.TrimSpace(string(want)) {
				t.Errorf("ConfigMap key %s differs from its dashboard file", k)
			}
			got = append(got, k)
		}
	}
	if len(got) != len(files) {
		t.Errorf("dashboard ConfigMap keys %v, want one per file in %v", got, files)
	}
}

// The chart's CRDs and RBAC rules must be the generated ones (`make generate`
// copies them: sync-chart-crds in hack/mk/chart.mk).
func TestChartCRDsAreTheGeneratedOnes(t *testing.T) {
	generated, err := filepath.Glob("../../crds/*.yaml")
	if err != nil || len(generated) == 0 {
		t.Fatalf("no generated CRDs in crds/: %v", err)
	}
	inChart, err := filepath.Glob("crds/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, g := range generated {
		names = append(names, filepath.Base(g))
		assertSameFile(t, g, filepath.Join("crds", filepath.Base(g)))
	}
	for _, c := range inChart {
		if !slices.Contains(names, filepath.Base(c)) {
			t.Errorf("charts/imkube/%s is not in crds/: run `make generate`", c)
		}
	}
	if _, err := os.Stat("../../operator/rbac/role.yaml"); err == nil {
		assertSameFile(t, "../../operator/rbac/role.yaml", "files/operator-role.yaml")
	}
}

func assertSameFile(t *testing.T, want, got string) {
	t.Helper()
	w, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	g, err := os.ReadFile(got)
	if err != nil {
		t.Errorf("charts/imkube/%s: %v: run `make generate`", got, err)
		return
	}
	if !bytes.Equal(w, g) {
		t.Errorf("charts/imkube/%s differs from %s: run `make generate`", got, strings.TrimPrefix(want, "../../"))
	}
}

func chartAppVersion(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile("Chart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return c.AppVersion
}

// firstDiff shows the first differing line with a little context.
func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := range max(len(w), len(g)) {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d:\n want: %s\n  got: %s", i+1, wl, gl)
		}
	}
	return "(only trailing differences)"
}

// helm template does not render NOTES.txt, so the test renders a copy of the
// chart in which NOTES.txt is wrapped into a ConfigMap.
func TestNotesTellHowToConnectAClient(t *testing.T) {
	tests := []struct {
		name string
		give []string
		want []string
	}{
		{name: "default values point at the samples", give: nil,
			want: []string{"crds/samples/imcluster.yaml", "port-forward", "ws://localhost:8080/ws", "/api/v1/sessions"}},
		{name: "full values name the example and warn about the demo dependencies", give: []string{"-f", "ci/full-values.yaml"},
			want: []string{"imc/chat gwp/chat-edge", "ws://localhost:8080/ws", "Production should use managed"}},
	}
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(".")); err != nil {
		t.Fatal(err)
	}
	notes, err := os.ReadFile("templates/NOTES.txt")
	if err != nil {
		t.Fatal(err)
	}
	wrapped := "{{- define \"test.notes\" }}" + string(notes) + "{{- end }}\n" +
		"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: {{ include \"test.notes\" . | quote }}\n"
	if err := os.Remove(filepath.Join(dir, "templates", "NOTES.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "templates", "notes-test.yaml"), []byte(wrapped), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"template", release, dir, "--namespace", namespace, "--show-only", "templates/notes-test.yaml"}, tt.give...)
			for i, a := range args {
				if a == "ci/full-values.yaml" {
					args[i] = filepath.Join(dir, a)
				}
			}
			out, err := helm(t, args...)
			if err != nil {
				t.Fatal(err)
			}
			objs := decodeAll(t, out)
			text, _, _ := unstructured.NestedString(objs[0].Object, "data", "notes")
			for _, w := range tt.want {
				if !strings.Contains(text, w) {
					t.Errorf("NOTES.txt lacks %q:\n%s", w, text)
				}
			}
		})
	}
}

// The prometheus-adapter rules must serve the metrics the operator's HPAs ask
// for: the gateway Pods metric and the message service External metric.
func TestAdapterRulesServeTheOperatorsHPAMetrics(t *testing.T) {
	_, objs := render(t, "--set", "prometheusAdapter.enabled=true")
	var cfg struct {
		Rules []struct {
			Name struct {
				As string `json:"as"`
			} `json:"name"`
		} `json:"rules"`
		ExternalRules []struct {
			Name struct {
				As string `json:"as"`
			} `json:"name"`
		} `json:"externalRules"`
	}
	found := false
	for _, u := range objs {
		if u.GetKind() != "ConfigMap" || !strings.HasSuffix(u.GetName(), "-prometheus-adapter-rules") {
			continue
		}
		raw, _, _ := unstructured.NestedString(u.Object, "data", "config.yaml")
		if err := yaml.Unmarshal([]byte(raw), &cfg); err != nil {
			t.Fatalf("config.yaml: %v", err)
		}
		found = true
	}
	if !found {
		t.Fatal("no prometheus-adapter rules ConfigMap")
	}
	if len(cfg.Rules) != 1 || cfg.Rules[0].Name.As != gatewaypool.ConnectionsMetric {
		t.Errorf("custom (Pods) rules %+v, want one serving %s", cfg.Rules, gatewaypool.ConnectionsMetric)
	}
	if len(cfg.ExternalRules) != 1 || cfg.ExternalRules[0].Name.As != imcluster.ConsumerLagMetric {
		t.Errorf("external rules %+v, want one serving %s", cfg.ExternalRules, imcluster.ConsumerLagMetric)
	}
}

// The operator pod's NetworkPolicy lets only the monitoring namespaces in
// (metrics port); restrictEgress without egress rules fails the render
// instead of cutting the operator off its API server.
func TestOperatorNetworkPolicyAdmitsOnlyMonitoring(t *testing.T) {
	_, objs := render(t)
	var np *unstructured.Unstructured
	for _, u := range objs {
		if u.GetKind() == "NetworkPolicy" {
			np = u
		}
	}
	if np == nil {
		t.Fatal("no NetworkPolicy for the operator in the default render")
	}
	ingress, _, _ := unstructured.NestedSlice(np.Object, "spec", "ingress")
	if len(ingress) != 1 {
		t.Fatalf("ingress rules %v, want one (metrics from monitoring)", ingress)
	}
	rule := ingress[0].(map[string]any)
	from := rule["from"].([]any)[0].(map[string]any)
	sel, _, _ := unstructured.NestedStringMap(from, "namespaceSelector", "matchLabels")
	port := rule["ports"].([]any)[0].(map[string]any)["port"]
	if sel["kubernetes.io/metadata.name"] != "monitoring" || port != "metrics" {
		t.Errorf("ingress %v: want port metrics from namespace monitoring", rule)
	}
	if types, _, _ := unstructured.NestedStringSlice(np.Object, "spec", "policyTypes"); len(types) != 1 {
		t.Errorf("policyTypes %v: egress stays open by default", types)
	}
	out, err := helm(t, "template", "x", ".", "--set", "networkPolicy.restrictEgress=true")
	if err == nil || !strings.Contains(out+err.Error(), "networkPolicy.restrictEgress needs networkPolicy.egress") {
		t.Errorf("restrictEgress without egress rendered (err %v): %s", err, out)
	}
}
