package operator

import (
	"context"
	"errors"
	"fmt"
	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/equality"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
	"github.com/imkube/imkube/internal/testenv"
	"github.com/imkube/imkube/operator/internal/render"
	"github.com/imkube/imkube/operator/rocketmq"
)

// fakeTopics records EnsureTopics calls and fails while err is set.
type fakeTopics struct {
	mu     sync.Mutex
	err    error
	calls  int
	last   []rocketmq.Topic
	target rocketmq.Target
}

func (f *fakeTopics) EnsureTopics(_ context.Context, target rocketmq.Target, topics []rocketmq.Topic) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.last, f.target = slices.Clone(topics), target
	return nil, f.err
}

func (f *fakeTopics) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeTopics) seen() ([]rocketmq.Topic, rocketmq.Target) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.last), f.target
}

// fakeReadyz answers /readyz for pods by name ("" or absent: ready).
type fakeReadyz struct {
	mu     sync.Mutex
	bodies map[string]string
	conns  map[string]int64
}

func (f *fakeReadyz) NotReadyReason(_ context.Context, pod *corev1.Pod) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bodies[pod.Name], nil
}

// Connections answers a gateway pod's connection count (absent: an error,
// as from a pod whose /metrics cannot be read).
func (f *fakeReadyz) Connections(_ context.Context, pod *corev1.Pod) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.conns[pod.Name]
	if !ok {
		return 0, fmt.Errorf("no metrics for %s", pod.Name)
	}
	return n, nil
}

func (f *fakeReadyz) setConnections(pod string, n int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conns == nil {
		f.conns = map[string]int64{}
	}
	f.conns[pod] = n
}

func (f *fakeReadyz) set(pod, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.bodies == nil {
		f.bodies = map[string]string{}
	}
	f.bodies[pod] = body
}

// countingClient counts the writes the controllers send and their reads of
// IMClusters (one per reconcile).
type countingClient struct {
	client.Client
	writes      atomic.Int64
	clusterGets atomic.Int64
}

func (c *countingClient) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if _, ok := obj.(*imv1.IMCluster); ok {
		c.clusterGets.Add(1)
	}
	return c.Client.Get(ctx, key, obj, opts...)
}

func (c *countingClient) Apply(ctx context.Context, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
	c.writes.Add(1)
	return c.Client.Apply(ctx, obj, opts...)
}

func (c *countingClient) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	c.writes.Add(1)
	return c.Client.Create(ctx, obj, opts...)
}

func (c *countingClient) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	c.writes.Add(1)
	return c.Client.Patch(ctx, obj, patch, opts...)
}

func (c *countingClient) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	c.writes.Add(1)
	return c.Client.Delete(ctx, obj, opts...)
}

const testVersion = "v9.9.9-test"

type harness struct {
	t       *testing.T
	c       client.Client
	topics  *fakeTopics
	readyz  *fakeReadyz
	counter *countingClient
	// costTicks drives the gateway deletion-cost passes.
	costTicks chan time.Time
}

// startOperator starts a real kube-apiserver + etcd (envtest) with the CRDs
// from crds/ and the operator's manager against it.
func startOperator(t *testing.T) *harness {
	t.Helper()
	assets := testenv.Require(t, "KUBEBUILDER_ASSETS")
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "crds"), filepath.Join("testdata", "crds")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start envtest control plane from %s: %v", assets, err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stop envtest: %v", err)
		}
	})
	mgr, err := NewManager(cfg, Config{MetricsAddr: "0", HealthAddr: "0"}, ManagerOptions{SkipNameValidation: true})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, topics: &fakeTopics{}, readyz: &fakeReadyz{}, costTicks: make(chan time.Time)}
	err = Register(mgr, Deps{
		Topics: h.topics, Version: testVersion, Readyz: h.readyz,
		Connections: h.readyz, DeletionCostTicks: h.costTicks,
		RetryInterval: 200 * time.Millisecond, ResyncInterval: 300 * time.Millisecond,
		WrapClient: func(c client.Client) client.Client {
			h.counter = &countingClient{Client: c}
			return h.counter
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	h.c, err = client.New(cfg, client.Options{Scheme: mgr.GetScheme()})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// eventually polls f until it returns nil (bounded: 60 s).
func (h *harness) eventually(what string, f func() error) {
	h.t.Helper()
	var err error
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err = f(); err == nil {
			return
		}
	}
	h.t.Fatalf("%s: still failing after 60s: %v", what, err)
}

func (h *harness) namespace(name string) string {
	h.t.Helper()
	if err := h.c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		h.t.Fatal(err)
	}
	return name
}

// applySamples creates every document of crds/samples/<file> in ns.
func (h *harness) applySamples(ns string, files ...string) {
	h.t.Helper()
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join("..", "crds", "samples", f))
		if err != nil {
			h.t.Fatal(err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(string(b)), 4096)
		for {
			u := &unstructured.Unstructured{}
			if err := dec.Decode(&u.Object); err != nil {
				if errors.Is(err, os.ErrClosed) || err.Error() == "EOF" {
					break
				}
				h.t.Fatalf("decode %s: %v", f, err)
			}
			if len(u.Object) == 0 {
				continue
			}
			u.SetNamespace(ns)
			if err := h.c.Create(context.Background(), u); err != nil {
				h.t.Fatalf("create %s %s from %s: %v", u.GetKind(), u.GetName(), f, err)
			}
		}
	}
}

func (h *harness) get(ns, name string, obj client.Object) error {
	return h.c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, obj)
}

// markAvailable plays the Deployment controller: all replicas updated and available.
func (h *harness) markAvailable(ns, name string) {
	h.t.Helper()
	h.eventually("mark "+name+" available", func() error {
		var d appsv1.Deployment
		if err := h.get(ns, name, &d); err != nil {
			return err
		}
		n := ptr.Deref(d.Spec.Replicas, 1)
		d.Status = appsv1.DeploymentStatus{
			ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n,
			Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable"}},
		}
		return h.c.Status().Update(context.Background(), &d)
	})
}

// expectNoWrites waits until the status has settled and then checks that
// three further reconciles of the IMCluster send no writes.
func (h *harness) expectNoWrites() {
	h.t.Helper()
	var writes, gets int64
	settled := func() error {
		writes, gets = h.counter.writes.Load(), h.counter.clusterGets.Load()
		time.Sleep(200 * time.Millisecond)
		if n := h.counter.writes.Load() - writes; n != 0 {
			return fmt.Errorf("%d writes in the last 200ms", n)
		}
		return nil
	}
	h.eventually("operator settled", settled)
	writes = h.counter.writes.Load()
	gets = h.counter.clusterGets.Load()
	h.eventually("three more reconciles", func() error {
		if n := h.counter.clusterGets.Load() - gets; n < 3 {
			return fmt.Errorf("%d reconciles so far", n)
		}
		return nil
	})
	if n := h.counter.writes.Load() - writes; n != 0 {
		h.t.Errorf("%d writes during steady-state reconciles, want 0", n)
	}
}

func condition(conds []metav1.Condition, typ string) (metav1.Condition, error) {
	c := meta.FindStatusCondition(conds, typ)
	if c == nil {
		return metav1.Condition{}, fmt.Errorf("condition %s not set", typ)
	}
	return *c, nil
}

func (h *harness) clusterCondition(ns, name, typ string, want metav1.ConditionStatus, reason string) error {
	var c imv1.IMCluster
	if err := h.get(ns, name, &c); err != nil {
		return err
	}
	cond, err := condition(c.Status.Conditions, typ)
	if err != nil {
		return err
	}
	if cond.Status != want || (reason != "" && cond.Reason != reason) || cond.ObservedGeneration != c.Generation {
		return fmt.Errorf("%s = %s/%s (gen %d of %d): %s, want %s/%s", typ, cond.Status, cond.Reason,
			cond.ObservedGeneration, c.Generation, cond.Message, want, reason)
	}
	return nil
}

func (h *harness) poolCondition(ns, name, typ string, want metav1.ConditionStatus, reason string) error {
	var p imv1.GatewayPool
	if err := h.get(ns, name, &p); err != nil {
		return err
	}
	cond, err := condition(p.Status.Conditions, typ)
	if err != nil {
		return err
	}
	if cond.Status != want || (reason != "" && cond.Reason != reason) {
		return fmt.Errorf("%s = %s/%s: %s, want %s/%s", typ, cond.Status, cond.Reason, cond.Message, want, reason)
	}
	return nil
}

func envValue(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

func hookSecretRef() *corev1.SecretKeySelector {
	return &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "hooks"}, Key: "key"}
}

func TestOperatorAgainstAPIServer(t *testing.T) {
	h := startOperator(t)
	ctx := context.Background()
	ns := h.namespace("samples")
	h.applySamples(ns, "imcluster.yaml", "gatewaypool.yaml")

	t.Run("the samples get every owned object with the contract's settings", func(t *testing.T) {
		for _, name := range []string{"demo-message", "demo-sequence", "demo-user", "edge-gateway"} {
			var d appsv1.Deployment
			h.eventually("Deployment "+name, func() error { return h.get(ns, name, &d) })
			pod := d.Spec.Template.Spec
			ctr := pod.Containers[0]
			if want := render.DefaultImage + ":" + testVersion; ctr.Image != want {
				t.Errorf("%s image = %q, want %q", name, ctr.Image, want)
			}
			if !metav1.IsControlledBy(&d, &metav1.ObjectMeta{UID: d.OwnerReferences[0].UID}) || len(d.OwnerReferences) != 1 {
				t.Errorf("%s owner references = %v", name, d.OwnerReferences)
			}
			sc := ctr.SecurityContext
			if !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || sc.Capabilities.Drop[0] != "ALL" ||
				*pod.SecurityContext.RunAsUser != 65532 || !*pod.SecurityContext.RunAsNonRoot {
				t.Errorf("%s security context is not the contract's: %+v / %+v", name, sc, pod.SecurityContext)
			}
			if ctr.ReadinessProbe.HTTPGet.Path != "/readyz" || ctr.LivenessProbe.HTTPGet.Path != "/healthz" {
				t.Errorf("%s probes = %v %v", name, ctr.ReadinessProbe, ctr.LivenessProbe)
			}
			if got := envValue(ctr, "IMKUBE_ROCKETMQ_NAMESRV"); got != "imkube-rocketmq-namesrv:9876" {
				t.Errorf("%s IMKUBE_ROCKETMQ_NAMESRV = %q", name, got)
			}
			if _, ok := d.Spec.Template.Annotations[render.AnnotationConfigHash]; ok {
				t.Errorf("%s pod template carries the config hash (the ConfigMap is hot-reloaded)", name)
			}
			if ctr.Resources.Requests.Cpu().IsZero() {
				t.Errorf("%s has no CPU request", name)
			}
			var svc corev1.Service
			h.eventually("Service "+name, func() error { return h.get(ns, name, &svc) })
			var pdb policyv1.PodDisruptionBudget
			h.eventually("PDB "+name, func() error { return h.get(ns, name, &pdb) })
		}

		var gw appsv1.Deployment
		if err := h.get(ns, "edge-gateway", &gw); err != nil {
			t.Fatal(err)
		}
		ctr := gw.Spec.Template.Spec.Containers[0]
		if envValue(ctr, "IMKUBE_GATEWAY_POOL") != "edge" || envValue(ctr, "IMKUBE_DRAIN_TIMEOUT") != "30s" ||
			envValue(ctr, "IMKUBE_MAX_CONNECTIONS") != "10000" {
			t.Errorf("gateway env = %v", ctr.Env)
		}
		if got := *gw.Spec.Template.Spec.TerminationGracePeriodSeconds; got != 40 {
			t.Errorf("gateway terminationGracePeriodSeconds = %d, want 40 (5 preStop + 30 drain + 5)", got)
		}
		if got := ptr.Deref(gw.Spec.Replicas, 0); got != 2 {
			t.Errorf("gateway replicas = %d, want 2", got)
		}

		var cm corev1.ConfigMap
		h.eventually("ConfigMap", func() error { return h.get(ns, "demo-config", &cm) })
		if !strings.Contains(cm.Data["config.json"], `"sendRatePerSecond": 10`) || !strings.Contains(cm.Data["sentinel-rules.json"], `"gateway.send"`) {
			t.Errorf("ConfigMap data = %v", cm.Data)
		}
		var sec corev1.Secret
		h.eventually("auth Secret", func() error { return h.get(ns, "demo-auth", &sec) })
		if len(sec.Data["jwt-key"]) != 64 {
			t.Errorf("generated jwt-key has %d bytes, want 64 hex characters", len(sec.Data["jwt-key"]))
		}

		// KEDA (the default provider, its CRD from testdata/crds) scales
		// message: a ScaledObject on the broker-side lag, no plain HPA.
		msgSO := &unstructured.Unstructured{}
		msgSO.SetGroupVersionKind(render.ScaledObjectGVK)
		h.eventually("message ScaledObject", func() error { return h.get(ns, "demo-message", msgSO) })
		trs, _, _ := unstructured.NestedSlice(msgSO.Object, "spec", "triggers")
		if len(trs) != 1 || !strings.Contains(fmt.Sprint(trs[0]), `imkube_broker_consumer_lag{imcluster_namespace="`+ns+`",imcluster="demo"}`) {
			t.Errorf("message ScaledObject triggers = %v", trs)
		}
		if err := h.get(ns, "demo-message", &autoscalingv2.HorizontalPodAutoscaler{}); !apierrors.IsNotFound(err) {
			t.Errorf("message has a ScaledObject and a plain HPA too (err %v)", err)
		}
		var userHPA autoscalingv2.HorizontalPodAutoscaler
		h.eventually("user HPA", func() error { return h.get(ns, "demo-user", &userHPA) })
		if m := userHPA.Spec.Metrics[0]; m.Resource == nil || m.Resource.Name != corev1.ResourceCPU {
			t.Errorf("user HPA metrics = %+v", userHPA.Spec.Metrics)
		}
		var seqHPA autoscalingv2.HorizontalPodAutoscaler
		if err := h.get(ns, "demo-sequence", &seqHPA); !apierrors.IsNotFound(err) {
			t.Errorf("sequence has no autoscaling but got an HPA (err %v)", err)
		}
		var gwHPA autoscalingv2.HorizontalPodAutoscaler
		if err := h.get(ns, "edge-gateway", &gwHPA); !apierrors.IsNotFound(err) {
			t.Errorf("fixed-size pool got an HPA (err %v)", err)
		}

		topics, target := h.topics.seen()
		if !slices.Equal(topics, []rocketmq.Topic{{Name: "IM_UPSTREAM_samples_demo", Queues: 8}, {Name: "IM_PUSH_samples_demo", Queues: 8}}) ||
			!slices.Equal(target.BrokerAddresses, []string{"imkube-rocketmq-broker:10911"}) || target.Namespace != ns {
			t.Errorf("topics ensured = %v on %+v", topics, target)
		}

		h.eventually("IMCluster conditions while rolling out", func() error {
			if err := h.clusterCondition(ns, "demo", imv1.ConditionProgressing, metav1.ConditionTrue, imv1.ReasonRollingOut); err != nil {
				return err
			}
			if err := h.clusterCondition(ns, "demo", imv1.ConditionDependenciesReady, metav1.ConditionTrue, ""); err != nil {
				return err
			}
			if err := h.clusterCondition(ns, "demo", imv1.ConditionDegraded, metav1.ConditionFalse, ""); err != nil {
				return err
			}
			return h.clusterCondition(ns, "demo", imv1.ConditionReady, metav1.ConditionFalse, imv1.ReasonComponentsNotReady)
		})
	})

	t.Run("available Deployments turn Progressing into Ready", func(t *testing.T) {
		for _, name := range []string{"demo-message", "demo-sequence", "demo-user", "edge-gateway"} {
			h.markAvailable(ns, name)
		}
		h.eventually("IMCluster Ready", func() error {
			if err := h.clusterCondition(ns, "demo", imv1.ConditionProgressing, metav1.ConditionFalse, imv1.ReasonRolloutComplete); err != nil {
				return err
			}
			return h.clusterCondition(ns, "demo", imv1.ConditionReady, metav1.ConditionTrue, imv1.ReasonAllReady)
		})
		h.eventually("GatewayPool Ready", func() error {
			return h.poolCondition(ns, "edge", imv1.ConditionReady, metav1.ConditionTrue, imv1.ReasonAllReady)
		})
		var c imv1.IMCluster
		if err := h.get(ns, "demo", &c); err != nil {
			t.Fatal(err)
		}
		if c.Status.Components.Sequence != (imv1.ComponentStatus{Desired: 2, Ready: 2}) || c.Status.Endpoints.User != "http://demo-user:8080" {
			t.Errorf("status = %+v", c.Status)
		}
		h.eventually("pool summary in the IMCluster status", func() error {
			if err := h.get(ns, "demo", &c); err != nil {
				return err
			}
			if len(c.Status.GatewayPools) != 1 || c.Status.GatewayPools[0].ReadyReplicas != 2 {
				return fmt.Errorf("gatewayPools = %+v", c.Status.GatewayPools)
			}
			return nil
		})
		var p imv1.GatewayPool
		if err := h.get(ns, "edge", &p); err != nil {
			t.Fatal(err)
		}
		if p.Status.Replicas != 2 || p.Status.ReadyReplicas != 2 || !strings.Contains(p.Status.Selector, "im.imkube.io/gateway-pool=edge") {
			t.Errorf("pool status = %+v", p.Status)
		}
	})

	t.Run("a steady cluster gets no writes", func(t *testing.T) {
		h.expectNoWrites()
	})

	t.Run("a failing topic check degrades the cluster until it recovers", func(t *testing.T) {
		h.topics.setErr(errors.New("connect to imkube-rocketmq-namesrv:9876: connection refused"))
		h.eventually("Degraded", func() error {
			if err := h.clusterCondition(ns, "demo", imv1.ConditionDependenciesReady, metav1.ConditionFalse, imv1.ReasonTopicsNotReady); err != nil {
				return err
			}
			if err := h.clusterCondition(ns, "demo", imv1.ConditionDegraded, metav1.ConditionTrue, imv1.ReasonDependencyFailed); err != nil {
				return err
			}
			return h.clusterCondition(ns, "demo", imv1.ConditionReady, metav1.ConditionFalse, imv1.ReasonDependenciesNotReady)
		})
		h.topics.setErr(nil)
		h.eventually("recovered", func() error {
			if err := h.clusterCondition(ns, "demo", imv1.ConditionDegraded, metav1.ConditionFalse, imv1.ReasonAsExpected); err != nil {
				return err
			}
			return h.clusterCondition(ns, "demo", imv1.ConditionReady, metav1.ConditionTrue, imv1.ReasonAllReady)
		})
	})

	t.Run("a deleted Deployment is recreated", func(t *testing.T) {
		var d appsv1.Deployment
		if err := h.get(ns, "demo-user", &d); err != nil {
			t.Fatal(err)
		}
		if err := h.c.Delete(ctx, &d); err != nil {
			t.Fatal(err)
		}
		h.eventually("recreated", func() error {
			var again appsv1.Deployment
			if err := h.get(ns, "demo-user", &again); err != nil {
				return err
			}
			if again.UID == d.UID {
				return errors.New("still the old Deployment")
			}
			return nil
		})
		h.markAvailable(ns, "demo-user")
	})

	t.Run("kubectl scale on the pool scales the gateway Deployment", func(t *testing.T) {
		var p imv1.GatewayPool
		if err := h.get(ns, "edge", &p); err != nil {
			t.Fatal(err)
		}
		scale := &autoscalingv1.Scale{Spec: autoscalingv1.ScaleSpec{Replicas: 3}}
		if err := h.c.SubResource("scale").Update(ctx, &p, client.WithSubResourceBody(scale)); err != nil {
			t.Fatal(err)
		}
		h.eventually("gateway Deployment at 3 replicas", func() error {
			var d appsv1.Deployment
			if err := h.get(ns, "edge-gateway", &d); err != nil {
				return err
			}
			if got := ptr.Deref(d.Spec.Replicas, 0); got != 3 {
				return fmt.Errorf("replicas = %d", got)
			}
			return nil
		})
	})

	t.Run("kubectl scale on an autoscaled pool is rejected", func(t *testing.T) {
		p := &imv1.GatewayPool{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "auto"},
			Spec: imv1.GatewayPoolSpec{ClusterRef: imv1.ClusterReference{Name: "demo"},
				Autoscaling: &imv1.GatewayAutoscalingSpec{ReplicaRange: imv1.ReplicaRange{MinReplicas: 2, MaxReplicas: 4}}},
		}
		if err := h.c.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		h.eventually("ScaledObject for the autoscaled pool", func() error {
			so := &unstructured.Unstructured{}
			so.SetGroupVersionKind(render.ScaledObjectGVK)
			return h.get(ns, "auto-gateway", so)
		})
		scale := &autoscalingv1.Scale{Spec: autoscalingv1.ScaleSpec{Replicas: 3}}
		err := h.c.SubResource("scale").Update(ctx, p, client.WithSubResourceBody(scale))
		if err == nil || !strings.Contains(err.Error(), "exactly one of replicas or autoscaling must be set") {
			t.Errorf("scale error = %v, want the exactly-one rule", err)
		}

		// Play KEDA and the HPA controller: KEDA's HPA (its trigger as an
		// External metric) sees 3 pods at 1500 connections each.
		hpa := autoscalingv2.HorizontalPodAutoscaler{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "keda-hpa-auto-gateway",
				Labels: map[string]string{"app.kubernetes.io/managed-by": "keda-operator"}},
			Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
				ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "auto-gateway"},
				MinReplicas:    ptr.To[int32](2), MaxReplicas: 4,
				Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ExternalMetricSourceType, External: &autoscalingv2.ExternalMetricSource{
					Metric: autoscalingv2.MetricIdentifier{Name: "s0-prometheus"},
					Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: ptr.To(resource.MustParse("5000"))},
				}}},
			},
		}
		if err := h.c.Create(ctx, &hpa); err != nil {
			t.Fatal(err)
		}
		avg := resource.MustParse("1500")
		hpa.Status = autoscalingv2.HorizontalPodAutoscalerStatus{
			CurrentReplicas: 3, DesiredReplicas: 3,
			CurrentMetrics: []autoscalingv2.MetricStatus{{
				Type: autoscalingv2.ExternalMetricSourceType,
				External: &autoscalingv2.ExternalMetricStatus{
					Metric:  autoscalingv2.MetricIdentifier{Name: "s0-prometheus"},
					Current: autoscalingv2.MetricValueStatus{AverageValue: &avg},
				},
			}},
		}
		if err := h.c.Status().Update(ctx, &hpa); err != nil {
			t.Fatal(err)
		}
		h.eventually("pool connections from the HPA metric", func() error {
			var got imv1.GatewayPool
			if err := h.get(ns, "auto", &got); err != nil {
				return err
			}
			if got.Status.Connections == nil || *got.Status.Connections != 4500 {
				return fmt.Errorf("connections = %v, want 4500", got.Status.Connections)
			}
			return nil
		})
	})

	t.Run("changing limits rewrites the ConfigMap and rolls no pod", func(t *testing.T) {
		templates := map[string]corev1.PodTemplateSpec{}
		for _, name := range []string{"demo-message", "demo-user", "demo-sequence", "edge-gateway"} {
			var d appsv1.Deployment
			if err := h.get(ns, name, &d); err != nil {
				t.Fatal(err)
			}
			templates[name] = d.Spec.Template
		}
		var sec corev1.Secret
		if err := h.get(ns, "demo-auth", &sec); err != nil {
			t.Fatal(err)
		}
		patch := []byte(`{"spec":{"limits":{"sendRatePerSecond":3,"sendBurst":6}}}`)
		if err := h.c.Patch(ctx, &imv1.IMCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "demo"}},
			client.RawPatch(types.MergePatchType, patch)); err != nil {
			t.Fatal(err)
		}
		h.eventually("ConfigMap updated", func() error {
			var cm corev1.ConfigMap
			if err := h.get(ns, "demo-config", &cm); err != nil {
				return err
			}
			if !strings.Contains(cm.Data["config.json"], `"sendRatePerSecond": 3`) {
				return errors.New("config.json not updated yet")
			}
			return nil
		})
		// Both controllers have reconciled the new generation: had they
		// changed a template, it would show now.
		h.eventually("the cluster observed the change", func() error {
			var c imv1.IMCluster
			if err := h.get(ns, "demo", &c); err != nil {
				return err
			}
			if c.Status.ObservedGeneration != c.Generation {
				return fmt.Errorf("observedGeneration %d, generation %d", c.Status.ObservedGeneration, c.Generation)
			}
			return nil
		})
		time.Sleep(2 * time.Second) // the pool reconciles on the cluster's change too
		for name, before := range templates {
			var d appsv1.Deployment
			if err := h.get(ns, name, &d); err != nil {
				t.Fatal(err)
			}
			if !equality.Semantic.DeepEqual(before, d.Spec.Template) {
				t.Errorf("%s: the pod template changed with the limits:\n%s", name, cmp.Diff(before, d.Spec.Template))
			}
		}
		var again corev1.Secret
		if err := h.get(ns, "demo-auth", &again); err != nil {
			t.Fatal(err)
		}
		if string(again.Data["jwt-key"]) != string(sec.Data["jwt-key"]) {
			t.Error("the generated auth Secret was rewritten")
		}
	})

	t.Run("the HPA provider swaps the message ScaledObject for a plain HPA and back", func(t *testing.T) {
		setProvider := func(p string) {
			patch := []byte(`{"spec":{"autoscaling":{"provider":"` + p + `"}}}`)
			if err := h.c.Patch(ctx, &imv1.IMCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "demo"}},
				client.RawPatch(types.MergePatchType, patch)); err != nil {
				t.Fatal(err)
			}
		}
		so := func() error {
			u := &unstructured.Unstructured{}
			u.SetGroupVersionKind(render.ScaledObjectGVK)
			return h.get(ns, "demo-message", u)
		}
		setProvider("HPA")
		h.eventually("message HPA on the broker lag, no ScaledObject", func() error {
			var hpa autoscalingv2.HorizontalPodAutoscaler
			if err := h.get(ns, "demo-message", &hpa); err != nil {
				return err
			}
			if m := hpa.Spec.Metrics[0]; m.External == nil || m.External.Metric.Name != "imkube_broker_consumer_lag" ||
				m.External.Metric.Selector.MatchLabels["imcluster"] != "demo" || m.External.Metric.Selector.MatchLabels["imcluster_namespace"] != ns {
				return fmt.Errorf("message HPA metrics = %+v", hpa.Spec.Metrics)
			}
			if err := so(); !apierrors.IsNotFound(err) {
				return fmt.Errorf("ScaledObject still there (err %v)", err)
			}
			return nil
		})
		setProvider("KEDA")
		h.eventually("ScaledObject back, HPA gone", func() error {
			if err := so(); err != nil {
				return err
			}
			if err := h.get(ns, "demo-message", &autoscalingv2.HorizontalPodAutoscaler{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("HPA still there (err %v)", err)
			}
			return nil
		})
	})

	t.Run("switching the message service to fixed replicas removes its autoscaler", func(t *testing.T) {
		patch := []byte(`{"spec":{"message":{"autoscaling":null,"replicas":3}}}`)
		if err := h.c.Patch(ctx, &imv1.IMCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "demo"}},
			client.RawPatch(types.MergePatchType, patch)); err != nil {
			t.Fatal(err)
		}
		h.eventually("ScaledObject gone and replicas fixed", func() error {
			so := &unstructured.Unstructured{}
			so.SetGroupVersionKind(render.ScaledObjectGVK)
			if err := h.get(ns, "demo-message", so); !apierrors.IsNotFound(err) {
				return fmt.Errorf("ScaledObject still there (err %v)", err)
			}
			var d appsv1.Deployment
			if err := h.get(ns, "demo-message", &d); err != nil {
				return err
			}
			if got := ptr.Deref(d.Spec.Replicas, 0); got != 3 {
				return fmt.Errorf("replicas = %d", got)
			}
			return nil
		})
	})

	t.Run("switching the sequence service to autoscaling keeps its replicas for the HPA", func(t *testing.T) {
		patch := []byte(`{"spec":{"sequence":{"autoscaling":{"minReplicas":2,"maxReplicas":5}}}}`)
		if err := h.c.Patch(ctx, &imv1.IMCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "demo"}},
			client.RawPatch(types.MergePatchType, patch)); err != nil {
			t.Fatal(err)
		}
		h.eventually("sequence HPA", func() error {
			return h.get(ns, "demo-sequence", &autoscalingv2.HorizontalPodAutoscaler{})
		})
		h.eventually("Deployment no longer owned by the operator's replicas", func() error {
			var d appsv1.Deployment
			if err := h.get(ns, "demo-sequence", &d); err != nil {
				return err
			}
			if got := ptr.Deref(d.Spec.Replicas, 0); got != 2 {
				t.Fatalf("replicas = %d after enabling autoscaling, want the previous 2 (not a drop to 1)", got)
			}
			for _, e := range d.ManagedFields {
				if e.Manager == render.FieldManager && strings.Contains(string(e.FieldsV1.Raw), `"f:replicas"`) {
					return errors.New("operator still owns spec.replicas")
				}
			}
			return nil
		})
	})

	t.Run("the ServiceMonitor follows observability.serviceMonitor", func(t *testing.T) {
		set := func(on bool) {
			patch := []byte(fmt.Sprintf(`{"spec":{"observability":{"serviceMonitor":%v}}}`, on))
			if err := h.c.Patch(ctx, &imv1.IMCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "demo"}},
				client.RawPatch(types.MergePatchType, patch)); err != nil {
				t.Fatal(err)
			}
		}
		sm := &unstructured.Unstructured{}
		sm.SetAPIVersion("monitoring.coreos.com/v1")
		sm.SetKind("ServiceMonitor")
		set(true)
		h.eventually("ServiceMonitor created", func() error { return h.get(ns, "demo", sm) })
		sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
		if sel["app.kubernetes.io/instance"] != "demo" {
			t.Errorf("ServiceMonitor selector = %v", sel)
		}
		h.expectNoWrites()
		set(false)
		h.eventually("ServiceMonitor deleted", func() error {
			if err := h.get(ns, "demo", sm); !apierrors.IsNotFound(err) {
				return fmt.Errorf("still there (err %v)", err)
			}
			return nil
		})
	})

	t.Run("a missing Secret is reported until it appears", func(t *testing.T) {
		var demo imv1.IMCluster
		if err := h.get(ns, "demo", &demo); err != nil {
			t.Fatal(err)
		}
		c := &imv1.IMCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nosecret"}, Spec: *demo.Spec.DeepCopy()}
		c.Spec.Dependencies.MySQL.DSNSecretRef.Name = "later"
		if err := h.c.Create(ctx, c); err != nil {
			t.Fatal(err)
		}
		h.eventually("SecretNotFound", func() error {
			return h.clusterCondition(ns, "nosecret", imv1.ConditionDependenciesReady, metav1.ConditionFalse, imv1.ReasonSecretNotFound)
		})
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "later"}, StringData: map[string]string{"dsn": "x"}}
		if err := h.c.Create(ctx, sec); err != nil {
			t.Fatal(err)
		}
		h.eventually("DependenciesReady once the Secret exists", func() error {
			return h.clusterCondition(ns, "nosecret", imv1.ConditionDependenciesReady, metav1.ConditionTrue, imv1.ReasonDependenciesAvailable)
		})
	})

	t.Run("a failing reconcile reports the failure without advancing observedGeneration", func(t *testing.T) {
		// requests above limits: the CRDs accept it, the Deployment is invalid.
		invalid := func(limit string) corev1.ResourceRequirements {
			return corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")},
				Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(limit)},
			}
		}
		var demo imv1.IMCluster
		if err := h.get(ns, "demo", &demo); err != nil {
			t.Fatal(err)
		}
		c := &imv1.IMCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "broken"}, Spec: *demo.Spec.DeepCopy()}
		c.Spec.Sequence.Resources = invalid("1")
		if err := h.c.Create(ctx, c); err != nil {
			t.Fatal(err)
		}
		// failed checks that every condition is written (kubectl wait keeps
		// working), says the apply failed, and is stamped like the status
		// with the last generation that reconciled successfully.
		failed := func(observed int64) func() error {
			return func() error {
				var got imv1.IMCluster
				if err := h.get(ns, "broken", &got); err != nil {
					return err
				}
				if got.Generation <= observed {
					return fmt.Errorf("generation %d not past %d yet", got.Generation, observed)
				}
				for _, typ := range []string{imv1.ConditionReady, imv1.ConditionDegraded, imv1.ConditionProgressing, imv1.ConditionDependenciesReady} {
					cond, err := condition(got.Status.Conditions, typ)
					if err != nil {
						return err
					}
					if cond.ObservedGeneration != observed {
						return fmt.Errorf("%s observedGeneration = %d, want %d", typ, cond.ObservedGeneration, observed)
					}
				}
				for _, typ := range []string{imv1.ConditionReady, imv1.ConditionDegraded} {
					cond, _ := condition(got.Status.Conditions, typ)
					if cond.Reason != imv1.ReasonApplyFailed || !strings.Contains(cond.Message, "broken-sequence") {
						return fmt.Errorf("%s = %s/%s: %s, want ApplyFailed naming broken-sequence", typ, cond.Status, cond.Reason, cond.Message)
					}
				}
				if got.Status.ObservedGeneration != observed {
					t.Fatalf("status.observedGeneration = %d after a failed reconcile, want %d", got.Status.ObservedGeneration, observed)
				}
				return nil
			}
		}
		h.eventually("ApplyFailed on a generation never reconciled", failed(0))

		patchSequence := func(limit string) {
			patch := []byte(fmt.Sprintf(`{"spec":{"sequence":{"resources":{"limits":{"cpu":%q}}}}}`, limit))
			if err := h.c.Patch(ctx, &imv1.IMCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "broken"}},
				client.RawPatch(types.MergePatchType, patch)); err != nil {
				t.Fatal(err)
			}
		}
		patchSequence("4")
		h.eventually("observed once the spec can be applied", func() error {
			var got imv1.IMCluster
			if err := h.get(ns, "broken", &got); err != nil {
				return err
			}
			if got.Status.ObservedGeneration != got.Generation {
				return fmt.Errorf("observedGeneration = %d of %d", got.Status.ObservedGeneration, got.Generation)
			}
			return h.clusterCondition(ns, "broken", imv1.ConditionDegraded, metav1.ConditionFalse, imv1.ReasonAsExpected)
		})
		var good imv1.IMCluster
		if err := h.get(ns, "broken", &good); err != nil {
			t.Fatal(err)
		}
		patchSequence("1")
		h.eventually("ApplyFailed with the last good generation", failed(good.Generation))

		p := &imv1.GatewayPool{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "broken"},
			Spec: imv1.GatewayPoolSpec{ClusterRef: imv1.ClusterReference{Name: "demo"}, Replicas: ptr.To[int32](1),
				Resources: invalid("1")},
		}
		if err := h.c.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		h.eventually("pool ApplyFailed without an observed generation", func() error {
			if err := h.poolCondition(ns, "broken", imv1.ConditionDegraded, metav1.ConditionTrue, imv1.ReasonApplyFailed); err != nil {
				return err
			}
			var got imv1.GatewayPool
			if err := h.get(ns, "broken", &got); err != nil {
				return err
			}
			for _, cond := range got.Status.Conditions {
				if cond.ObservedGeneration != 0 {
					return fmt.Errorf("%s observedGeneration = %d, want 0", cond.Type, cond.ObservedGeneration)
				}
			}
			if got.Status.ObservedGeneration != 0 {
				return fmt.Errorf("status.observedGeneration = %d, want 0", got.Status.ObservedGeneration)
			}
			return nil
		})
	})

	t.Run("a pool whose cluster does not exist is degraded", func(t *testing.T) {
		p := &imv1.GatewayPool{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orphan"},
			Spec:       imv1.GatewayPoolSpec{ClusterRef: imv1.ClusterReference{Name: "nope"}, Replicas: ptr.To[int32](1)},
		}
		if err := h.c.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		h.eventually("ClusterNotFound", func() error {
			return h.poolCondition(ns, "orphan", imv1.ConditionDegraded, metav1.ConditionTrue, imv1.ReasonClusterNotFound)
		})
	})

	t.Run("invalid objects are rejected with the schema's message", func(t *testing.T) {
		base := func() *imv1.IMCluster {
			var c imv1.IMCluster
			if err := h.get(ns, "demo", &c); err != nil {
				t.Fatal(err)
			}
			return &imv1.IMCluster{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bad"},
				Spec:       *c.Spec.DeepCopy(),
			}
		}
		pool := func() *imv1.GatewayPool {
			return &imv1.GatewayPool{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bad"},
				Spec:       imv1.GatewayPoolSpec{ClusterRef: imv1.ClusterReference{Name: "demo"}, Replicas: ptr.To[int32](1)},
			}
		}
		tests := []struct {
			name string
			give client.Object
			want string
		}{
			{"autoscaling min above max", func() client.Object {
				p := pool()
				p.Spec.Replicas = nil
				p.Spec.Autoscaling = &imv1.GatewayAutoscalingSpec{ReplicaRange: imv1.ReplicaRange{MinReplicas: 5, MaxReplicas: 2}}
				return p
			}(), "minReplicas must be less than or equal to maxReplicas"},
			{"both replicas and autoscaling", func() client.Object {
				p := pool()
				p.Spec.Autoscaling = &imv1.GatewayAutoscalingSpec{ReplicaRange: imv1.ReplicaRange{MinReplicas: 1, MaxReplicas: 2}}
				return p
			}(), "exactly one of replicas or autoscaling must be set"},
			{"autoscaling target above the connection cap", func() client.Object {
				p := pool()
				p.Spec.Replicas = nil
				p.Spec.MaxConnectionsPerPod = 1000
				p.Spec.Autoscaling = &imv1.GatewayAutoscalingSpec{ReplicaRange: imv1.ReplicaRange{MinReplicas: 1, MaxReplicas: 2}, TargetConnectionsPerPod: 2000}
				return p
			}(), "autoscaling.targetConnectionsPerPod must not exceed maxConnectionsPerPod"},
			{"drain timeout out of range", func() client.Object {
				p := pool()
				p.Spec.DrainTimeout = &metav1.Duration{Duration: 2 * time.Hour}
				return p
			}(), "drainTimeout must be between 1s and 1h"},
			{"a trusted proxy that is not a CIDR", func() client.Object {
				p := pool()
				p.Spec.TrustedProxies = []string{"lb.example.com"}
				return p
			}(), "trustedProxies must be CIDRs"},
			{"a traffic policy on a ClusterIP Service", func() client.Object {
				p := pool()
				p.Spec.Service.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
				return p
			}(), "externalTrafficPolicy needs type NodePort or LoadBalancer"},
			{"drain rate of zero", func() client.Object {
				p := pool()
				p.Spec.Drain.ConnectionsPerSecond = -5
				return p
			}(), "spec.drain.connectionsPerSecond"},
			{"unknown redis mode", func() client.Object {
				c := base()
				c.Spec.Dependencies.Redis.Mode = "bogus"
				return c
			}(), `Unsupported value: "bogus"`},
			{"message autoscaling min above max", func() client.Object {
				c := base()
				c.Spec.Message.Autoscaling = &imv1.LagAutoscalingSpec{ReplicaRange: imv1.ReplicaRange{MinReplicas: 9, MaxReplicas: 3}}
				return c
			}(), "minReplicas must be less than or equal to maxReplicas"},
			{"message maxReplicas above the default 8 upstream queues", func() client.Object {
				c := base()
				c.Spec.Dependencies.RocketMQ.Topics = nil
				c.Spec.Message.Autoscaling = &imv1.LagAutoscalingSpec{ReplicaRange: imv1.ReplicaRange{MinReplicas: 2, MaxReplicas: 9}}
				return c
			}(), "message.autoscaling.maxReplicas must not exceed the queue count of the upstream topic"},
			{"message maxReplicas above the queues of the named upstream topic", func() client.Object {
				c := base()
				c.Spec.Isolation.UpstreamTopic = "UP_BAD"
				c.Spec.Dependencies.RocketMQ.Topics = []imv1.TopicSpec{{Name: "UP_BAD", Queues: 4}, {Name: "OTHER", Queues: 64}}
				c.Spec.Message.Autoscaling = &imv1.LagAutoscalingSpec{ReplicaRange: imv1.ReplicaRange{MinReplicas: 2, MaxReplicas: 5}}
				return c
			}(), "spec.message.autoscaling.maxReplicas"},
			{"message maxReplicas above the queues of the listed derived upstream topic", func() client.Object {
				c := base()
				c.Spec.Dependencies.RocketMQ.Topics = []imv1.TopicSpec{{Name: "IM_UPSTREAM_x_bad", Queues: 4}}
				c.Spec.Message.Autoscaling = &imv1.LagAutoscalingSpec{ReplicaRange: imv1.ReplicaRange{MinReplicas: 2, MaxReplicas: 6}}
				return c
			}(), "must not exceed the queue count of the upstream topic"},
			{"a Prometheus address that is not a URL", func() client.Object {
				c := base()
				c.Spec.Autoscaling.PrometheusAddress = "prometheus:9090"
				return c
			}(), "spec.autoscaling.prometheusAddress"},
			{"an unknown autoscaling provider", func() client.Object {
				c := base()
				c.Spec.Autoscaling.Provider = "VPA"
				return c
			}(), `Unsupported value: "VPA"`},
			{"read diffusion threshold above max members", func() client.Object {
				c := base()
				c.Spec.Groups = imv1.GroupsSpec{ReadDiffusionThreshold: 600, MaxMembers: 500}
				return c
			}(), "readDiffusionThreshold must not exceed maxMembers"},
			{"one topic for upstream and push", func() client.Object {
				c := base()
				c.Spec.Isolation = imv1.IsolationSpec{UpstreamTopic: "IM_SHARED", PushTopic: "IM_SHARED"}
				return c
			}(), "upstreamTopic and pushTopic must differ"},
			{"one Redis prefix for sessions and sequences", func() client.Object {
				c := base()
				c.Spec.Isolation = imv1.IsolationSpec{SessionKeyPrefix: "im:", SequenceKeyPrefix: "im:"}
				return c
			}(), "sessionKeyPrefix and sequenceKeyPrefix must differ"},
			{"an orphan TTL under a minute", func() client.Object {
				c := base()
				c.Spec.Media.OrphanTTL = &metav1.Duration{Duration: 30 * time.Second}
				return c
			}(), "orphanTTL must be at least 1m"},
			{"an object store endpoint with a path", func() client.Object {
				c := base()
				c.Spec.Media.ObjectStore = &imv1.ObjectStoreSpec{Endpoint: "http://s3:9000/bucket", Bucket: "media", CredentialsSecret: corev1.LocalObjectReference{Name: "s3"}}
				return c
			}(), "spec.media.objectStore.endpoint"},
			{"an unknown default DM policy", func() client.Object {
				c := base()
				c.Spec.Users.DefaultDMPolicy = "nobody"
				return c
			}(), "spec.users.defaultDMPolicy"},
			{"a database name MySQL cannot hold", func() client.Object {
				c := base()
				c.Spec.Isolation = imv1.IsolationSpec{MySQLDatabase: "chat.demo"}
				return c
			}(), "spec.isolation.mysqlDatabase"},
			{"a before-send hook that is not http(s)", func() client.Object {
				c := base()
				c.Spec.Webhooks = imv1.WebhooksSpec{BeforeSend: &imv1.BeforeSendHookSpec{URL: "ftp://hooks.example/x"}, SecretRef: hookSecretRef()}
				return c
			}(), "url must be an http(s) URL with a host"},
			{"an events hook that is not a URL", func() client.Object {
				c := base()
				c.Spec.Webhooks = imv1.WebhooksSpec{Events: &imv1.EventsHookSpec{URL: "hooks example"}, SecretRef: hookSecretRef()}
				return c
			}(), "url must be an http(s) URL with a host"},
			{"an offline push URL without a host", func() client.Object {
				c := base()
				c.Spec.Webhooks = imv1.WebhooksSpec{OfflinePush: &imv1.OfflinePushHookSpec{URL: "https://"}, SecretRef: hookSecretRef()}
				return c
			}(), "url must be an http(s) URL with a host"},
			{"a before-send timeout over 5s", func() client.Object {
				c := base()
				c.Spec.Webhooks = imv1.WebhooksSpec{BeforeSend: &imv1.BeforeSendHookSpec{URL: "https://hooks.example/x", Timeout: &metav1.Duration{Duration: 10 * time.Second}}, SecretRef: hookSecretRef()}
				return c
			}(), "timeout must be between 10ms and 5s"},
			{"an unknown event kind", func() client.Object {
				c := base()
				c.Spec.Webhooks = imv1.WebhooksSpec{Events: &imv1.EventsHookSpec{URL: "https://hooks.example/x", Kinds: []string{"user.sneezed"}}, SecretRef: hookSecretRef()}
				return c
			}(), `Unsupported value: "user.sneezed"`},
			{"webhooks without a signing key", func() client.Object {
				c := base()
				c.Spec.Webhooks = imv1.WebhooksSpec{Events: &imv1.EventsHookSpec{URL: "https://hooks.example/x"}}
				return c
			}(), "webhooks need secretRef"},
			{"the admin API on the service port", func() client.Object {
				c := base()
				c.Spec.Admin = imv1.AdminSpec{SecretRef: hookSecretRef(), Port: 8080}
				return c
			}(), "port must differ from the service port 8080"},
			{"the admin API on the internal port", func() client.Object {
				c := base()
				c.Spec.Admin = imv1.AdminSpec{SecretRef: hookSecretRef(), Port: 9090}
				return c
			}(), "and the internal port 9090"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				err := h.c.Create(ctx, tt.give)
				if err == nil || !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("create error = %v, want Invalid with %q", err, tt.want)
				}
			})
		}

		t.Run("message maxReplicas up to the upstream queue count is accepted", func(t *testing.T) {
			for i, topics := range [][]imv1.TopicSpec{
				{{Name: "IM_UPSTREAM_" + ns + "_ok0", Queues: 16}},
				nil, // 8 queues by default
			} {
				c := base()
				c.Name = fmt.Sprintf("ok%d", i)
				c.Spec.Dependencies.RocketMQ.Topics = topics
				maxR := int32(8)
				if topics != nil {
					maxR = 16
				}
				c.Spec.Message.Autoscaling = &imv1.LagAutoscalingSpec{ReplicaRange: imv1.ReplicaRange{MinReplicas: 2, MaxReplicas: maxR}}
				if err := h.c.Create(ctx, c); err != nil {
					t.Errorf("maxReplicas %d with topics %v: %v", maxR, topics, err)
					continue
				}
				_ = h.c.Delete(ctx, c)
			}
		})

		t.Run("changing clusterRef", func(t *testing.T) {
			patch := []byte(`{"spec":{"clusterRef":{"name":"other"}}}`)
			err := h.c.Patch(ctx, &imv1.GatewayPool{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "edge"}},
				client.RawPatch(types.MergePatchType, patch))
			if err == nil || !strings.Contains(err.Error(), "clusterRef is immutable") {
				t.Errorf("patch error = %v, want clusterRef is immutable", err)
			}
		})
	})
}
