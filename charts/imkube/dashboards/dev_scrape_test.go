package dashboards_test

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/imkube/imkube/internal/app"
	"github.com/imkube/imkube/internal/config"
	"github.com/imkube/imkube/internal/imtest"
	"github.com/imkube/imkube/internal/telemetry/telemetrytest"
)

// Runs a short chat on a real `imkube dev` (connect, send, deliver,
// disconnect), scrapes its /metrics and evaluates every vector selector of the
// overview, gateway and pipeline dashboards against the scrape (the dashboard
// variables set to "All"): a selector must match a series whenever the
// process exports its metric, and every query of the gateway dashboard must
// return data. The operator dashboard needs the operator, not imkube dev.
func TestDashboardQueriesReturnDataFromImkubeDev(t *testing.T) {
	fams := scrapeDevAfterAChat(t)
	dashboards := loadDashboards(t)
	vars := map[string]string{"namespace": ".*", "imcluster": ".*", "pod": ".*"}
	for _, name := range []string{"overview.json", "gateway.json", "pipeline.json"} {
		d := dashboards[name]
		for _, p := range allPanels(d.Panels) {
			for _, tg := range p.Targets {
				sels, err := promqlSelectors(tg.Expr)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				for _, sel := range sels {
					series, exported := seriesOf(fams, sel.name)
					if !exported {
						if name == "gateway.json" {
							t.Errorf("%s panel %q: imkube dev exports no %s after a chat", name, p.Title, sel.name)
						} else {
							t.Logf("%s panel %q: %s not produced by this session", name, p.Title, sel.name)
						}
						continue
					}
					ms, err := parseMatchers(sel.matchers, vars)
					if err != nil {
						t.Fatalf("%s panel %q: %v", name, p.Title, err)
					}
					if !anyMatch(series, ms) {
						t.Errorf("%s panel %q: {%s} matches none of the %d %s series of imkube dev", name, p.Title, sel.matchers, len(series), sel.name)
					}
				}
			}
		}
	}
}

func scrapeDevAfterAChat(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	cluster := config.DefaultCluster()
	cluster.Limits.SendRatePerSecond, cluster.Limits.SendBurst = 100000, 100000
	cluster.Limits.ConnectionsPerIPPerSecond = 100000
	s, err := app.StartDev(context.Background(), "127.0.0.1:0", t.TempDir(), app.Options{BcryptCost: 4, Cluster: &cluster})
	if err != nil {
		t.Fatalf("start imkube dev: %v", err)
	}
	t.Cleanup(func() { s.Close() })

	api := imtest.NewAPI(s.URL)
	alice, bob := api.Register(t, "alice"), api.Register(t, "bob")
	a, _ := imtest.Connect(t, s.URL, alice.Token, "a1")
	b, _ := imtest.Connect(t, s.URL, bob.Token, "b1")
	a.SendJSON(map[string]any{"t": "send", "cmid": "c1", "to": map[string]string{"user": bob.ID}, "kind": "text", "body": "hi"})
	a.Expect("ack")
	b.Expect("msg")
	b.WS().Close()

	// The disconnect is counted when the gateway notices the close.
	for range 800 {
		fams := scrape(t, s.URL)
		if _, ok := fams["imkube_gateway_disconnects_total"]; ok {
			return fams
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatal("imkube dev never counted the closed connection in imkube_gateway_disconnects_total")
	return nil
}

func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	fams, err := telemetrytest.Parse(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// seriesOf returns the label sets of the series a selector name selects,
// mapping name_bucket/_sum/_count to their histogram family.
func seriesOf(fams map[string]*dto.MetricFamily, name string) ([]map[string]string, bool) {
	f, ok := fams[name]
	if !ok {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			base, cut := strings.CutSuffix(name, suffix)
			if h, found := fams[base]; cut && found && h.GetType() == dto.MetricType_HISTOGRAM {
				f, ok = h, true
			}
		}
	}
	if !ok {
		return nil, false
	}
	var out []map[string]string
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, lp := range m.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		out = append(out, labels)
	}
	return out, true
}

type matcher struct {
	name, op string
	re       *regexp.Regexp
	value    string
}

var grafanaVar = regexp.MustCompile(`\$\{?(\w+)\}?`)

// parseMatchers parses `a="x", b=~"$var"` with Grafana variables replaced.
func parseMatchers(s string, vars map[string]string) ([]matcher, error) {
	var out []matcher
	rest := strings.TrimSpace(s)
	for rest != "" {
		i := strings.IndexAny(rest, "=!")
		if i <= 0 {
			return nil, fmt.Errorf("bad matchers %q", s)
		}
		m := matcher{name: strings.TrimSpace(rest[:i])}
		rest = rest[i:]
		for _, op := range []string{"=~", "!~", "!=", "="} {
			if strings.HasPrefix(rest, op) {
				m.op, rest = op, strings.TrimSpace(rest[len(op):])
				break
			}
		}
		if len(rest) < 2 || rest[0] != '"' {
			return nil, fmt.Errorf("matcher %s in %q: want a double-quoted value", m.name, s)
		}
		end := strings.IndexByte(rest[1:], '"')
		if end < 0 {
			return nil, fmt.Errorf("unterminated value in %q", s)
		}
		raw := rest[1 : end+1]
		rest = strings.TrimPrefix(strings.TrimSpace(rest[end+2:]), ",")
		rest = strings.TrimSpace(rest)
		var unknown error
		m.value = grafanaVar.ReplaceAllStringFunc(raw, func(v string) string {
			name := grafanaVar.FindStringSubmatch(v)[1]
			val, ok := vars[name]
			if !ok {
				unknown = fmt.Errorf("matcher %s uses unknown variable %s", m.name, v)
			}
			return val
		})
		if unknown != nil {
			return nil, unknown
		}
		if m.op == "=~" || m.op == "!~" {
			re, err := regexp.Compile("^(?:" + m.value + ")$")
			if err != nil {
				return nil, fmt.Errorf("matcher %s: %w", m.name, err)
			}
			m.re = re
		}
		out = append(out, m)
	}
	return out, nil
}

func (m matcher) matches(labels map[string]string) bool {
	v := labels[m.name] // an absent label is the empty string, as in Prometheus
	switch m.op {
	case "=":
		return v == m.value
	case "!=":
		return v != m.value
	case "=~":
		return m.re.MatchString(v)
	default:
		return !m.re.MatchString(v)
	}
}

func anyMatch(series []map[string]string, ms []matcher) bool {
	for _, labels := range series {
		all := true
		for _, m := range ms {
			all = all && m.matches(labels)
		}
		if all {
			return true
		}
	}
	return false
}

func TestMatchersFollowPrometheusSemantics(t *testing.T) {
	tests := []struct {
		name   string
		give   string
		labels map[string]string
		want   bool
	}{
		{name: "All variable matches an absent label", give: `namespace=~"$namespace"`, labels: map[string]string{}, want: true},
		{name: "equality", give: `result="error"`, labels: map[string]string{"result": "error"}, want: true},
		{name: "regex is anchored", give: `pod=~"gw"`, labels: map[string]string{"pod": "gw-1"}, want: false},
		{name: "negative regex", give: `reason!~"client_.*", namespace=~"${namespace}"`, labels: map[string]string{"reason": "slow"}, want: true},
		{name: "inequality", give: `type!="send"`, labels: map[string]string{"type": "send"}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms, err := parseMatchers(tt.give, map[string]string{"namespace": ".*"})
			if err != nil {
				t.Fatal(err)
			}
			if got := anyMatch([]map[string]string{tt.labels}, ms); got != tt.want {
				t.Errorf("{%s} on %v = %v, want %v", tt.give, tt.labels, got, tt.want)
			}
		})
	}
}
