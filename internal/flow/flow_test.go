package flow_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alibaba/sentinel-golang/core/hotspot"
	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/imkube/imkube/internal/config"
	"github.com/imkube/imkube/internal/flow"
	"github.com/imkube/imkube/internal/telemetry"
)

// The gateway's SendLimiter (services/gateway), restated here so these tests
// do not build the whole gateway.
var _ interface {
	AllowSend(user string) (ok bool, retryAfter time.Duration)
} = (*flow.Controller)(nil)

// logDir is the one Sentinel log directory of this test process (Sentinel
// keeps the first one it is given).
var logDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "imkube-flow-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	logDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// newController initialises flow control for one test and resets Sentinel's
// global rule managers afterwards.
func newController(t *testing.T, cfg flow.Config) *flow.Controller {
	t.Helper()
	cfg.LogDir = logDir
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(&testWriter{t}, nil))
	}
	c, err := flow.Init(cfg)
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	t.Cleanup(func() {
		if err := flow.ClearRules(); err != nil {
			t.Errorf("ClearRules: %v", err)
		}
	})
	return c
}

type testWriter struct{ t *testing.T }

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// writeRules replaces the rules file atomically (write + rename).
func writeRules(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func sendRuleJSON(threshold, burst int) string {
	return fmt.Sprintf(`{"hotspot":[{"resource":"gateway.send","metricType":1,"controlBehavior":0,"paramIndex":0,
		"threshold":%d,"burstCount":%d,"durationInSec":60,"paramsMaxCapacity":1000}]}`, threshold, burst)
}

// sends calls AllowSend n times for user and returns how many passed.
func sends(c *flow.Controller, user string, n int) (passed int) {
	for range n {
		if ok, _ := c.AllowSend(user); ok {
			passed++
		}
	}
	return passed
}

func sendThreshold(t *testing.T) int64 {
	t.Helper()
	rs := hotspot.GetRulesOfResource(flow.ResSend)
	if len(rs) != 1 {
		t.Fatalf("hotspot rules of %s: %d, want 1", flow.ResSend, len(rs))
	}
	return rs[0].Threshold
}

func TestInitWritesSentinelLogsToTheConfiguredDir(t *testing.T) {
	newController(t, flow.Config{})
	if _, err := os.Stat(filepath.Join(logDir, "sentinel-record.log")); err != nil {
		t.Fatalf("sentinel record log not in the configured dir: %v", err)
	}
	if _, err := flow.Init(flow.Config{}); err == nil {
		t.Fatal("Init without a log dir succeeded; want an error naming the field")
	}
}

func TestDefaultRulesApplyWithoutAFile(t *testing.T) {
	c := newController(t, flow.Config{})
	def := config.DefaultCluster().Limits
	if got := sendThreshold(t); got != int64(def.SendRatePerSecond) {
		t.Errorf("send threshold = %d, want the default %d", got, def.SendRatePerSecond)
	}
	// Default burst 20 + rate 10: the first 30 sends of a user in one second pass.
	if got := sends(c, "default-user", 30); got < 30 {
		t.Errorf("%d of the first 30 sends passed, want all (rate 10 + burst 20)", got)
	}
}

func TestRulesFileIsAppliedAndReloadedWhenRewritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sentinel-rules.json")
	writeRules(t, path, sendRuleJSON(2, 0))
	c := newController(t, flow.Config{RulesFile: path})

	if got := sends(c, "alice", 5); got != 2 {
		t.Fatalf("alice: %d of 5 sends passed under threshold 2, want 2", got)
	}

	writeRules(t, path, sendRuleJSON(100, 0))
	if err := c.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if got := sendThreshold(t); got != 100 {
		t.Fatalf("threshold after rewrite = %d, want 100", got)
	}
	if got := sends(c, "bob", 50); got != 50 {
		t.Errorf("bob: %d of 50 sends passed under threshold 100, want 50", got)
	}
	if st := c.Stats(); st.Reloads < 2 {
		t.Errorf("Stats().Reloads = %d, want >= 2", st.Reloads)
	}
}

func TestRunPollsAConfigMapSymlinkSwap(t *testing.T) {
	// A ConfigMap volume: file -> ..data/file, ..data -> ..<timestamp>/.
	dir := t.TempDir()
	mkVersion := func(name, content string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "sentinel-rules.json"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(name, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	mkVersion("..v1", sendRuleJSON(3, 0))
	path := filepath.Join(dir, "sentinel-rules.json")
	if err := os.Symlink("..data/sentinel-rules.json", path); err != nil {
		t.Fatal(err)
	}
	c := newController(t, flow.Config{RulesFile: path, PollInterval: 5 * time.Millisecond})
	if got := sendThreshold(t); got != 3 {
		t.Fatalf("threshold = %d, want 3", got)
	}

	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(), goleak.IgnoreAnyFunction(flow.SentinelGoroutineFunc))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	mkVersion("..v2", sendRuleJSON(7, 1))
	deadline := time.Now().Add(10 * time.Second)
	for sendThreshold(t) != 7 {
		if time.Now().After(deadline) {
			t.Fatalf("rules not reloaded after the symlink swap; threshold still %d", sendThreshold(t))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := c.Rules().Hotspot[0].BurstCount; got != 1 {
		t.Errorf("burst after swap = %d, want 1", got)
	}
}

func TestBadRulesFileKeepsThePreviousRules(t *testing.T) {
	tests := []struct {
		name string
		give string
	}{
		{name: "garbage", give: "{this is not json"},
		{name: "empty file", give: ""},
		{name: "unknown field", give: `{"hotspot":[{"resource":"gateway.send","metricType":1,"threshhold":5,"durationInSec":1}]}`},
		{name: "negative threshold", give: `{"hotspot":[{"resource":"gateway.send","metricType":1,"threshold":-1,"durationInSec":1}]}`},
		{name: "QPS rule without duration", give: `{"hotspot":[{"resource":"gateway.send","metricType":1,"threshold":5}]}`},
		{name: "breaker ratio above one", give: `{"circuitBreaker":[{"resource":"dep.user","strategy":1,"retryTimeoutMs":100,"statIntervalMs":1000,"threshold":1.5}]}`},
		{name: "unknown system strategy", give: `{"system":[{"metricType":2,"triggerCount":10,"strategy":7}]}`},
		{name: "flow rule without resource", give: `{"flow":[{"threshold":10}]}`},
		{name: "trailing data", give: sendRuleJSON(9, 0) + "{}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sentinel-rules.json")
			writeRules(t, path, sendRuleJSON(4, 0))
			c := newController(t, flow.Config{RulesFile: path})
			before := c.Rules()

			writeRules(t, path, tt.give)
			if err := c.Reload(); err == nil {
				t.Fatal("Reload accepted the bad file; want an error")
			}
			if got := sendThreshold(t); got != 4 {
				t.Errorf("threshold after a bad file = %d, want the previous 4", got)
			}
			if got := c.Rules().Summary(); got != before.Summary() {
				t.Errorf("rules changed after a bad file:\n got %s\nwant %s", got, before.Summary())
			}
			if got := c.Stats().ReloadFailures; got != 1 {
				t.Errorf("ReloadFailures = %d, want 1", got)
			}
			// The same bad content is not reported again on every poll.
			if err := c.Reload(); err != nil {
				t.Errorf("second Reload of the same content: %v", err)
			}
		})
	}
}

func TestMissingRulesFileUsesDefaultsUntilItAppears(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sentinel-rules.json")
	c := newController(t, flow.Config{RulesFile: path})
	if got := sendThreshold(t); got != int64(config.DefaultCluster().Limits.SendRatePerSecond) {
		t.Fatalf("threshold = %d, want the default", got)
	}
	writeRules(t, path, sendRuleJSON(6, 0))
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := sendThreshold(t); got != 6 {
		t.Errorf("threshold = %d, want 6 from the new file", got)
	}
}

func TestUserOverTheLimitIsBlockedWhileAnotherIsNot(t *testing.T) {
	var lim atomic.Pointer[config.Limits]
	l := config.DefaultCluster().Limits
	l.SendRatePerSecond, l.SendBurst = 1, 0
	lim.Store(&l)
	c := newController(t, flow.Config{Limits: func() config.Limits { return *lim.Load() }})

	if ok, _ := c.AllowSend("mallory"); !ok {
		t.Fatal("mallory's first send was blocked")
	}
	var blocked bool
	var wait time.Duration
	for range 20 {
		if ok, w := c.AllowSend("mallory"); !ok {
			blocked, wait = true, w
			break
		}
	}
	if !blocked {
		t.Fatal("mallory sent 21 messages at rate 1/s, burst 0, and none was blocked")
	}
	if wait <= 0 {
		t.Errorf("retryAfter = %v, want > 0", wait)
	}
	if ok, _ := c.AllowSend("alice"); !ok {
		t.Error("alice was blocked by mallory's limit")
	}
	if got := c.Stats().Blocks(flow.ResSend); got < 1 {
		t.Errorf("Stats().Blocks(gateway.send) = %d, want >= 1", got)
	}

	// config.json raises the limit: the next reload applies it.
	l2 := l
	l2.SendRatePerSecond, l2.SendBurst = 500, 100
	lim.Store(&l2)
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	rs := hotspot.GetRulesOfResource(flow.ResSend)
	if len(rs) != 1 || rs[0].Threshold != 500 || rs[0].BurstCount != 100 || rs[0].ParamsMaxCapacity == 0 {
		t.Fatalf("send rule after the limits changed = %+v, want threshold 500, burst 100, a capacity", rs)
	}
	if got := sends(c, "bob", 200); got != 200 {
		t.Errorf("bob: %d of 200 sends passed at rate 500 + burst 100, want all", got)
	}
}

func TestLimitsOverrideTheFilesSendRule(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sentinel-rules.json")
	writeRules(t, path, sendRuleJSON(2, 0))
	l := config.DefaultCluster().Limits
	l.SendRatePerSecond, l.SendBurst = 40, 5
	c := newController(t, flow.Config{RulesFile: path, Limits: func() config.Limits { return l }})
	rs := hotspot.GetRulesOfResource(flow.ResSend)
	if len(rs) != 1 || rs[0].Threshold != 40 || rs[0].BurstCount != 5 || rs[0].DurationInSec != 1 || rs[0].ParamsMaxCapacity != 1000 {
		t.Fatalf("send rule = %+v, want rate/burst from config.json (40/5 per 1 s) and the file's capacity 1000", rs)
	}
	if len(hotspot.GetRulesOfResource(flow.ResConnect)) != 1 {
		t.Error("no gateway.connect rule although config.json has connectionsPerIPPerSecond")
	}
	_ = c
}

func TestConnectionRatePerIP(t *testing.T) {
	l := config.DefaultCluster().Limits
	l.ConnectionsPerIPPerSecond = 2
	c := newController(t, flow.Config{Limits: func() config.Limits { return l }})
	passed := 0
	for range 20 {
		if c.AllowConnect("203.0.113.7") {
			passed++
		}
	}
	if passed == 20 {
		t.Fatal("20 connections from one IP at 2/s all passed")
	}
	if !c.AllowConnect("198.51.100.1") {
		t.Error("another IP was refused")
	}
	if c.Stats().Blocks(flow.ResConnect) < 1 {
		t.Error("connect blocks not counted")
	}
}

const slowBreakerRules = `{"circuitBreaker":[{"resource":"dep.slow","strategy":0,"retryTimeoutMs":100,
	"minRequestAmount":3,"statIntervalMs":10000,"statSlidingWindowBucketCount":10,"maxAllowedRtMs":100,"threshold":0.5}]}`

func TestBreakerOpensWhenTheDependencyIsSlowAndClosesAfterItRecovers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sentinel-rules.json")
	writeRules(t, path, slowBreakerRules)
	c := newController(t, flow.Config{RulesFile: path})

	var delay atomic.Int64
	delay.Store(int64(200 * time.Millisecond)) // slow: over maxAllowedRtMs
	var calls atomic.Int64
	dep := func() error {
		calls.Add(1)
		time.Sleep(time.Duration(delay.Load()))
		return nil
	}

	for i := range 3 {
		if err := c.Guard("dep.slow", dep); err != nil {
			t.Fatalf("slow call %d: %v (the breaker must not open before minRequestAmount)", i, err)
		}
	}
	before := calls.Load()
	err := c.Guard("dep.slow", dep)
	if !errors.Is(err, flow.ErrOpen) {
		t.Fatalf("Guard after 3 slow calls = %v, want ErrOpen", err)
	}
	if calls.Load() != before {
		t.Error("the dependency was called although the breaker is open")
	}
	if flow.RetryAfter(err) != 100*time.Millisecond {
		t.Errorf("RetryAfter = %v, want the rule's retryTimeoutMs (100ms)", flow.RetryAfter(err))
	}
	if got := c.Stats().Breaker("dep.slow", "SlowRequestRatio"); got != flow.StateOpen {
		t.Errorf("breaker state = %q, want open", got)
	}

	// The dependency recovers: after retryTimeoutMs a probe passes and closes
	// it. (A probe that a loaded machine happens to stall reopens it; the
	// next probe closes it.)
	delay.Store(0)
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := c.Guard("dep.slow", dep)
		if err != nil && !errors.Is(err, flow.ErrOpen) {
			t.Fatalf("Guard while recovering: %v", err)
		}
		if err == nil && c.Stats().Breaker("dep.slow", "SlowRequestRatio") == flow.StateClosed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("breaker did not close within 10 s after the dependency recovered (state %s)", c.Stats().Breaker("dep.slow", "SlowRequestRatio"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := range 3 {
		if err := c.Guard("dep.slow", dep); err != nil {
			t.Fatalf("call %d after recovery: %v", i, err)
		}
	}
}

func TestErrorRatioBreakerCountsFailuresButNotIgnoredErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sentinel-rules.json")
	writeRules(t, path, `{"circuitBreaker":[{"resource":"dep.flaky","strategy":1,"retryTimeoutMs":60000,
		"minRequestAmount":4,"statIntervalMs":60000,"statSlidingWindowBucketCount":10,"threshold":0.5}]}`)
	c := newController(t, flow.Config{RulesFile: path})
	notFound := errors.New("not found")

	for range 10 {
		err := c.Guard("dep.flaky", func() error { return flow.Ignore(notFound) })
		if err != notFound {
			t.Fatalf("Guard returned %v, want the unwrapped ignored error", err)
		}
	}
	down := errors.New("connection refused")
	for range 4 {
		if err := c.Guard("dep.flaky", func() error { return down }); !errors.Is(err, down) {
			t.Fatalf("Guard = %v, want the dependency's error", err)
		}
	}
	// 4 failures of 14 calls is below 50%: still closed.
	if err := c.Guard("dep.flaky", func() error { return nil }); err != nil {
		t.Fatalf("breaker opened on ignored errors: %v", err)
	}
	for range 20 {
		_ = c.Guard("dep.flaky", func() error { return down })
	}
	err := c.Guard("dep.flaky", func() error { return nil })
	if !errors.Is(err, flow.ErrOpen) || errors.Is(err, flow.ErrBlocked) {
		t.Fatalf("Guard after mostly failures = %v, want ErrOpen only", err)
	}
}

func TestFlowRuleOnPublishRejectsOverTheThreshold(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sentinel-rules.json")
	writeRules(t, path, `{"flow":[{"resource":"gateway.publish","threshold":5,"statIntervalInMs":60000}]}`)
	c := newController(t, flow.Config{RulesFile: path})
	var ok, blocked int
	for range 8 {
		err := c.Guard(flow.ResPublish, func() error { return nil })
		switch {
		case err == nil:
			ok++
		case errors.Is(err, flow.ErrBlocked):
			blocked++
			var be *flow.BlockedError
			if !errors.As(err, &be) || be.Kind != flow.KindFlow || be.Resource != flow.ResPublish {
				t.Errorf("blocked error = %#v, want kind flow on gateway.publish", err)
			}
		default:
			t.Fatalf("Guard: %v", err)
		}
	}
	if ok != 5 || blocked != 3 {
		t.Errorf("passed %d, blocked %d; want 5 and 3 with threshold 5 per minute", ok, blocked)
	}
}

func TestMiddlewareAnswers429WithRetryAfter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sentinel-rules.json")
	writeRules(t, path, `{"flow":[{"resource":"rest.test","threshold":0}]}`)
	c := newController(t, flow.Config{RulesFile: path})
	h := c.Middleware("rest.test", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("handler ran although the rule rejects every request")
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/x", nil))
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), `"RATE_LIMITED"`) {
		t.Errorf("got %d %q Retry-After=%q, want 429 RATE_LIMITED with Retry-After", rec.Code, rec.Body.String(), rec.Header().Get("Retry-After"))
	}
}

func TestTransportCountsServerErrorsAndFailsFastWhenOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sentinel-rules.json")
	writeRules(t, path, `{"circuitBreaker":[{"resource":"dep.http","strategy":1,"retryTimeoutMs":60000,
		"minRequestAmount":3,"statIntervalMs":60000,"statSlidingWindowBucketCount":10,"threshold":0.5}]}`)
	c := newController(t, flow.Config{RulesFile: path})
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	defer srv.Close()
	client := &http.Client{Transport: c.Transport("dep.http", nil)}
	for range 3 {
		resp, err := client.Get(srv.URL)
		if err != nil {
			t.Fatalf("request while closed: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusInternalServerError {
			t.Fatalf("status = %d, want the server's 500", resp.StatusCode)
		}
	}
	_, err := client.Get(srv.URL)
	if !errors.Is(err, flow.ErrOpen) {
		t.Fatalf("request after 3 server errors = %v, want ErrOpen", err)
	}
	if hits.Load() != 3 {
		t.Errorf("server saw %d requests, want 3 (none while open)", hits.Load())
	}
	client.CloseIdleConnections()
}

func TestParseRulesAcceptsTheDocumentedShapes(t *testing.T) {
	rs, err := flow.ParseRules([]byte(`{
	  "flow": [{"resource":"gateway.publish","tokenCalculateStrategy":0,"controlBehavior":0,"threshold":1000,"statIntervalInMs":1000}],
	  "hotspot": [{"resource":"gateway.send","metricType":1,"controlBehavior":0,"paramIndex":0,"threshold":10,"burstCount":20,
	               "durationInSec":1,"paramsMaxCapacity":100000,"specificItems":{"bot-1":1000}}],
	  "circuitBreaker": [{"resource":"dep.mysql","strategy":0,"retryTimeoutMs":5000,"minRequestAmount":20,
	                      "statIntervalMs":10000,"statSlidingWindowBucketCount":10,"maxAllowedRtMs":500,"threshold":0.5}],
	  "system": [{"metricType":4,"triggerCount":0.9,"strategy":1}]
	}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.Flow) != 1 || len(rs.Hotspot) != 1 || len(rs.CircuitBreaker) != 1 || len(rs.System) != 1 {
		t.Fatalf("parsed %+v", rs)
	}
	if rs.Hotspot[0].SpecificItems["bot-1"] != 1000 {
		t.Errorf("specificItems = %v", rs.Hotspot[0].SpecificItems)
	}
	if err := flow.DefaultRules().Validate(); err != nil {
		t.Errorf("default rules invalid: %v", err)
	}
}

func TestBlockCountsAreExportedAsPrometheusMetrics(t *testing.T) {
	tel, err := telemetry.New(t.Context(), telemetry.Config{ServiceName: "imkube-flow-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	l := config.DefaultCluster().Limits
	l.SendRatePerSecond, l.SendBurst = 1, 0
	c := newController(t, flow.Config{MeterProvider: tel.MeterProvider(), Limits: func() config.Limits { return l }})
	for range 10 {
		c.AllowSend("spammer")
	}
	rec := httptest.NewRecorder()
	tel.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := rec.Body.String()
	var line string
	for l := range strings.Lines(body) {
		if strings.HasPrefix(l, "imkube_flow_blocked_total{") && strings.Contains(l, `resource="gateway.send"`) && strings.Contains(l, `kind="hotspot"`) {
			line = strings.TrimSpace(l)
		}
	}
	if line == "" || strings.HasSuffix(line, " 0") {
		t.Fatalf("no non-zero imkube_flow_blocked_total for gateway.send in /metrics:\n%s", body)
	}
	t.Log(line)

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := c.Run(ctx); err != nil { // unregisters the callback
		t.Fatal(err)
	}
}

func TestDefaultRulesRoundTripThroughTheRulesFile(t *testing.T) {
	// The operator renders sentinel-rules.json from DefaultRules.
	b, err := json.MarshalIndent(flow.DefaultRules(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got, err := flow.ParseRules(b)
	if err != nil {
		t.Fatalf("ParseRules of the marshalled defaults: %v\n%s", err, b)
	}
	if diff := cmp.Diff(flow.DefaultRules(), got); diff != "" {
		t.Errorf("round trip changed the rules (-want +got):\n%s", diff)
	}
}

func TestSystemRuleShedsInboundTrafficOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sentinel-rules.json")
	// At most one inbound entry in flight in the process.
	writeRules(t, path, `{"system":[{"metricType":2,"triggerCount":1,"strategy":-1}]}`)
	c := newController(t, flow.Config{RulesFile: path})

	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- c.GuardInbound("rest.slow", func() error {
			close(started)
			<-release
			return nil
		})
	}()
	<-started

	err := c.GuardInbound("rest.other", func() error { return nil })
	var be *flow.BlockedError
	if !errors.As(err, &be) || be.Kind != flow.KindSystem || !errors.Is(err, flow.ErrBlocked) {
		t.Errorf("second inbound entry = %v, want a system block", err)
	}
	rec := httptest.NewRecorder()
	c.Middleware("rest.other", http.NotFoundHandler()).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Errorf("REST request under system protection: %d Retry-After=%q, want 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
	if err := c.Guard("dep.any", func() error { return nil }); err != nil {
		t.Errorf("outbound call blocked by a system rule: %v", err)
	}

	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := c.GuardInbound("rest.other", func() error { return nil }); err != nil {
		t.Errorf("inbound entry after the first finished: %v", err)
	}
	if got := c.Stats().Blocks("rest.other"); got != 2 {
		t.Errorf("Stats().Blocks(rest.other) = %d, want 2", got)
	}
}
