package imcluster

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
	"github.com/imkube/imkube/internal/telemetry"
	"github.com/imkube/imkube/internal/telemetry/telemetrytest"
)

// The exporter publishes one broker-side lag series per IMCluster, asks the
// brokers of that cluster (namespace-qualified name servers) for its upstream
// topic and message group, and drops the series of a cluster whose lag
// cannot be read or that is gone.
func TestLagExporterPublishesBrokerLagPerCluster(t *testing.T) {
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = imv1.AddToScheme(s)
	demo, other := pruneCluster("chat", "demo"), pruneCluster("support", "desk")
	other.Spec.Isolation = imv1.IsolationSpec{UpstreamTopic: "UP_DESK", ConsumerGroupPrefix: "desk_"}
	c := fake.NewClientBuilder().WithScheme(s).WithObjects(demo, other).Build()

	tel, err := telemetry.New(t.Context(), telemetry.Config{ServiceName: "imkube-operator"})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	m, err := telemetry.NewOperator(tel.MeterProvider())
	if err != nil {
		t.Fatal(err)
	}
	lags := map[string]int64{}
	var asked []string
	broken := map[string]bool{}
	e := &LagExporter{Client: c, Metrics: m, Log: logr.Discard(),
		Lag: func(_ context.Context, ns []string, topic, group string) (int64, error) {
			asked = append(asked, strings.Join(ns, ";")+" "+topic+" "+group)
			if broken[topic] {
				return 0, errors.New("broker unreachable")
			}
			return lags[topic], nil
		}}
	scrape := func() map[string]float64 {
		t.Helper()
		fams, err := telemetrytest.Scrape(tel.Handler())
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, mt := range fams["imkube_broker_consumer_lag"].GetMetric() {
			l := map[string]string{}
			for _, lp := range mt.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			out[l["imcluster_namespace"]+"/"+l["imcluster"]+" "+l["topic"]+" "+l["group"]] = mt.GetGauge().GetValue()
		}
		return out
	}

	demoTopic := "IM_UPSTREAM_chat_demo"
	lags[demoTopic], lags["UP_DESK"] = 42, 7
	e.Pass(t.Context())
	want := map[string]float64{
		"chat/demo " + demoTopic + " chat_demo_imkube-message": 42,
		"support/desk UP_DESK desk_imkube-message":             7,
	}
	if diff := cmp.Diff(want, scrape()); diff != "" {
		t.Errorf("after the first pass (-want +got):\n%s", diff)
	}
	wantAsked := []string{"namesrv.chat.svc:9876 " + demoTopic + " chat_demo_imkube-message",
		"namesrv.support.svc:9876 UP_DESK desk_imkube-message"}
	if diff := cmp.Diff(wantAsked, asked); diff != "" {
		t.Errorf("lag requests (-want +got):\n%s", diff)
	}

	// The lag grows; desk's brokers fail: its series goes rather than stays stale.
	lags[demoTopic] = 90
	broken["UP_DESK"] = true
	e.Pass(t.Context())
	want = map[string]float64{"chat/demo " + demoTopic + " chat_demo_imkube-message": 90}
	if diff := cmp.Diff(want, scrape()); diff != "" {
		t.Errorf("after desk's brokers failed (-want +got):\n%s", diff)
	}

	// desk recovers, demo is deleted: only desk's series is left.
	broken["UP_DESK"] = false
	if err := c.Delete(t.Context(), demo); err != nil {
		t.Fatal(err)
	}
	e.Pass(t.Context())
	want = map[string]float64{"support/desk UP_DESK desk_imkube-message": 7}
	if diff := cmp.Diff(want, scrape()); diff != "" {
		t.Errorf("after demo was deleted (-want +got):\n%s", diff)
	}
}
