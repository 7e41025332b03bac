package imcluster

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
	"github.com/imkube/imkube/operator/internal/render"
)

// fakeBroker lists push groups and deletes those its caller says are dead,
// as internal/bus/rocketmq.Pruner does on a real broker.
type fakeBroker struct {
	groups  []string
	calls   []string // "nameServers topic prefix"
	deleted []string
}

func (b *fakeBroker) pruner(ns []string, topic, prefix string) GroupPruner {
	b.calls = append(b.calls, strings.Join(ns, ";")+" "+topic+" "+prefix)
	return prunerFunc(func(_ context.Context, alive func(string) bool) ([]string, error) {
		var removed []string
		for _, g := range b.groups {
			gw, ok := strings.CutPrefix(g, prefix)
			if !ok || alive(gw) {
				continue
			}
			removed = append(removed, g)
		}
		b.deleted = append(b.deleted, removed...)
		b.groups = slices.DeleteFunc(b.groups, func(g string) bool { return slices.Contains(removed, g) })
		return removed, nil
	})
}

type prunerFunc func(context.Context, func(string) bool) ([]string, error)

func (f prunerFunc) Prune(ctx context.Context, alive func(string) bool) ([]string, error) {
	return f(ctx, alive)
}

func pruneCluster(ns, name string) *imv1.IMCluster {
	c := &imv1.IMCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	c.Spec.Dependencies.RocketMQ.NameServers = []string{"namesrv:9876"}
	return c
}

func gatewayPod(ns, cluster, name string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
		Labels: render.Labels(cluster, render.Gateway, "edge", "")}}
}

// Only the groups of gateways gone for the grace period go; live gateways,
// other clusters' groups (also one whose override extends this cluster's
// prefix) and groups of gateways gone a moment ago stay; clusters are
// pruned one at a time with the gap between them.
func TestPrunerDeletesOnlyGroupsOfGatewaysGoneForTheGrace(t *testing.T) {
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = imv1.AddToScheme(s)
	demo, support := pruneCluster("chat", "demo"), pruneCluster("support", "demo")
	// An override that extends demo's derived prefix: its groups are not demo's.
	tricky := pruneCluster("chat", "tricky")
	tricky.Spec.Isolation.ConsumerGroupPrefix = "chat_demo_imkube-push-x_"
	c := fake.NewClientBuilder().WithScheme(s).WithObjects(demo, support, tricky,
		gatewayPod("chat", "demo", "edge-gateway-live"), gatewayPod("support", "demo", "edge-gateway-old"),
		gatewayPod("chat", "tricky", "edge-gateway-a1")).Build()

	b := &fakeBroker{groups: []string{
		"chat_demo_imkube-push-edge-gateway-live",
		"chat_demo_imkube-push-edge-gateway-old",              // gone
		"support_demo_imkube-push-edge-gateway-old",           // alive in support
		"chat_demo_imkube-push-x_imkube-push-edge-gateway-a1", // tricky's, alive
		"imkube-push-edge-gateway-old",                        // another installation's
	}}
	now := time.Unix(1000, 0)
	var waits []time.Duration
	p := &Pruner{Client: c, New: b.pruner, Log: logr.Discard(), Grace: 2 * time.Minute, Gap: 2 * time.Second,
		now:  func() time.Time { return now },
		wait: func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil }}

	if err := p.pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(b.deleted) != 0 {
		t.Fatalf("first pass deleted %v: gateways just seen gone must be kept for the grace", b.deleted)
	}
	if want := []time.Duration{2 * time.Second, 2 * time.Second}; !slices.Equal(waits, want) {
		t.Errorf("waits between clusters = %v, want %v", waits, want)
	}
	if want := "namesrv.chat.svc:9876 IM_PUSH_chat_demo chat_demo_imkube-push-"; !slices.Contains(b.calls, want) {
		t.Errorf("pruner calls %v, want one %q (names in the cluster's namespace, its push topic and prefix)", b.calls, want)
	}

	now = now.Add(3 * time.Minute)
	if err := p.pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []string{"chat_demo_imkube-push-edge-gateway-old"}
	if !slices.Equal(b.deleted, want) {
		t.Errorf("deleted %v, want %v", b.deleted, want)
	}
}
