package chart_test

import (
	"os"
	"path/filepath"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
	"github.com/imkube/imkube/internal/testenv"
)

// helm install, upgrade and uninstall against a real kube-apiserver (the one
// envtest starts from KUBEBUILDER_ASSETS): the CRDs come from the chart, the
// example IMCluster and GatewayPool pass the CRDs' validation and get their
// schema defaults, a generated MySQL password survives an upgrade, and
// uninstalling keeps the CRDs. Then the kubectl path: the plain manifest
// creates the operator on the same API server.
func TestHelmInstallUpgradeUninstallOnARealAPIServer(t *testing.T) {
	assets := testenv.Require(t, "KUBEBUILDER_ASSETS")
	testenv.Require(t, "IMKUBE_HELM")
	env := &envtest.Environment{BinaryAssetsDirectory: assets}
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	admin, err := env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := admin.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	s := newScheme(t)
	if err := apiextensionsv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: s})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	const ns = "chat"
	values := []string{"--kubeconfig", kubeconfig, "--namespace", ns,
		"--set", "dependencies.enabled=true", "--set", "dependencies.mysql.password=",
		"--set", "example.enabled=true", "--set", "dashboards.enabled=true", "--set", "prometheusAdapter.enabled=true"}

	if out, err := helm(t, append([]string{"install", release, ".", "--create-namespace"}, values...)...); err != nil {
		t.Fatalf("helm install: %v\n%s", err, out)
	}
	for _, name := range []string{"imclusters.im.imkube.io", "gatewaypools.im.imkube.io"} {
		if err := c.Get(ctx, client.ObjectKey{Name: name}, &apiextensionsv1.CustomResourceDefinition{}); err != nil {
			t.Errorf("CRD %s: %v", name, err)
		}
	}
	var dep appsv1.Deployment
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "imkube-operator"}, &dep); err != nil {
		t.Fatalf("operator Deployment: %v", err)
	}
	var sts appsv1.StatefulSetList
	if err := c.List(ctx, &sts, client.InNamespace(ns)); err != nil || len(sts.Items) != 5 {
		t.Errorf("dependency StatefulSets: %d, %v; want 5 (redis, mysql, rocketmq name server and broker, s3)", len(sts.Items), err)
	}
	var imc imv1.IMCluster
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "chat"}, &imc); err != nil {
		t.Fatalf("example IMCluster: %v", err)
	}
	if imc.Spec.Limits.SendRatePerSecond == 0 || imc.Spec.Groups.MaxMembers == 0 {
		t.Errorf("the API server did not apply the CRD defaults to the example: limits %+v groups %+v", imc.Spec.Limits, imc.Spec.Groups)
	}
	var gwp imv1.GatewayPool
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "chat-edge"}, &gwp); err != nil {
		t.Fatalf("example GatewayPool: %v", err)
	}
	if gwp.Spec.ClusterRef.Name != "chat" {
		t.Errorf("GatewayPool clusterRef = %q", gwp.Spec.ClusterRef.Name)
	}
	password := mysqlPassword(t, c, ns)
	if len(password) < 16 {
		t.Fatalf("generated MySQL password %q is too short", password)
	}

	if out, err := helm(t, append([]string{"upgrade", release, ".", "--set", "operator.replicas=2"}, values...)...); err != nil {
		t.Fatalf("helm upgrade: %v\n%s", err, out)
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "imkube-operator"}, &dep); err != nil || *dep.Spec.Replicas != 2 {
		t.Errorf("after upgrade: replicas %v, %v; want 2", dep.Spec.Replicas, err)
	}
	if got := mysqlPassword(t, c, ns); got != password {
		t.Errorf("helm upgrade changed the generated MySQL password (%q -> %q): the database would lock imkube out", password, got)
	}

	if out, err := helm(t, "uninstall", release, "--kubeconfig", kubeconfig, "--namespace", ns); err != nil {
		t.Fatalf("helm uninstall: %v\n%s", err, out)
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "imkube-operator"}, &dep); !apierrors.IsNotFound(err) {
		t.Errorf("operator Deployment after uninstall: %v, want not found", err)
	}
	if err := c.Get(ctx, client.ObjectKey{Name: "imclusters.im.imkube.io"}, &apiextensionsv1.CustomResourceDefinition{}); err != nil {
		t.Errorf("helm uninstall removed the IMCluster CRD (it must keep it, and with it every cluster): %v", err)
	}

	// The kubectl path (docs/install.md): the CRDs are there; create the
	// namespace and every object of manifests/imkube-operator.yaml.
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("manifests/imkube-operator.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range decodeAll(t, string(raw)) {
		if err := c.Create(ctx, u); err != nil {
			t.Errorf("kubectl path: create %s %s: %v", u.GetKind(), u.GetName(), err)
		}
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "imkube-operator"}, &dep); err != nil {
		t.Errorf("kubectl path: operator Deployment: %v", err)
	}
}

func mysqlPassword(t *testing.T, c client.Client, ns string) string {
	t.Helper()
	var sec corev1.Secret
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "imkube-mysql"}, &sec); err != nil {
		t.Fatalf("MySQL Secret: %v", err)
	}
	return string(sec.Data["password"])
}
