package gatewaypool

import (
	"k8s.io/apimachinery/pkg/api/equality"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
	"github.com/imkube/imkube/operator/internal/golden"
	"github.com/imkube/imkube/operator/internal/render"
)

func sampleCluster() *imv1.IMCluster {
	return &imv1.IMCluster{
		ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: "chat", UID: "11111111-2222-3333-4444-555555555555"},
		Spec: imv1.IMClusterSpec{
			Image: "registry.example/imkube", Version: "v1.2.3",
			Dependencies: imv1.DependenciesSpec{
				RocketMQ: imv1.RocketMQSpec{NameServers: []string{"rocketmq:9876"}},
				Redis:    imv1.RedisSpec{Addresses: []string{"redis:6379"}, Mode: imv1.RedisStandalone},
				MySQL:    imv1.MySQLSpec{DSNSecretRef: corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "mysql"}, Key: "dsn"}},
			},
		},
	}
}

func samplePool() *imv1.GatewayPool {
	return &imv1.GatewayPool{
		ObjectMeta: metav1.ObjectMeta{Name: "edge", Namespace: "chat", UID: "66666666-7777-8888-9999-000000000000", Generation: 2},
		Spec: imv1.GatewayPoolSpec{
			ClusterRef: imv1.ClusterReference{Name: "demo"},
			Autoscaling: &imv1.GatewayAutoscalingSpec{
				ReplicaRange:            imv1.ReplicaRange{MinReplicas: 2, MaxReplicas: 20, ScaleDownStabilizationSeconds: ptr.To[int32](90)},
				TargetConnectionsPerPod: 4000,
			},
			MaxConnectionsPerPod: 8000,
			Service: imv1.GatewayServiceSpec{
				Type: corev1.ServiceTypeLoadBalancer, Port: 443,
				Annotations: map[string]string{"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"},
			},
			DrainTimeout:      &metav1.Duration{Duration: 45 * time.Second},
			HeartbeatInterval: &metav1.Duration{Duration: 20 * time.Second},
			NodeSelector:      map[string]string{"node-role/edge": "true"},
			Tolerations:       []corev1.Toleration{{Key: "edge", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
		},
	}
}

func TestDesiredObjectsMatchGoldenFiles(t *testing.T) {
	s := newScope(samplePool(), sampleCluster(), render.Options{Version: "v0.0.0-operator"})
	withHPA := sampleCluster()
	withHPA.Spec.Autoscaling.Provider = imv1.AutoscalingHPA
	tests := []struct {
		name string
		give any
	}{
		{"deployment", desiredDeployment(s)},
		{"service", desiredService(s)},
		{"service-internal", desiredInternalService(s)},
		{"hpa", desiredHPA(newScope(samplePool(), withHPA, render.Options{Version: "v0.0.0-operator"}))},
		{"scaledobject", desiredScaledObject(s)},
		{"pdb", desiredPDB(s)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			golden.Assert(t, tt.name, tt.give)
		})
	}
}

func TestGracePeriodCoversPreStopAndDrain(t *testing.T) {
	tests := []struct {
		name  string
		drain time.Duration
		want  int64
	}{
		{"45s drain", 45 * time.Second, 55},
		{"1m drain", time.Minute, 70},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := samplePool()
			p.Spec.DrainTimeout = &metav1.Duration{Duration: tt.drain}
			d := desiredDeployment(newScope(p, sampleCluster(), render.Options{}))
			if got := *d.Spec.Template.Spec.TerminationGracePeriodSeconds; got != tt.want {
				t.Errorf("terminationGracePeriodSeconds = %d, want %d", got, tt.want)
			}
			if d.Spec.Template.Spec.Containers[0].Lifecycle.PreStop.Sleep == nil {
				t.Error("no preStop sleep")
			}
		})
	}
}

// spec.drain.connectionsPerSecond reaches the gateways as IMKUBE_DRAIN_RATE
// (default 500) next to the drain window.
func TestDrainRateReachesTheGateways(t *testing.T) {
	env := func(p *imv1.GatewayPool) map[string]string {
		out := map[string]string{}
		for _, e := range desiredDeployment(newScope(p, sampleCluster(), render.Options{})).Spec.Template.Spec.Containers[0].Env {
			out[e.Name] = e.Value
		}
		return out
	}
	if got := env(samplePool())["IMKUBE_DRAIN_RATE"]; got != "500" {
		t.Errorf("default IMKUBE_DRAIN_RATE = %q, want 500", got)
	}
	p := samplePool()
	p.Spec.Drain.ConnectionsPerSecond = 50
	p.Spec.DrainTimeout = &metav1.Duration{Duration: 10 * time.Minute}
	if e := env(p); e["IMKUBE_DRAIN_RATE"] != "50" || e["IMKUBE_DRAIN_TIMEOUT"] != "10m0s" {
		t.Errorf("IMKUBE_DRAIN_RATE = %q, IMKUBE_DRAIN_TIMEOUT = %q; want 50 and 10m0s", e["IMKUBE_DRAIN_RATE"], e["IMKUBE_DRAIN_TIMEOUT"])
	}
}

// Trusted proxies reach the gateways; externalTrafficPolicy the Service.
func TestTrustedProxiesAndTrafficPolicy(t *testing.T) {
	p := samplePool()
	p.Spec.TrustedProxies = []string{"10.0.0.0/8", "192.168.0.0/16"}
	p.Spec.Service.Type, p.Spec.Service.ExternalTrafficPolicy = corev1.ServiceTypeLoadBalancer, corev1.ServiceExternalTrafficPolicyLocal
	s := newScope(p, sampleCluster(), render.Options{})
	var got string
	for _, e := range desiredDeployment(s).Spec.Template.Spec.Containers[0].Env {
		if e.Name == "IMKUBE_TRUSTED_PROXIES" {
			got = e.Value
		}
	}
	if got != "10.0.0.0/8,192.168.0.0/16" {
		t.Errorf("IMKUBE_TRUSTED_PROXIES = %q", got)
	}
	if pol := desiredService(s).Spec.ExternalTrafficPolicy; pol != corev1.ServiceExternalTrafficPolicyLocal {
		t.Errorf("externalTrafficPolicy = %q, want Local", pol)
	}
}

// An autoscaled pool gets KEDA's ScaledObject (the default provider) or the
// plain HPA, never both; an unknown IMCluster (nil) means the default.
func TestPoolAutoscalerFollowsTheClusterProvider(t *testing.T) {
	for _, tt := range []struct {
		cluster  func() *imv1.IMCluster
		wantKEDA bool
	}{
		{func() *imv1.IMCluster { return nil }, true},
		{sampleCluster, true},
		{func() *imv1.IMCluster {
			c := sampleCluster()
			c.Spec.Autoscaling.Provider = imv1.AutoscalingHPA
			return c
		}, false},
	} {
		s := newScope(samplePool(), tt.cluster(), render.Options{})
		so, hpa := desiredScaledObject(s), desiredHPA(s)
		if (so != nil) != tt.wantKEDA || (hpa != nil) == tt.wantKEDA {
			t.Errorf("cluster %v: ScaledObject %v, HPA %v, want KEDA %v", tt.cluster() != nil, so != nil, hpa != nil, tt.wantKEDA)
		}
	}
}

func TestFixedPoolHasReplicasAndNoHPA(t *testing.T) {
	p := samplePool()
	p.Spec.Autoscaling, p.Spec.Replicas = nil, ptr.To[int32](4)
	s := newScope(p, sampleCluster(), render.Options{})
	if h := desiredHPA(s); h != nil {
		t.Errorf("fixed pool got HPA %s", h.Name)
	}
	if so := desiredScaledObject(s); so != nil {
		t.Errorf("fixed pool got ScaledObject %s", so.GetName())
	}
	if got := desiredDeployment(s).Spec.Replicas; got == nil || *got != 4 {
		t.Errorf("replicas = %v, want 4", got)
	}
}

// The root filesystem is read-only: $HOME (the RocketMQ client writes
// $HOME/.rocketmq_client_go) and the temp folder must be on an emptyDir.
func TestGatewayWritesOnlyToEmptyDirs(t *testing.T) {
	if err := render.CheckWritablePaths(desiredDeployment(newScope(samplePool(), sampleCluster(), render.Options{})).Spec.Template.Spec); err != nil {
		t.Error(err)
	}
}

// The client-facing Service (here a LoadBalancer) carries the client port
// only; the internal port (/metrics, probes) is on a headless Service.
func TestInternalPortStaysOffTheClientService(t *testing.T) {
	s := newScope(samplePool(), sampleCluster(), render.Options{})
	for _, p := range desiredService(s).Spec.Ports {
		if p.Name == render.MetricsPortName || p.TargetPort.StrVal == render.MetricsPortName {
			t.Fatalf("client Service exposes the internal port: %+v", p)
		}
	}
	in := desiredInternalService(s)
	if in.Spec.Type != corev1.ServiceTypeClusterIP || in.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Fatalf("internal Service: type %s clusterIP %q, want headless ClusterIP", in.Spec.Type, in.Spec.ClusterIP)
	}
	if len(in.Spec.Ports) != 1 || in.Spec.Ports[0].Name != render.MetricsPortName {
		t.Fatalf("internal Service ports: %+v", in.Spec.Ports)
	}
	c := desiredDeployment(s).Spec.Template.Spec.Containers[0]
	if c.ReadinessProbe.HTTPGet.Port.StrVal != render.MetricsPortName || c.LivenessProbe.HTTPGet.Port.StrVal != render.MetricsPortName {
		t.Fatalf("probes not on the internal port: %+v %+v", c.ReadinessProbe.HTTPGet, c.LivenessProbe.HTTPGet)
	}
}

// Gateways hot-reload the limits and the Sentinel rules (the cluster's
// ConfigMap): changing them rolls no gateway.
func TestLimitsChangeNoGatewayPodTemplate(t *testing.T) {
	a, b := sampleCluster(), sampleCluster()
	b.Spec.Limits.SendRatePerSecond, b.Spec.Limits.ConnectionsPerIPPerSecond = 3, 4
	ta := desiredDeployment(newScope(samplePool(), a, render.Options{})).Spec.Template
	tb := desiredDeployment(newScope(samplePool(), b, render.Options{})).Spec.Template
	if !equality.Semantic.DeepEqual(ta, tb) {
		t.Errorf("a limits change changed the gateway pod template:\n%v\n%v", ta.Annotations, tb.Annotations)
	}
}
