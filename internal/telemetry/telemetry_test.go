package telemetry_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/imkube/imkube/internal/telemetry"
	"github.com/imkube/imkube/internal/telemetry/telemetrytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The dashboards and the HPA adapter rules query these exact names.
func TestInstrumentSetsExportTheDocumentedPrometheusNames(t *testing.T) {
	want := map[string]dto.MetricType{
		"imkube_gateway_connections":                dto.MetricType_GAUGE,
		"imkube_gateway_connects_total":             dto.MetricType_COUNTER,
		"imkube_gateway_disconnects_total":          dto.MetricType_COUNTER,
		"imkube_gateway_frames_in_total":            dto.MetricType_COUNTER,
		"imkube_gateway_frames_out_total":           dto.MetricType_COUNTER,
		"imkube_gateway_send_ack_seconds":           dto.MetricType_HISTOGRAM,
		"imkube_gateway_delivery_seconds":           dto.MetricType_HISTOGRAM,
		"imkube_gateway_pushes_total":               dto.MetricType_COUNTER,
		"imkube_gateway_bytes_out_total":            dto.MetricType_COUNTER,
		"imkube_gateway_drain_evacuated_total":      dto.MetricType_COUNTER,
		"imkube_gateway_drain_seconds":              dto.MetricType_HISTOGRAM,
		"imkube_message_consumer_lag":               dto.MetricType_GAUGE,
		"imkube_message_processing_seconds":         dto.MetricType_HISTOGRAM,
		"imkube_message_dedup_hits_total":           dto.MetricType_COUNTER,
		"imkube_message_store_seconds":              dto.MetricType_HISTOGRAM,
		"imkube_message_messages_total":             dto.MetricType_COUNTER,
		"imkube_sequence_allocations_total":         dto.MetricType_COUNTER,
		"imkube_sequence_bound_raises_total":        dto.MetricType_COUNTER,
		"imkube_sequence_recoveries_total":          dto.MetricType_COUNTER,
		"imkube_sequence_requests_total":            dto.MetricType_COUNTER,
		"imkube_sequence_section_exhaustions_total": dto.MetricType_COUNTER,
		"imkube_process_ready":                      dto.MetricType_GAUGE,
		"imkube_dependency_up":                      dto.MetricType_GAUGE,
		"imkube_flow_blocked_total":                 dto.MetricType_COUNTER,
		"imkube_operator_reconcile_total":           dto.MetricType_COUNTER,
		"imkube_operator_reconcile_seconds":         dto.MetricType_HISTOGRAM,
		"imkube_broker_consumer_lag":                dto.MetricType_GAUGE,
		"imkube_webhook_delivered_total":            dto.MetricType_COUNTER,
		"imkube_webhook_failed_attempts_total":      dto.MetricType_COUNTER,
		"imkube_webhook_dead_letters_total":         dto.MetricType_COUNTER,
		"imkube_webhook_outbox_pending":             dto.MetricType_GAUGE,
	}
	wantLabels := map[string][]string{
		"imkube_gateway_disconnects_total":     {"reason"},
		"imkube_gateway_frames_in_total":       {"type"},
		"imkube_gateway_frames_out_total":      {"type"},
		"imkube_message_messages_total":        {"diffusion"},
		"imkube_sequence_requests_total":       {"outcome"},
		"imkube_flow_blocked_total":            {"kind", "resource"},
		"imkube_operator_reconcile_total":      {"controller", "result"},
		"imkube_operator_reconcile_seconds":    {"controller"},
		"imkube_broker_consumer_lag":           {"group", "imcluster", "imcluster_namespace", "topic"},
		"imkube_webhook_delivered_total":       {"target"},
		"imkube_webhook_failed_attempts_total": {"target"},
		"imkube_webhook_dead_letters_total":    {"target"},
		"imkube_dependency_up":                 {"dependency"},
	}

	fams := telemetrytest.Families(t)
	var got []string
	for name, f := range fams {
		if !strings.HasPrefix(name, "imkube_") {
			continue
		}
		got = append(got, name)
		if wt, ok := want[name]; ok && f.GetType() != wt {
			t.Errorf("%s has type %s, want %s", name, f.GetType(), wt)
		}
		var labels []string
		for _, lp := range f.GetMetric()[0].GetLabel() {
			labels = append(labels, lp.GetName())
		}
		if !slices.Equal(labels, wantLabels[name]) {
			t.Errorf("%s has labels %v, want %v", name, labels, wantLabels[name])
		}
	}
	var wantNames []string
	for n := range want {
		wantNames = append(wantNames, n)
	}
	slices.Sort(got)
	slices.Sort(wantNames)
	if !slices.Equal(got, wantNames) {
		t.Errorf("exported imkube metrics:\n got %v\nwant %v", got, wantNames)
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("the private registry lacks the Go runtime collector (go_goroutines)")
	}
}

func TestConnectionsGaugeFollowsConnectsAndDisconnects(t *testing.T) {
	tel := newTelemetry(t, telemetry.Config{ServiceName: "imkube-gateway"})
	g, err := telemetry.NewGateway(tel.MeterProvider())
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		g.Connected()
	}
	g.Disconnected("client_closed")
	g.Disconnected("slow_consumer")
	g.Disconnected("slow_consumer")
	g.Connected()

	fams, err := telemetrytest.Scrape(tel.Handler())
	if err != nil {
		t.Fatal(err)
	}
	if got := fams["imkube_gateway_connections"].GetMetric()[0].GetGauge().GetValue(); got != 1 {
		t.Errorf("connections = %v, want 1", got)
	}
	if got := fams["imkube_gateway_connects_total"].GetMetric()[0].GetCounter().GetValue(); got != 4 {
		t.Errorf("connects_total = %v, want 4", got)
	}
	byReason := map[string]float64{}
	for _, m := range fams["imkube_gateway_disconnects_total"].GetMetric() {
		byReason[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
	}
	if byReason["client_closed"] != 1 || byReason["slow_consumer"] != 2 || len(byReason) != 2 {
		t.Errorf("disconnects by reason = %v, want client_closed:1 slow_consumer:2", byReason)
	}
}

func TestLabelValuesAreBoundedAndEmptyValuesNamed(t *testing.T) {
	tel := newTelemetry(t, telemetry.Config{ServiceName: "imkube-gateway"})
	g, err := telemetry.NewGateway(tel.MeterProvider())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		g.FrameIn(fmt.Sprintf("junk-%d", i))
	}
	g.FrameIn("")
	fams, err := telemetrytest.Scrape(tel.Handler())
	if err != nil {
		t.Fatal(err)
	}
	series := fams["imkube_gateway_frames_in_total"].GetMetric()
	values := map[string]float64{}
	var total float64
	for _, m := range series {
		values[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		total += m.GetCounter().GetValue()
	}
	if len(series) > 65 {
		t.Errorf("frames_in_total has %d series, want at most 65", len(series))
	}
	if total != 1001 {
		t.Errorf("frames_in_total sums to %v, want every one of the 1001 frames counted", total)
	}
	if values[telemetry.OverflowLabel] == 0 || values["junk-0"] != 1 {
		t.Errorf("want the first values kept and the rest under %q, got %d values", telemetry.OverflowLabel, len(values))
	}
}

func TestNilInstrumentSetsRecordNothingAndDoNotPanic(t *testing.T) {
	sets := []any{(*telemetry.Gateway)(nil), (*telemetry.Message)(nil), (*telemetry.Sequence)(nil),
		(*telemetry.Flow)(nil), (*telemetry.Operator)(nil)}
	for _, s := range sets {
		if err := telemetrytest.Exercise(s); err != nil {
			t.Fatal(err)
		}
	}
	noop, err := telemetrytest.Sets(nil)
	if err != nil {
		t.Fatalf("sets on a nil MeterProvider: %v", err)
	}
	for _, s := range noop {
		if err := telemetrytest.Exercise(s); err != nil {
			t.Fatal(err)
		}
	}
	var tel *telemetry.Telemetry
	tel.MeterProvider().Meter("x")
	_, span := tel.Tracer("x").Start(t.Context(), "x")
	span.End()
	if err := tel.Shutdown(t.Context()); err != nil {
		t.Errorf("nil Telemetry Shutdown: %v", err)
	}
	if _, err := telemetrytest.Scrape(tel.Handler()); err != nil {
		t.Errorf("nil Telemetry /metrics: %v", err)
	}
}

func TestTraceContextCrossesABusHeader(t *testing.T) {
	tel := newTelemetry(t, telemetry.Config{ServiceName: "imkube-gateway"})
	ctx, span := tel.Tracer("gateway").Start(t.Context(), "gateway.receive")
	defer span.End()

	header := telemetry.Inject(ctx, nil)
	if !strings.HasPrefix(header["traceparent"], "00-"+span.SpanContext().TraceID().String()) {
		t.Fatalf("header = %v, want a W3C traceparent with trace %s", header, span.SpanContext().TraceID())
	}

	consumer := newTelemetry(t, telemetry.Config{ServiceName: "imkube-message"})
	cctx := telemetry.Extract(context.Background(), header)
	_, child := consumer.Tracer("message").Start(cctx, "message.consume")
	defer child.End()
	if child.SpanContext().TraceID() != span.SpanContext().TraceID() {
		t.Errorf("consumer span trace %s, want the producer's %s", child.SpanContext().TraceID(), span.SpanContext().TraceID())
	}
	if got := trace.SpanContextFromContext(telemetry.Extract(context.Background(), nil)); got.IsValid() {
		t.Errorf("extract from an empty header gave a span context %v", got)
	}
	kept := telemetry.Inject(ctx, map[string]string{"cmid": "c1"})
	if kept["cmid"] != "c1" || kept["traceparent"] == "" {
		t.Errorf("inject into an existing header = %v, want cmid kept and traceparent added", kept)
	}
}

// collector is a stand-in OTLP/HTTP receiver that records request paths.
type collector struct {
	mu    sync.Mutex
	paths map[string]int
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	c.paths[r.URL.Path]++
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
}

func (c *collector) count(path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.paths[path]
}

func TestOTLPEndpointReceivesTracesAndMetricsOnShutdown(t *testing.T) {
	tests := []struct {
		name     string
		give     func(url string) string
		wantBase string
	}{
		{name: "http URL", give: func(u string) string { return u }},
		{name: "host and port mean plain HTTP", give: func(u string) string { return strings.TrimPrefix(u, "http://") }},
		{name: "base path is kept", give: func(u string) string { return u + "/otlp/" }, wantBase: "/otlp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &collector{paths: map[string]int{}}
			srv := httptest.NewServer(c)
			defer srv.Close()

			tel, err := telemetry.New(t.Context(), telemetry.Config{
				ServiceName:  "imkube-message",
				OTLPEndpoint: tt.give(srv.URL),
				OTLPInterval: time.Hour, // only the shutdown flush exports
			})
			if err != nil {
				t.Fatal(err)
			}
			m, err := telemetry.NewMessage(tel.MeterProvider())
			if err != nil {
				t.Fatal(err)
			}
			m.Accepted(telemetry.DiffusionDirect)
			_, span := tel.Tracer("message").Start(t.Context(), "message.store")
			span.End()

			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := tel.Shutdown(ctx); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			for _, p := range []string{tt.wantBase + "/v1/traces", tt.wantBase + "/v1/metrics"} {
				if c.count(p) == 0 {
					t.Errorf("collector got nothing on %s (got %v)", p, c.paths)
				}
			}
		})
	}
}

func TestConfigErrorsNameTheSetting(t *testing.T) {
	tests := []struct {
		name string
		give telemetry.Config
		want string
	}{
		{name: "service name is required", give: telemetry.Config{}, want: "ServiceName"},
		{name: "unsupported scheme", give: telemetry.Config{ServiceName: "x", OTLPEndpoint: "ftp://collector:4318"}, want: telemetry.EnvOTLPEndpoint},
		{name: "no host", give: telemetry.Config{ServiceName: "x", OTLPEndpoint: "http://"}, want: telemetry.EnvOTLPEndpoint},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tel, err := telemetry.New(t.Context(), tt.give)
			if err == nil {
				_ = tel.Shutdown(context.Background())
				t.Fatalf("New succeeded, want an error naming %s", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name %s", err, tt.want)
			}
		})
	}
}

func TestConfigFromEnvReadsTheOTLPEndpoint(t *testing.T) {
	env := map[string]string{telemetry.EnvOTLPEndpoint: "http://collector:4318"}
	got := telemetry.Config{ServiceName: "x", OTLPEndpoint: "http://default:4318"}.FromEnv(func(k string) string { return env[k] })
	if got.OTLPEndpoint != "http://collector:4318" {
		t.Errorf("OTLPEndpoint = %q", got.OTLPEndpoint)
	}
	kept := telemetry.Config{OTLPEndpoint: "http://default:4318"}.FromEnv(func(string) string { return "" })
	if kept.OTLPEndpoint != "http://default:4318" {
		t.Errorf("empty env replaced the endpoint: %q", kept.OTLPEndpoint)
	}
}

func newTelemetry(t *testing.T, cfg telemetry.Config) *telemetry.Telemetry {
	t.Helper()
	tel, err := telemetry.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return tel
}

// The operator passes controller-runtime's registry, which already holds the
// Go and process collectors; imkube metrics must appear in it.
func TestMetricsGoToAGivenRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		t.Fatal(err)
	}
	tel := newTelemetry(t, telemetry.Config{ServiceName: "imkube-operator", Registerer: reg, Gatherer: reg})
	o, err := telemetry.NewOperator(tel.MeterProvider())
	if err != nil {
		t.Fatal(err)
	}
	o.Reconciled("imcluster", telemetry.ResultError, 20*time.Millisecond)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range fams {
		got = append(got, f.GetName())
	}
	for _, want := range []string{"imkube_operator_reconcile_total", "imkube_operator_reconcile_seconds", "go_goroutines"} {
		if !slices.Contains(got, want) {
			t.Errorf("registry lacks %s: %v", want, got)
		}
	}
	if _, err := telemetry.New(t.Context(), telemetry.Config{ServiceName: "x", Registerer: reg}); err == nil {
		t.Error("a Registerer without a Gatherer was accepted")
	}
}

func TestReconcileOutcomesAreClassified(t *testing.T) {
	tests := []struct {
		name    string
		requeue bool
		err     error
		want    string
	}{
		{"a clean pass", false, nil, telemetry.ResultSuccess},
		{"a requeue", true, nil, telemetry.ResultRequeue},
		{"an error wins over a requeue", true, errors.New("boom"), telemetry.ResultError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := telemetry.ResultOf(tt.requeue, tt.err); got != tt.want {
				t.Fatalf("ResultOf = %q, want %q", got, tt.want)
			}
		})
	}
}

// FrameOut is on the hot path (a cheap counter read at collection time): the
// scrape still shows every frame and byte.
func TestFramesOutAndBytesOutAreCountedExactly(t *testing.T) {
	tel := newTelemetry(t, telemetry.Config{ServiceName: "imkube-gateway"})
	g, err := telemetry.NewGateway(tel.MeterProvider())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 250 {
				g.FrameOut("message", 10)
				g.FrameOut("ack", 3)
			}
		}()
	}
	wg.Wait()
	fams, err := telemetrytest.Scrape(tel.Handler())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, m := range fams["imkube_gateway_frames_out_total"].GetMetric() {
		got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
	}
	if got["message"] != 1000 || got["ack"] != 1000 || len(got) != 2 {
		t.Errorf("frames_out_total = %v, want message 1000, ack 1000", got)
	}
	if b := fams["imkube_gateway_bytes_out_total"].GetMetric(); len(b) != 1 || b[0].GetCounter().GetValue() != 13000 {
		t.Errorf("bytes_out_total = %v, want one series of 13000", b)
	}
}

// A gateway without clients exports imkube_gateway_connections 0 (the
// autoscalers treat a missing series as a lost target).
func TestConnectionsGaugeIsZeroBeforeAnyClient(t *testing.T) {
	tel := newTelemetry(t, telemetry.Config{ServiceName: "imkube-gateway"})
	if _, err := telemetry.NewGateway(tel.MeterProvider()); err != nil {
		t.Fatal(err)
	}
	fams, err := telemetrytest.Scrape(tel.Handler())
	if err != nil {
		t.Fatal(err)
	}
	series := fams["imkube_gateway_connections"].GetMetric()
	if len(series) != 1 || series[0].GetGauge().GetValue() != 0 {
		t.Fatalf("imkube_gateway_connections before any client: %v, want one series of 0", series)
	}
}
