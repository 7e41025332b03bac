// Package dashboards_test checks the Grafana dashboards of the chart: valid
// dashboard JSON with a datasource variable, PromQL that only selects metrics
// the code exports, and queries that return data from a running imkube dev.
package dashboards_test

import (
	"encoding/json"
	"fmt"

	dto "github.com/prometheus/client_model/go"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/imkube/imkube/internal/telemetry/telemetrytest"
)

// dashboard is the part of the Grafana dashboard JSON model the tests read.
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int          `json:"id"`
	Type       string       `json:"type"`
	Title      string       `json:"title"`
	Datasource *datasource  `json:"datasource"`
	GridPos    *gridPos     `json:"gridPos"`
	Targets    []target     `json:"targets"`
	Panels     []panel      `json:"panels"` // collapsed rows
	FieldCfg   *fieldConfig `json:"fieldConfig"`
}

type gridPos struct{ H, W, X, Y int }

type fieldConfig struct {
	Defaults struct {
		Unit string `json:"unit"`
	} `json:"defaults"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type target struct {
	RefID      string      `json:"refId"`
	Expr       string      `json:"expr"`
	Datasource *datasource `json:"datasource"`
}

type variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	Datasource *datasource     `json:"datasource"`
}

// queryString returns a query variable's PromQL (a string, or {"query": ...}).
func (v variable) queryString() string {
	var s string
	if json.Unmarshal(v.Query, &s) == nil {
		return s
	}
	var q struct {
		Query string `json:"query"`
	}
	_ = json.Unmarshal(v.Query, &q)
	return q.Query
}

func loadDashboards(t *testing.T) map[string]dashboard {
	t.Helper()
	files, err := filepath.Glob("*.json")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]dashboard{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		dec := json.NewDecoder(strings.NewReader(string(raw)))
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("%s is not valid JSON: %v", f, err)
		}
		out[filepath.Base(f)] = d
	}
	for _, want := range []string{"overview.json", "gateway.json", "pipeline.json", "operator.json"} {
		if _, ok := out[want]; !ok {
			t.Errorf("charts/imkube/dashboards/%s is missing", want)
		}
	}
	return out
}

func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

func TestDashboardsAreGrafanaDashboardsWithADatasourceVariable(t *testing.T) {
	uids := map[string]string{}
	for name, d := range loadDashboards(t) {
		t.Run(name, func(t *testing.T) {
			if d.UID == "" || d.Title == "" || d.SchemaVersion < 30 {
				t.Errorf("uid %q, title %q, schemaVersion %d: want all set (schemaVersion >= 30)", d.UID, d.Title, d.SchemaVersion)
			}
			if other, dup := uids[d.UID]; dup {
				t.Errorf("uid %s also used by %s", d.UID, other)
			}
			uids[d.UID] = name

			dsVar := slices.IndexFunc(d.Templating.List, func(v variable) bool {
				return v.Type == "datasource" && v.queryString() == "prometheus"
			})
			if dsVar < 0 {
				t.Fatal("no datasource template variable of type prometheus")
			}
			dsRef := "${" + d.Templating.List[dsVar].Name + "}"
			for _, v := range d.Templating.List {
				if v.Type == "query" && (v.Datasource == nil || v.Datasource.UID != dsRef) {
					t.Errorf("variable %s does not use the datasource variable %s", v.Name, dsRef)
				}
			}

			ids := map[int]bool{}
			panels := allPanels(d.Panels)
			if len(panels) == 0 {
				t.Fatal("no panels")
			}
			for _, p := range panels {
				if ids[p.ID] {
					t.Errorf("panel id %d is used twice", p.ID)
				}
				ids[p.ID] = true
				if p.GridPos == nil || p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
					t.Errorf("panel %q has no valid gridPos: %+v", p.Title, p.GridPos)
				}
				if p.Type == "row" {
					continue
				}
				if p.Title == "" || len(p.Targets) == 0 {
					t.Errorf("panel %d (%s) has no title or no queries", p.ID, p.Type)
				}
				if p.Datasource == nil || p.Datasource.UID != dsRef {
					t.Errorf("panel %q does not use the datasource variable %s", p.Title, dsRef)
				}
				for _, tg := range p.Targets {
					if tg.Expr == "" || tg.RefID == "" {
						t.Errorf("panel %q has a target without expr or refId", p.Title)
					}
					if tg.Datasource != nil && tg.Datasource.UID != dsRef {
						t.Errorf("panel %q target %s uses datasource %q, want %s", p.Title, tg.RefID, tg.Datasource.UID, dsRef)
					}
				}
			}
		})
	}
}

// Every metric a dashboard queries must be one that an assembled imkube
// process exports: the four distributed roles are started through
// internal/app (the same assembly as `imkube gateway|message|user|sequence`),
// every instrument set each one built records one value, and their /metrics
// are scraped. A metric defined in package telemetry but built by no process
// (as imkube_sequence_* once was) fails here. The operator's names come from
// the instrument set operator.Main builds.
func TestDashboardQueriesOnlyUseMetricsTheServicesExport(t *testing.T) {
	fams := assembledFamilies(t)
	for _, e := range dashboardErrors(loadDashboards(t), fams) {
		t.Error(e)
	}
}

// The check above fails on a panel whose metric no process exports.
func TestDashboardCheckRejectsAPanelNoProcessExports(t *testing.T) {
	fams := assembledFamilies(t)
	ds := loadDashboards(t)
	broken := ds["pipeline.json"]
	broken.Panels = append(slices.Clone(broken.Panels), panel{Title: "broken", Targets: []target{{Expr: "sum(rate(imkube_sequence_nonexistent_total[5m]))"}}})
	ds["pipeline.json"] = broken
	errs := dashboardErrors(ds, fams)
	found := false
	for _, e := range errs {
		if strings.Contains(e, "imkube_sequence_nonexistent_total") && strings.Contains(e, "no assembled imkube process exports") {
			found = true
		}
	}
	if !found {
		t.Fatalf("a panel on an unexported metric passed; errors: %v", errs)
	}
}

// dashboardErrors lists the queries of ds that use a metric fams lacks,
// and the imkube metrics of fams that no dashboard shows.
func dashboardErrors(ds map[string]dashboard, fams map[string]*dto.MetricFamily) []string {
	registered := telemetrytest.SeriesNames(fams)
	var errs []string
	used := map[string]bool{}
	for name, d := range ds {
		var exprs []string
		for _, v := range d.Templating.List {
			if v.Type != "query" {
				continue
			}
			q := v.queryString()
			expr, ok := labelValuesSelector(q)
			if !ok {
				errs = append(errs, fmt.Sprintf("%s: variable %s query %q is not label_values(<selector>, <label>)", name, v.Name, q))
				continue
			}
			exprs = append(exprs, expr)
		}
		for _, p := range allPanels(d.Panels) {
			for _, tg := range p.Targets {
				exprs = append(exprs, tg.Expr)
			}
		}
		for _, e := range exprs {
			names, err := promqlMetricNames(e)
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", name, err))
				continue
			}
			if len(names) == 0 {
				errs = append(errs, fmt.Sprintf("%s: query %q selects no metric", name, e))
			}
			for _, n := range names {
				used[n] = true
				if !registered[n] {
					errs = append(errs, fmt.Sprintf("%s: query %q uses %s, which no assembled imkube process exports", name, e, n))
				}
			}
		}
	}
	// Every imkube metric is shown somewhere.
	for n := range fams {
		if !strings.HasPrefix(n, "imkube_") {
			continue
		}
		if !used[n] && !used[n+"_bucket"] && !used[n+"_count"] {
			errs = append(errs, fmt.Sprintf("metric %s is on no dashboard", n))
		}
	}
	slices.Sort(errs)
	return errs
}

// labelValuesSelector returns the series selector of a Grafana
// label_values(<selector>, <label>) variable query.
func labelValuesSelector(q string) (string, bool) {
	q = strings.TrimSpace(q)
	if !strings.HasPrefix(q, "label_values(") || !strings.HasSuffix(q, ")") {
		return "", false
	}
	inner := q[len("label_values(") : len(q)-1]
	i := strings.LastIndex(inner, ",")
	if i < 0 {
		return "", false
	}
	return strings.TrimSpace(inner[:i]), true
}

// promqlMetricNames returns the metric names a PromQL expression selects.
func promqlMetricNames(expr string) ([]string, error) {
	sels, err := promqlSelectors(expr)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, s := range sels {
		if !slices.Contains(names, s.name) {
			names = append(names, s.name)
		}
	}
	return names, nil
}

// selector is one vector selector: a metric name and its raw label matchers
// (the text between the braces, empty without).
type selector struct {
	name, matchers string
}

// promqlSelectors returns the vector selectors of a PromQL expression.
// A small lexer, not a full parser: it skips strings, label matchers {...},
// ranges [...], numbers and durations, function and aggregation calls, the
// label lists of by/without/on/ignoring/group_left/group_right, keywords and
// Grafana variables; every remaining identifier is a metric name.
func promqlSelectors(expr string) ([]selector, error) {
	keywords := map[string]bool{
		"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
		"bool": true, "and": true, "or": true, "unless": true, "offset": true, "inf": true, "nan": true,
		"sum": true, "avg": true, "min": true, "max": true, "count": true, "stddev": true, "stdvar": true,
		"topk": true, "bottomk": true, "quantile": true, "count_values": true, "group": true,
		"limitk": true, "limit_ratio": true, "start": true, "end": true, "atan2": true,
	}
	labelLists := map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}
	var sels []selector
	isIdentStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isIdent := func(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }
	skipSpace := func(i int) int {
		for i < len(expr) && strings.ContainsRune(" \t\r\n", rune(expr[i])) {
			i++
		}
		return i
	}
	// closing returns the index after the bracket that closes expr[i].
	closing := func(i int) (int, error) {
		open, close := expr[i], map[byte]byte{'{': '}', '[': ']', '(': ')'}[expr[i]]
		depth := 0
		for j := i; j < len(expr); j++ {
			switch c := expr[j]; {
			case c == '"' || c == '\'' || c == '`':
				k := strings.IndexByte(expr[j+1:], c)
				if k < 0 {
					return 0, fmt.Errorf("unterminated string in %q", expr)
				}
				j += k + 1
			case c == open:
				depth++
			case c == close:
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, fmt.Errorf("unbalanced %c in %q", open, expr)
	}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			k := strings.IndexByte(expr[i+1:], c)
			if k < 0 {
				return nil, fmt.Errorf("unterminated string in %q", expr)
			}
			i += k + 2
		case c == '{' || c == '[':
			j, err := closing(i)
			if err != nil {
				return nil, err
			}
			i = j
		case c == '$':
			i++
			if i < len(expr) && expr[i] == '{' {
				j, err := closing(i)
				if err != nil {
					return nil, err
				}
				i = j
				continue
			}
			for i < len(expr) && isIdent(expr[i]) {
				i++
			}
		case c >= '0' && c <= '9' || c == '.':
			for i < len(expr) && (isIdent(expr[i]) || expr[i] == '.') {
				i++
			}
		case isIdentStart(c):
			j := i
			for j < len(expr) && isIdent(expr[j]) {
				j++
			}
			word := expr[i:j]
			next := skipSpace(j)
			switch {
			case labelLists[word] && next < len(expr) && expr[next] == '(':
				k, err := closing(next)
				if err != nil {
					return nil, err
				}
				i = k
				continue
			case keywords[word] || next < len(expr) && expr[next] == '(':
				// an aggregation, keyword or function call
			default:
				sel := selector{name: word}
				if next < len(expr) && expr[next] == '{' {
					k, err := closing(next)
					if err != nil {
						return nil, err
					}
					sel.matchers = expr[next+1 : k-1]
					j = k
				}
				sels = append(sels, sel)
			}
			i = j
		default:
			i++
		}
	}
	return sels, nil
}

func TestPromQLMetricNames(t *testing.T) {
	tests := []struct {
		name string
		give string
		want []string
	}{
		{name: "bare selector", give: `up`, want: []string{"up"}},
		{name: "matchers, range and grafana variables",
			give: `sum by (pod) (rate(imkube_gateway_connects_total{namespace=~"$namespace",pod=~"a|b"}[$__rate_interval]))`,
			want: []string{"imkube_gateway_connects_total"}},
		{name: "histogram quantile with le in the grouping",
			give: `histogram_quantile(0.99, sum by (le, controller) (rate(imkube_operator_reconcile_seconds_bucket{result="error"}[5m])))`,
			want: []string{"imkube_operator_reconcile_seconds_bucket"}},
		{name: "binary expression with vector matching",
			give: `sum(rate(a_total[1m])) / on(pod) group_left(node) b_info * 100 > bool 0.5`,
			want: []string{"a_total", "b_info"}},
		{name: "strings that look like metrics are ignored",
			give: `label_replace(x, "dst", "not_a_metric", "src", "(.*)")`,
			want: []string{"x"}},
		{name: "offset and grafana braces", give: `y offset 1h + z{a="${var}"}`, want: []string{"y", "z"}},
		{name: "aggregation clause after the body", give: `max(go_goroutines) without (instance)`, want: []string{"go_goroutines"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := promqlMetricNames(tt.give)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("promqlMetricNames(%q) = %v, want %v", tt.give, got, tt.want)
			}
		})
	}
	if _, err := promqlMetricNames(`sum(x{a="b"`); err == nil {
		t.Error("an unbalanced selector is not an error")
	}
}
