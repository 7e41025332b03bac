// Package alerts_test checks the imkube alert rules (imkube-alerts.yaml, the
// source of the chart's PrometheusRule): promtool (Prometheus v0.316.0, from
// hack/promtool.sh: IMKUBE_PROMTOOL, set by `make test`) checks them and runs
// their unit tests on synthetic series (tests.yaml), every alert has a test
// case that fires it, labels and annotations an on-call engineer needs, and
// a runbook entry in docs/operator.md. That every metric the expressions
// select is exported by the assembled processes is checked next to the
// dashboards (charts/imkube/dashboards/alerts_test.go).
package alerts_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/imkube/imkube/internal/testenv"
)

const (
	rulesFile = "imkube-alerts.yaml"
	testsFile = "tests.yaml"
	// runbookPage is where runbook_url points (the chart's
	// prometheusRule.runbookBaseURL replaces it).
	runbookPage = "https://github.com/imkube/imkube/blob/main/docs/operator.md"
)

type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []rule `json:"rules"`
	} `json:"groups"`
}

type rule struct {
	Alert       string            `json:"alert"`
	Record      string            `json:"record"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

type testFile struct {
	RuleFiles          []string `json:"rule_files"`
	EvaluationInterval string   `json:"evaluation_interval"`
	Tests              []struct {
		Name        string `json:"name"`
		Interval    string `json:"interval"`
		InputSeries []struct {
			Series string `json:"series"`
			Values string `json:"values"`
		} `json:"input_series"`
		AlertRuleTests []struct {
			EvalTime  string           `json:"eval_time"`
			Alertname string           `json:"alertname"`
			ExpAlerts []map[string]any `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(raw, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func alerts(t *testing.T) []rule {
	t.Helper()
	var f ruleFile
	readYAML(t, rulesFile, &f)
	var out []rule
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				out = append(out, r)
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s defines no alerts", rulesFile)
	}
	return out
}

func promtool(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	bin := testenv.Require(t, "IMKUBE_PROMTOOL")
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// promtool check rules and promtool test rules pass on the chart's rules.
func TestPromtoolChecksAndTestsTheRules(t *testing.T) {
	if out, err := promtool(t, ".", "check", "rules", rulesFile); err != nil {
		t.Fatalf("promtool check rules %s: %v\n%s", rulesFile, err, out)
	}
	out, err := promtool(t, ".", "test", "rules", testsFile)
	if err != nil {
		t.Fatalf("promtool test rules %s: %v\n%s", testsFile, err, out)
	}
	t.Logf("promtool test rules:\n%s", out)
}

// The unit tests assert what fires: the same tests on rules with a raised
// threshold (an alert that no longer fires) fail.
func TestPromtoolTestsFailWhenAnAlertNoLongerFires(t *testing.T) {
	raw, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	const threshold = "sum by (imcluster, namespace) (imkube_message_consumer_lag) > 10000"
	if !bytes.Contains(raw, []byte(threshold)) {
		t.Fatalf("%s no longer contains %q; update this test", rulesFile, threshold)
	}
	dir := t.TempDir()
	broken := bytes.Replace(raw, []byte(threshold), []byte(strings.Replace(threshold, "10000", "1000000", 1)), 1)
	tests, err := os.ReadFile(testsFile)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{rulesFile: broken, testsFile: tests} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := promtool(t, dir, "test", "rules", testsFile)
	if err == nil {
		t.Fatalf("promtool test rules passed with ImkubeConsumerLagHigh's threshold raised 100 times:\n%s", out)
	}
	if !strings.Contains(out, "ImkubeConsumerLagHigh") {
		t.Errorf("the failure does not name ImkubeConsumerLagHigh:\n%s", out)
	}
}

// Every alert has a test case that expects it to fire; tests name only
// alerts that exist and use the chart's rule file.
func TestEveryAlertHasATestCaseThatFiresIt(t *testing.T) {
	var tf testFile
	readYAML(t, testsFile, &tf)
	if !slices.Equal(tf.RuleFiles, []string{rulesFile}) {
		t.Errorf("%s tests rule_files %v, want [%s]", testsFile, tf.RuleFiles, rulesFile)
	}
	defined := map[string]bool{}
	for _, a := range alerts(t) {
		defined[a.Alert] = true
	}
	fires := map[string]bool{}
	for _, tc := range tf.Tests {
		for _, at := range tc.AlertRuleTests {
			if !defined[at.Alertname] {
				t.Errorf("test %q checks %s, which %s does not define", tc.Name, at.Alertname, rulesFile)
			}
			if len(at.ExpAlerts) > 0 {
				fires[at.Alertname] = true
			}
		}
	}
	for name := range defined {
		if !fires[name] {
			t.Errorf("no test case in %s makes %s fire", testsFile, name)
		}
	}
}

// Every alert is named Imkube<PascalCase>, has a for duration, a severity an
// Alertmanager can route, summary and description naming the IMCluster, and
// a runbook_url whose anchor is a heading of docs/operator.md.
func TestEveryAlertHasSeverityAnnotationsAndARunbook(t *testing.T) {
	docs, err := os.ReadFile("../../../docs/operator.md")
	if err != nil {
		t.Fatal(err)
	}
	anchors := markdownAnchors(string(docs))
	name := regexp.MustCompile(`^Imkube[A-Z][A-Za-z0-9]+$`)
	byClause := regexp.MustCompile(`\bby\s*\(([^)]*)\)`)
	seen := map[string]bool{}
	for _, a := range alerts(t) {
		if seen[a.Alert] {
			t.Errorf("alert %s is defined twice", a.Alert)
		}
		seen[a.Alert] = true
		if !name.MatchString(a.Alert) {
			t.Errorf("alert %q is not named Imkube<PascalCase>", a.Alert)
		}
		if a.For == "" {
			t.Errorf("%s has no for: a single bad evaluation would page", a.Alert)
		}
		if s := a.Labels["severity"]; !slices.Contains([]string{"critical", "warning", "info"}, s) {
			t.Errorf("%s has severity %q, want critical, warning or info", a.Alert, s)
		}
		for _, k := range []string{"summary", "description"} {
			if a.Annotations[k] == "" {
				t.Errorf("%s has no %s annotation", a.Alert, k)
			}
		}
		if !strings.Contains(a.Annotations["summary"], "{{ $labels.imcluster }}") {
			t.Errorf("%s's summary does not name the IMCluster ({{ $labels.imcluster }})", a.Alert)
		}
		// Aggregations keep the IMCluster (the ServiceMonitor's label) so
		// that one alert fires per cluster; plain selectors keep every label.
		for _, m := range byClause.FindAllStringSubmatch(a.Expr, -1) {
			if !slices.Contains(strings.Fields(strings.ReplaceAll(m[1], ",", " ")), "imcluster") {
				t.Errorf("%s aggregates by (%s), which drops imcluster", a.Alert, m[1])
			}
		}
		if strings.Contains(a.Expr, "without") {
			t.Errorf("%s aggregates with without(...); use by (imcluster, ...)", a.Alert)
		}
		want := runbookPage + "#" + strings.ToLower(a.Alert)
		if got := a.Annotations["runbook_url"]; got != want {
			t.Errorf("%s has runbook_url %q, want %q", a.Alert, got, want)
		}
		if !anchors[strings.ToLower(a.Alert)] {
			t.Errorf("docs/operator.md has no runbook heading for %s (anchor #%s)", a.Alert, strings.ToLower(a.Alert))
		}
	}
}

// markdownAnchors returns the GitHub anchors of a Markdown document's
// headings (lower case; spaces become -, other punctuation is dropped).
func markdownAnchors(doc string) map[string]bool {
	out := map[string]bool{}
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(h) {
			switch {
			case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteRune('-')
			}
		}
		out[b.String()] = true
	}
	return out
}

func TestMarkdownAnchors(t *testing.T) {
	got := markdownAnchors("# Title\n#### ImkubeGatewayDown\ntext\n## What `x` does (y)\n")
	for _, want := range []string{"title", "imkubegatewaydown", "what-x-does-y"} {
		if !got[want] {
			t.Errorf("anchor %q missing from %v", want, got)
		}
	}
	if got["text"] {
		t.Error("a text line became an anchor")
	}
}

// The rules select gateways and services by job, which prometheus-operator
// sets to the scraped Service's name: the regexes must match the names the
// operator gives its metrics Services (its golden files), and not each other's.
func TestJobSelectorsMatchTheOperatorsServiceNames(t *testing.T) {
	raw, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	const gatewayJobs, serviceJobs = `.+-gateway-internal`, `.+-(message|sequence|user)`
	for _, re := range []string{gatewayJobs, serviceJobs} {
		if !bytes.Contains(raw, []byte(`job=~"`+re+`"`)) {
			t.Errorf("%s does not select job=~%q; update this test with the rules", rulesFile, re)
		}
	}
	type port struct {
		Name string `json:"name"`
	}
	name := func(path string) string {
		var obj struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Spec struct {
				Ports []port `json:"ports"`
			} `json:"spec"`
		}
		raw, err := os.ReadFile(filepath.Join("../../../operator", path))
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(raw, &obj); err != nil {
			t.Fatal(err)
		}
		if obj.Kind != "Service" || !slices.Contains(obj.Spec.Ports, port{Name: "internal"}) {
			t.Fatalf("%s is not a Service with the metrics port internal", path)
		}
		return obj.Metadata.Name
	}
	gw := name("gatewaypool/testdata/service-internal.yaml")
	svc := name("imcluster/testdata/service-user.yaml")
	full := func(re string) *regexp.Regexp { return regexp.MustCompile("^(?:" + re + ")$") }
	if !full(gatewayJobs).MatchString(gw) || full(serviceJobs).MatchString(gw) {
		t.Errorf("gateway metrics Service %q: want matched by %s only", gw, gatewayJobs)
	}
	if !full(serviceJobs).MatchString(svc) || full(gatewayJobs).MatchString(svc) {
		t.Errorf("user metrics Service %q: want matched by %s only", svc, serviceJobs)
	}
}
