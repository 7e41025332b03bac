package chart_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
	"github.com/imkube/imkube/operator"
	"github.com/imkube/imkube/operator/gatewaypool"
	"github.com/imkube/imkube/operator/imcluster"
)

// repoRoot is the module root (this package is charts/imkube).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// valuesFiles are the chart's ci/*.yaml: every one is linted, rendered and
// its operator arguments parsed.
func valuesFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("ci/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("ci/*.yaml: %v (%d files)", err, len(files))
	}
	return files
}

// The operator Deployment of every values file starts the operator with
// arguments its flag set accepts: a flag the operator does not define makes
// it exit at start (CrashLoopBackOff).
func TestOperatorAcceptsTheArgumentsOfEveryValuesFile(t *testing.T) {
	s := newScheme(t)
	cases := [][]string{nil}
	for _, f := range valuesFiles(t) {
		cases = append(cases, []string{"-f", f})
	}
	for _, give := range cases {
		t.Run(strings.Join(append([]string{"values"}, give...), " "), func(t *testing.T) {
			_, objs := render(t, give...)
			var n int
			for _, u := range objs {
				d, ok := typed(t, s, u).(*appsv1.Deployment)
				if !ok {
					continue
				}
				for _, c := range d.Spec.Template.Spec.Containers {
					if len(c.Args) == 0 || c.Args[0] != "operator" {
						continue
					}
					n++
					if _, err := operator.ParseFlags(c.Args[1:], io.Discard); err != nil {
						t.Errorf("Deployment %s runs `imkube %s`: %v", d.Name, strings.Join(c.Args, " "), err)
					}
				}
			}
			if n != 1 {
				t.Errorf("%d operator containers rendered, want 1", n)
			}
		})
	}
}

// objectKey is kind/name (every object of the docs' flows shares one namespace).
type objectKey struct{ kind, name string }

// sampleObjects are the objects of crds/samples/*.yaml and the objects the
// operator creates for them.
func sampleObjects(t *testing.T) ([]*unstructured.Unstructured, *imv1.IMCluster, *imv1.GatewayPool) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "crds", "samples", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("crds/samples: %v", err)
	}
	var objs []*unstructured.Unstructured
	var c *imv1.IMCluster
	var p *imv1.GatewayPool
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range decodeAll(t, string(raw)) {
			objs = append(objs, u)
			b, _ := yaml.Marshal(u.Object)
			switch u.GetKind() {
			case "IMCluster":
				c = &imv1.IMCluster{}
				if err := yaml.UnmarshalStrict(b, c); err != nil {
					t.Fatalf("%s: %v", f, err)
				}
			case "GatewayPool":
				p = &imv1.GatewayPool{}
				if err := yaml.UnmarshalStrict(b, p); err != nil {
					t.Fatalf("%s: %v", f, err)
				}
			}
		}
	}
	if c == nil || p == nil {
		t.Fatal("crds/samples lacks the IMCluster or the GatewayPool")
	}
	return objs, c, p
}

// operatorObjects are what the operator creates for cluster c and pool p
// (the auth Secret and the ConfigMap by name; the workloads as rendered).
func operatorObjects(c *imv1.IMCluster, p *imv1.GatewayPool) []objectKey {
	keys := []objectKey{{"Secret", c.Name + "-auth"}, {"ConfigMap", c.Name + "-config"}}
	for _, d := range imcluster.DesiredDeployments(c, "test") {
		keys = append(keys, objectKey{"Deployment", d.Name}, objectKey{"PodDisruptionBudget", d.Name},
			objectKey{"HorizontalPodAutoscaler", d.Name})
	}
	for _, s := range imcluster.DesiredServices(c) {
		keys = append(keys, objectKey{"Service", s.Name})
	}
	gw := gatewaypool.DesiredDeployment(p, c, "test")
	return append(keys, objectKey{"Deployment", gw.Name}, objectKey{"Service", gatewaypool.DesiredService(p, c).Name},
		objectKey{"PodDisruptionBudget", gw.Name}, objectKey{"HorizontalPodAutoscaler", gw.Name})
}

// docs/install.md applies the samples in the namespace of a chart release
// with the demo dependencies: a sample object (or an object the operator
// creates for the samples) with the name of a chart object overwrites it,
// and `helm upgrade` overwrites it back.
func TestSamplesDoNotCollideWithChartObjects(t *testing.T) {
	samples, c, p := sampleObjects(t)
	var ours []objectKey
	for _, u := range samples {
		ours = append(ours, objectKey{u.GetKind(), u.GetName()})
	}
	ours = append(ours, operatorObjects(c, p)...)
	cases := [][]string{nil, {"--set", "dependencies.enabled=true"}}
	for _, f := range valuesFiles(t) {
		cases = append(cases, []string{"-f", f})
	}
	for _, give := range cases {
		_, objs := render(t, give...)
		for _, u := range objs {
			k := objectKey{u.GetKind(), u.GetName()}
			if slices.Contains(ours, k) {
				t.Errorf("values %v: the chart's %s %q has the name of a sample object (or of one the operator creates for the samples)",
					give, k.kind, k.name)
			}
		}
	}
}

// The chart claims the oldest Kubernetes its objects (and the operator's)
// work on; the docs say the same.
func TestChartClaimsTheKubernetesVersionItsObjectsNeed(t *testing.T) {
	raw, err := os.ReadFile("Chart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var chart struct {
		KubeVersion string `json:"kubeVersion"`
	}
	if err := yaml.Unmarshal(raw, &chart); err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`^>=\s*1\.(\d+)\.0(-0)?$`).FindStringSubmatch(chart.KubeVersion)
	if m == nil {
		t.Fatalf("kubeVersion %q: want >=1.<minor>.0-0", chart.KubeVersion)
	}
	claimed, _ := strconv.Atoi(m[1])

	// The newest feature the rendered objects use decides the minimum.
	need, why := 25, "PodDisruptionBudget policy/v1, HPA autoscaling/v2"
	_, c, p := sampleObjects(t)
	gw := gatewaypool.DesiredDeployment(p, c, "test")
	for _, ctr := range gw.Spec.Template.Spec.Containers {
		if l := ctr.Lifecycle; l != nil && l.PreStop != nil && l.PreStop.Sleep != nil {
			need, why = 30, "the gateway's preStop sleep action (PodLifecycleSleepAction, on by default since 1.30)"
		}
	}
	if claimed < need {
		t.Errorf("Chart.yaml kubeVersion %q, but the objects need 1.%d: %s", chart.KubeVersion, need, why)
	}
	doc, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "install.md"))
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("Kubernetes 1.%d or newer", claimed); !strings.Contains(string(doc), want) {
		t.Errorf("docs/install.md does not say %q (the chart's kubeVersion)", want)
	}
}

// shellBlocks returns the commands of the ```sh blocks of a Markdown file
// (continuation lines joined, comments dropped), and the blocks following a
// `<!-- quickstart` comment separately.
func shellBlocks(t *testing.T, path string) (cmds []string, quickstart [][]string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var in, quick bool
	var block []string
	var cur string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case !in && strings.HasPrefix(line, "<!-- quickstart"):
			quick = true
		case !in && line == "```sh":
			in, block = true, nil
		case in && line == "```":
			in = false
			cmds = append(cmds, block...)
			if quick {
				quickstart = append(quickstart, block)
			}
			quick = false
		case in:
			l := strings.TrimSpace(line)
			if l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			if c, ok := strings.CutSuffix(l, "\\"); ok {
				cur += c
				continue
			}
			block = append(block, cur+l)
			cur = ""
		case strings.TrimSpace(line) != "":
			quick = quick && strings.HasPrefix(line, "<!--")
		}
	}
	return cmds, quickstart
}

// splitArgs splits a command line on spaces, honouring single quotes (what
// the docs' commands use).
func splitArgs(s string) []string {
	var args []string
	var b strings.Builder
	var quoted, have bool
	for _, r := range s {
		switch {
		case r == '\'':
			quoted, have = !quoted, true
		case r == ' ' && !quoted:
			if have {
				args = append(args, b.String())
			}
			b.Reset()
			have = false
		default:
			b.WriteRune(r)
			have = true
		}
	}
	if have {
		args = append(args, b.String())
	}
	return args
}

// docState is what the commands of a page have created so far, per namespace.
type docState struct {
	objects   map[string][]*unstructured.Unstructured // namespace -> objects
	forwarded map[string]bool                         // local ports forwarded
}

// flagValue returns the value of -n/--namespace style flags.
func flagValue(args []string, names ...string) string {
	for i, a := range args {
		for _, n := range names {
			if a == n && i+1 < len(args) {
				return args[i+1]
			}
			if v, ok := strings.CutPrefix(a, n+"="); ok {
				return v
			}
		}
	}
	return ""
}

// TestEveryInstallCommandWorksOnTheRenderedObjects runs every command of
// docs/install.md, README.md's Kubernetes section and the chart's README
// against what it would act on: helm commands render with the same values,
// applied files exist and parse, waited-for and forwarded objects are the
// ones the earlier commands (or the operator, for the samples) create, and a
// forwarded port is a port of that Service. An unknown command fails the
// test: a new command needs a check here.
func TestEveryInstallCommandWorksOnTheRenderedObjects(t *testing.T) {
	root := repoRoot(t)
	for _, doc := range []string{"docs/install.md", "README.md", "charts/imkube/README.md"} {
		t.Run(doc, func(t *testing.T) {
			cmds, quick := shellBlocks(t, filepath.Join(root, doc))
			if doc == "README.md" { // only its Kubernetes section
				cmds = slices.Concat(quick...)
			}
			if len(cmds) == 0 {
				t.Fatal("no ```sh blocks")
			}
			st := &docState{objects: map[string][]*unstructured.Unstructured{}, forwarded: map[string]bool{}}
			for _, line := range cmds {
				checkDocCommand(t, root, st, line)
			}
		})
	}
}

func checkDocCommand(t *testing.T, root string, st *docState, line string) {
	t.Helper()
	args := splitArgs(line)
	ns := flagValue(args, "-n", "--namespace")
	fail := func(format string, a ...any) { t.Errorf("%q: %s", line, fmt.Sprintf(format, a...)) }
	has := func(ns, kind, name string) *unstructured.Unstructured {
		for _, u := range st.objects[ns] {
			if u.GetKind() == kind && u.GetName() == name {
				return u
			}
		}
		return nil
	}
	switch {
	case args[0] == "helm" && (args[1] == "install" || args[1] == "upgrade" || args[1] == "template"):
		// Render what the command installs, with the same values.
		if args[3] != "charts/imkube" {
			fail("expected the chart path charts/imkube as the second argument")
			return
		}
		targs := []string{"template", args[2], root + "/charts/imkube", "--namespace", ns}
		for i := 4; i < len(args); i++ {
			switch a := args[i]; {
			case a == "--set" || a == "-f" || a == "--values":
				v := args[i+1]
				if a != "--set" {
					v = filepath.Join(root, v)
				}
				targs = append(targs, a, v)
				i++
			case a == "-n" || a == "--namespace" || a == "--timeout":
				i++
			case a == "--create-namespace" || a == "--wait":
			default:
				fail("unknown helm argument %q", a)
			}
		}
		out, err := helm(t, targs...)
		if err != nil {
			fail("%v", err)
			return
		}
		for _, u := range decodeAll(t, out) {
			u.SetNamespace(ns)
			st.objects[ns] = append(st.objects[ns], u)
		}
		addOperatorObjects(t, st, ns)
	case args[0] == "kubectl" && slices.Contains(args, "apply"):
		for i, a := range args {
			if a != "-f" {
				continue
			}
			path := filepath.Join(root, args[i+1])
			files := []string{path}
			if fi, err := os.Stat(path); err != nil {
				fail("%v", err)
				continue
			} else if fi.IsDir() {
				files, _ = filepath.Glob(filepath.Join(path, "*.yaml"))
			}
			for _, f := range files {
				raw, err := os.ReadFile(f)
				if err != nil {
					fail("%v", err)
					continue
				}
				for _, u := range decodeAll(t, string(raw)) {
					if u.GetNamespace() == "" {
						u.SetNamespace(ns)
					}
					st.objects[u.GetNamespace()] = append(st.objects[u.GetNamespace()], u)
				}
			}
			addOperatorObjects(t, st, ns)
		}
	case args[0] == "kubectl" && slices.Contains(args, "wait"):
		for _, a := range args[1:] {
			kind, name, ok := strings.Cut(a, "/")
			if !ok || strings.HasPrefix(a, "-") {
				continue
			}
			kinds := map[string]string{"imc": "IMCluster", "gwp": "GatewayPool", "deployment": "Deployment", "crd": "CustomResourceDefinition"}
			if kinds[kind] == "" {
				fail("unknown kind %q", kind)
			} else if kind != "crd" && has(ns, kinds[kind], name) == nil {
				fail("waits for %s %s, which the earlier commands do not create in namespace %q", kinds[kind], name, ns)
			}
		}
	case args[0] == "kubectl" && slices.Contains(args, "rollout"):
		name, _ := strings.CutPrefix(args[len(args)-1], "deployment/")
		if has(ns, "Deployment", name) == nil {
			fail("no Deployment %s in namespace %q", name, ns)
		}
	case args[0] == "kubectl" && slices.Contains(args, "port-forward"):
		i := slices.Index(args, "port-forward")
		name, ok := strings.CutPrefix(args[i+1], "service/")
		local, remote, ok2 := strings.Cut(args[i+2], ":")
		if !ok || !ok2 {
			fail("want port-forward service/<name> <local>:<remote>")
			return
		}
		svc := has(ns, "Service", name)
		if svc == nil {
			fail("no Service %s in namespace %q after the earlier commands", name, ns)
			return
		}
		var s corev1.Service
		b, _ := yaml.Marshal(svc.Object)
		if err := yaml.Unmarshal(b, &s); err != nil {
			t.Fatal(err)
		}
		var ports []string
		for _, p := range s.Spec.Ports {
			ports = append(ports, strconv.Itoa(int(p.Port)))
		}
		if !slices.Contains(ports, remote) {
			fail("Service %s has ports %v, not %s", name, ports, remote)
		}
		st.forwarded[local] = true
	case args[0] == "kubectl" && slices.Contains(args, "patch"):
		// kubectl -n NS patch imc NAME --type merge -p JSON: an IMCluster an
		// earlier command created, and a patch whose every field is one of
		// the IMCluster API (decoded strictly).
		i := slices.Index(args, "patch")
		if i+2 >= len(args) || (args[i+1] != "imc" && args[i+1] != "imcluster") {
			fail("only `kubectl patch imc NAME` is checked")
			return
		}
		if has(ns, "IMCluster", args[i+2]) == nil {
			fail("no IMCluster %s/%s was created by an earlier command", ns, args[i+2])
		}
		if flagValue(args, "--type") != "merge" {
			fail("want --type merge")
		}
		dec := json.NewDecoder(strings.NewReader(flagValue(args, "-p", "--patch")))
		dec.DisallowUnknownFields()
		var patch imv1.IMCluster
		if err := dec.Decode(&patch); err != nil {
			fail("patch is not an IMCluster: %v", err)
		}
	case args[0] == "curl":
		for _, a := range args {
			if host, ok := strings.CutPrefix(a, "localhost:"); ok {
				port, _, _ := strings.Cut(host, "/")
				if !st.forwarded[port] {
					fail("localhost:%s is not forwarded by an earlier command", port)
				}
			}
		}
	case args[0] == "kubectl" && (slices.Contains(args, "get") || slices.Contains(args, "create")):
		// Reads, and `create namespace`.
	default:
		fail("no check for this command: add one to TestEveryInstallCommandWorksOnTheRenderedObjects")
	}
}

// addOperatorObjects adds the objects the operator creates for the
// IMClusters and GatewayPools known in namespace ns.
func addOperatorObjects(t *testing.T, st *docState, ns string) {
	t.Helper()
	clusters := map[string]*imv1.IMCluster{}
	var pools []*imv1.GatewayPool
	for _, u := range st.objects[ns] {
		b, _ := yaml.Marshal(u.Object)
		switch u.GetKind() {
		case "IMCluster":
			c := &imv1.IMCluster{}
			if err := yaml.Unmarshal(b, c); err != nil {
				t.Fatal(err)
			}
			clusters[c.Name] = c
		case "GatewayPool":
			p := &imv1.GatewayPool{}
			if err := yaml.Unmarshal(b, p); err != nil {
				t.Fatal(err)
			}
			pools = append(pools, p)
		}
	}
	add := func(obj any, kind string) {
		b, err := yaml.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(b, &u.Object); err != nil {
			t.Fatal(err)
		}
		u.SetKind(kind)
		u.SetNamespace(ns)
		st.objects[ns] = append(st.objects[ns], u)
	}
	for _, c := range clusters {
		for _, s := range imcluster.DesiredServices(c) {
			add(s, "Service")
		}
	}
	for _, p := range pools {
		if c := clusters[p.Spec.ClusterRef.Name]; c != nil {
			add(gatewaypool.DesiredService(p, c), "Service")
		}
	}
}

// README.md's Kubernetes section shows the same quick start as
// docs/install.md, which the e2e suite runs.
func TestReadmeShowsTheQuickStartOfTheInstallGuide(t *testing.T) {
	root := repoRoot(t)
	_, want := shellBlocks(t, filepath.Join(root, "docs", "install.md"))
	_, got := shellBlocks(t, filepath.Join(root, "README.md"))
	if len(want) != 1 || len(got) != 1 {
		t.Fatalf("quick start blocks: %d in docs/install.md, %d in README.md; want one each", len(want), len(got))
	}
	if !slices.Equal(want[0], got[0]) {
		t.Errorf("README.md quick start\n%s\ndiffers from docs/install.md\n%s", strings.Join(got[0], "\n"), strings.Join(want[0], "\n"))
	}
}

// Each IMCluster's services create their own database imkube_<id>
// (spec.isolation.mysqlDatabase): the demo MySQL lets the DSN's user create
// imkube_* databases, once, when its data folder is initialised.
func TestDemoMySQLLetsTheUserCreateClusterDatabases(t *testing.T) {
	s := newScheme(t)
	_, objs := render(t, "--set", "dependencies.enabled=true")
	var grant string
	var mounted bool
	for _, u := range objs {
		switch o := typed(t, s, u).(type) {
		case *corev1.Secret:
			if o.Name == "imkube-mysql" {
				grant = o.StringData["grant.sql"]
			}
		case *appsv1.StatefulSet:
			for _, c := range o.Spec.Template.Spec.Containers {
				for _, m := range c.VolumeMounts {
					mounted = mounted || (c.Name == "mysql" && m.MountPath == "/docker-entrypoint-initdb.d")
				}
			}
		}
	}
	if want := "GRANT ALL PRIVILEGES ON `imkube\\_%`.* TO 'imkube'@'%';"; grant != want {
		t.Errorf("grant.sql = %q, want %q", grant, want)
	}
	if !mounted {
		t.Error("the MySQL container does not mount grant.sql into /docker-entrypoint-initdb.d")
	}
}
