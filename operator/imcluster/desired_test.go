package imcluster

import (
	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"time"

	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
	"github.com/imkube/imkube/operator/internal/golden"
	"github.com/imkube/imkube/operator/internal/render"
)

// sampleCluster is a fully specified IMCluster (as the API server returns it
// after defaulting): message scales on lag, user on CPU, sequence is fixed.
func sampleCluster() *imv1.IMCluster {
	return &imv1.IMCluster{
		ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: "chat", UID: "11111111-2222-3333-4444-555555555555", Generation: 3},
		Spec: imv1.IMClusterSpec{
			Image: "registry.example/imkube", Version: "v1.2.3", ImagePullPolicy: corev1.PullIfNotPresent, LogLevel: "info",
			Dependencies: imv1.DependenciesSpec{
				RocketMQ: imv1.RocketMQSpec{
					NameServers: []string{"rocketmq-0:9876", "rocketmq-1:9876"},
					Topics:      []imv1.TopicSpec{{Name: "IM_UPSTREAM", Queues: 8}},
				},
				Redis: imv1.RedisSpec{
					Addresses: []string{"redis:6379"}, Mode: imv1.RedisStandalone,
					PasswordSecretRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "redis"}, Key: "password"},
				},
				MySQL: imv1.MySQLSpec{DSNSecretRef: corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "mysql"}, Key: "dsn"}},
			},
			Message: imv1.MessageSpec{
				WorkloadSpec: imv1.WorkloadSpec{Replicas: ptr.To[int32](2), Resources: requests("250m", "256Mi")},
				Autoscaling: &imv1.LagAutoscalingSpec{ReplicaRange: imv1.ReplicaRange{MinReplicas: 2, MaxReplicas: 10,
					ScaleDownStabilizationSeconds: ptr.To[int32](120)}, TargetLagPerReplica: 500},
			},
			Sequence: imv1.CPUScaledSpec{WorkloadSpec: imv1.WorkloadSpec{Replicas: ptr.To[int32](3), Resources: requests("100m", "128Mi")}},
			User: imv1.CPUScaledSpec{
				WorkloadSpec: imv1.WorkloadSpec{Replicas: ptr.To[int32](2), Resources: requests("100m", "128Mi")},
				Autoscaling:  &imv1.CPUAutoscalingSpec{ReplicaRange: imv1.ReplicaRange{MinReplicas: 2, MaxReplicas: 6}, TargetCPUUtilizationPercentage: 75},
			},
			Limits:        imv1.LimitsSpec{SendRatePerSecond: 5, SendBurst: 15, MaxMessageBytes: 8192, ConnectionsPerIPPerSecond: 30},
			Groups:        imv1.GroupsSpec{ReadDiffusionThreshold: 200, MaxMembers: 5000},
			Observability: imv1.ObservabilitySpec{OTLPEndpoint: "otel-collector:4317"},
			Autoscaling:   imv1.AutoscalingSpec{Provider: imv1.AutoscalingKEDA, PrometheusAddress: "http://prometheus.monitoring.svc:9090/"},
			Media: imv1.MediaSpec{
				ObjectStore: &imv1.ObjectStoreSpec{Endpoint: "http://s3.storage:9000", Bucket: "chat-media", Region: "us-east-1",
					PathStyle: ptr.To(true), CredentialsSecret: corev1.LocalObjectReference{Name: "s3"}},
				Image:             imv1.MediaKindSpec{MaxBytes: 5 << 20},
				MaxPendingUploads: 10, OrphanTTL: &metav1.Duration{Duration: 6 * time.Hour}, ThumbnailMaxPixels: 40000000,
			},
			Webhooks: imv1.WebhooksSpec{
				BeforeSend:  &imv1.BeforeSendHookSpec{URL: "https://hooks.example/before", Timeout: &metav1.Duration{Duration: 300 * time.Millisecond}, FailOpen: true},
				Events:      &imv1.EventsHookSpec{URL: "https://hooks.example/events", Kinds: []string{"message.stored", "message.recalled"}},
				OfflinePush: &imv1.OfflinePushHookSpec{URL: "http://push.example/offline"},
				SecretRef:   &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "hooks"}, Key: "signing-key"},
			},
			Admin: imv1.AdminSpec{SecretRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "admin"}, Key: "key"}, Port: 9091},
		},
	}
}

func requests(cpu, mem string) corev1.ResourceRequirements {
	return corev1.ResourceRequirements{Requests: corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem),
	}}
}

func TestDesiredObjectsMatchGoldenFiles(t *testing.T) {
	s := newScope(sampleCluster(), render.Options{Version: "v0.0.0-operator"})
	withHPA := sampleCluster()
	withHPA.Spec.Autoscaling.Provider = imv1.AutoscalingHPA
	hs := newScope(withHPA, render.Options{Version: "v0.0.0-operator"})
	tests := []struct {
		name string
		give any
	}{
		{"deployment-message", desiredDeployment(s, render.Message)},
		{"deployment-sequence", desiredDeployment(s, render.Sequence)},
		{"deployment-user", desiredDeployment(s, render.User)},
		{"service-user", desiredService(s, render.User)},
		{"hpa-message", desiredHPA(hs, render.Message)},
		{"scaledobject-message", desiredScaledObject(s)},
		{"hpa-user", desiredHPA(s, render.User)},
		{"pdb-sequence", desiredPDB(s, render.Sequence)},
		{"configmap", desiredConfigMap(s)},
		{"secret-auth", desiredAuthSecret(s, "0123abcd")},
		{"servicemonitor", desiredServiceMonitor(s)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			golden.Assert(t, tt.name, tt.give)
		})
	}
}

func TestComponentWithoutAutoscalingHasNoHPAAndFixedReplicas(t *testing.T) {
	s := newScope(sampleCluster(), render.Options{})
	if hpa := desiredHPA(s, render.Sequence); hpa != nil {
		t.Errorf("sequence without autoscaling got an HPA: %v", hpa.Name)
	}
	if got := desiredDeployment(s, render.Sequence).Spec.Replicas; got == nil || *got != 3 {
		t.Errorf("sequence replicas = %v, want 3", got)
	}
	if got := desiredDeployment(s, render.Message).Spec.Replicas; got != nil {
		t.Errorf("autoscaled message Deployment sets replicas %d; the HPA owns them", *got)
	}
}

func TestImageDefaultsToOperatorVersion(t *testing.T) {
	tests := []struct {
		name          string
		image, verson string
		want          string
	}{
		{"explicit image and version", "r/x", "v9", "r/x:v9"},
		{"no version uses the operator's", "r/x", "", "r/x:v0.5.0"},
		{"nothing set uses the default repository", "", "", render.DefaultImage + ":v0.5.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := sampleCluster()
			c.Spec.Image, c.Spec.Version = tt.image, tt.verson
			if got := newScope(c, render.Options{Version: "v0.5.0"}).image; got != tt.want {
				t.Errorf("image = %q, want %q", got, tt.want)
			}
		})
	}
}

// Settings the processes hot-reload (limits, group settings: the ConfigMap)
// change the ConfigMap and no pod template; settings read at start (here the
// recall window and the log level, environment variables) change it.
func TestOnlyRestartSettingsChangePodTemplates(t *testing.T) {
	templates := func(c *imv1.IMCluster) map[string]any {
		s := newScope(c, render.Options{})
		out := map[string]any{}
		for _, comp := range []string{render.Message, render.User, render.Sequence} {
			out[comp] = desiredDeployment(s, comp).Spec.Template
		}
		return out
	}
	base := sampleCluster()
	hot := sampleCluster()
	hot.Spec.Limits.SendRatePerSecond = 6
	hot.Spec.Limits.SendBurst = 12
	hot.Spec.Limits.MaxMessageBytes = 1234
	hot.Spec.Groups.MaxMembers = 77
	hot.Spec.Groups.ReadDiffusionThreshold = 33
	if d := cmp.Diff(templates(base), templates(hot)); d != "" {
		t.Errorf("hot-reloaded settings changed pod templates (-before +after):\n%s", d)
	}
	if a, b := desiredConfigMap(newScope(base, render.Options{})), desiredConfigMap(newScope(hot, render.Options{})); a.Data["config.json"] == b.Data["config.json"] ||
		a.Data["sentinel-rules.json"] == b.Data["sentinel-rules.json"] || a.Annotations[render.AnnotationConfigHash] == b.Annotations[render.AnnotationConfigHash] {
		t.Error("the ConfigMap did not change with the limits")
	}
	for name, edit := range map[string]func(c *imv1.IMCluster){
		"recall window": func(c *imv1.IMCluster) { c.Spec.Messages.RecallWindowSeconds = 30 },
		"log level":     func(c *imv1.IMCluster) { c.Spec.LogLevel = "debug" },
	} {
		c := sampleCluster()
		edit(c)
		if cmp.Diff(templates(base), templates(c)) == "" {
			t.Errorf("%s (read at start) did not change the pod templates", name)
		}
	}
}

func TestConfigJSONFollowsTheServiceContract(t *testing.T) {
	cm := desiredConfigMap(newScope(sampleCluster(), render.Options{}))
	var cfg struct {
		Limits map[string]int `json:"limits"`
		Groups map[string]int `json:"groups"`
	}
	if err := json.Unmarshal([]byte(cm.Data["config.json"]), &cfg); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"sendRatePerSecond": 5, "sendBurst": 15, "maxMessageBytes": 8192, "connectionsPerIPPerSecond": 30}
	for k, v := range want {
		if cfg.Limits[k] != v {
			t.Errorf("limits.%s = %d, want %d", k, cfg.Limits[k], v)
		}
	}
	if cfg.Groups["readDiffusionThreshold"] != 200 || cfg.Groups["maxMembers"] != 5000 {
		t.Errorf("groups = %v", cfg.Groups)
	}
	var rules map[string][]map[string]any
	if err := json.Unmarshal([]byte(cm.Data["sentinel-rules.json"]), &rules); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"flow", "hotspot", "circuitBreaker", "system"} {
		if _, ok := rules[k]; !ok {
			t.Errorf("sentinel-rules.json lacks %q", k)
		}
	}
	send := rules["hotspot"][0]
	if send["resource"] != "gateway.send" || send["threshold"] != float64(5) || send["burstCount"] != float64(15) {
		t.Errorf("hotspot rule for gateway.send = %v, want threshold 5 burst 15", send)
	}
}

// The root filesystem is read-only: $HOME (the RocketMQ client writes
// $HOME/.rocketmq_client_go) and the temp folder must be on an emptyDir.
func TestEveryContainerWritesOnlyToEmptyDirs(t *testing.T) {
	s := newScope(sampleCluster(), render.Options{})
	for _, comp := range components() {
		if err := render.CheckWritablePaths(desiredDeployment(s, comp).Spec.Template.Spec); err != nil {
			t.Errorf("%s: %v", comp, err)
		}
	}
}

// kube-prometheus-stack selects ServiceMonitors by label: the spec's labels
// are added, the operator's own labels cannot be overridden, and every
// scraped series is labelled with the IMCluster's name.
func TestServiceMonitorTakesTheSpecsLabelsAndLabelsSeriesWithTheCluster(t *testing.T) {
	c := sampleCluster()
	c.Spec.Observability.ServiceMonitorLabels = map[string]string{"release": "kube-prometheus-stack", render.LabelManagedBy: "someone-else"}
	sm := desiredServiceMonitor(newScope(c, render.Options{}))
	labels := sm.GetLabels()
	if labels["release"] != "kube-prometheus-stack" || labels[render.LabelManagedBy] != render.ManagedByValue {
		t.Fatalf("labels = %v", labels)
	}
	eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	rl := eps[0].(map[string]any)["relabelings"].([]any)[0].(map[string]any)
	if rl["targetLabel"] != "imcluster" || rl["sourceLabels"].([]any)[0] != "__meta_kubernetes_service_label_app_kubernetes_io_instance" {
		t.Fatalf("relabeling = %v", rl)
	}
}

// The provider picks exactly one autoscaler for message (KEDA's ScaledObject
// or the plain HPA); an IMCluster stored before spec.autoscaling existed
// (empty provider) gets KEDA with the kube-prometheus-stack address.
// Sequence and user keep their CPU HPA either way.
func TestAutoscalingProviderPicksScaledObjectOrHPA(t *testing.T) {
	for _, tt := range []struct {
		provider       imv1.AutoscalingProvider
		wantKEDA       bool
		wantServerAddr string
	}{
		{"", true, render.DefaultPrometheusAddress},
		{imv1.AutoscalingKEDA, true, render.DefaultPrometheusAddress},
		{imv1.AutoscalingHPA, false, ""},
	} {
		c := sampleCluster()
		c.Spec.Autoscaling = imv1.AutoscalingSpec{Provider: tt.provider}
		s := newScope(c, render.Options{})
		so, hpa := desiredScaledObject(s), desiredHPA(s, render.Message)
		if (so != nil) != tt.wantKEDA || (hpa != nil) == tt.wantKEDA {
			t.Errorf("provider %q: ScaledObject %v, message HPA %v; want exactly the %s one", tt.provider, so != nil, hpa != nil,
				map[bool]string{true: "KEDA", false: "HPA"}[tt.wantKEDA])
			continue
		}
		if desiredHPA(s, render.User) == nil {
			t.Errorf("provider %q: user lost its CPU HPA", tt.provider)
		}
		if so == nil {
			continue
		}
		trs, _, _ := unstructured.NestedSlice(so.Object, "spec", "triggers")
		md, _, _ := unstructured.NestedStringMap(trs[0].(map[string]any), "metadata")
		if md["serverAddress"] != tt.wantServerAddr {
			t.Errorf("provider %q: serverAddress = %q, want %q", tt.provider, md["serverAddress"], tt.wantServerAddr)
		}
		if want := `max(imkube_broker_consumer_lag{imcluster_namespace="chat",imcluster="demo"})`; md["query"] != want {
			t.Errorf("query = %s, want %s", md["query"], want)
		}
	}
	c := sampleCluster()
	c.Spec.Message.Autoscaling = nil
	if so := desiredScaledObject(newScope(c, render.Options{})); so != nil {
		t.Error("message without autoscaling got a ScaledObject")
	}
}
