package dashboards_test

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"sigs.k8s.io/yaml"

	"github.com/imkube/imkube/internal/telemetry/telemetrytest"
)

// alertRulesFile is the chart's alert rules (the PrometheusRule's source,
// tested with promtool in charts/imkube/alerts).
const alertRulesFile = "../alerts/imkube-alerts.yaml"

// prometheusSeries are the series Prometheus itself writes for every scrape
// target: alerts may select them although no imkube process exports them.
var prometheusSeries = map[string]bool{"up": true}

type alertRule struct {
	Alert string `json:"alert"`
	Expr  string `json:"expr"`
}

func loadAlertRules(t *testing.T) []alertRule {
	t.Helper()
	raw, err := os.ReadFile(alertRulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []alertRule `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(raw, &f); err != nil {
		t.Fatalf("%s: %v", alertRulesFile, err)
	}
	var out []alertRule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	if len(out) == 0 {
		t.Fatalf("%s has no rules", alertRulesFile)
	}
	return out
}

// Every metric an alert expression selects is one that an assembled imkube
// process exports (scraped from the four distributed roles started through
// internal/app, as for the dashboards), or a series Prometheus writes (up).
func TestAlertExpressionsOnlyUseMetricsTheServicesExport(t *testing.T) {
	fams := assembledFamilies(t)
	for _, e := range alertErrors(loadAlertRules(t), fams) {
		t.Error(e)
	}
}

// The check above fails on an alert whose metric no process exports.
func TestAlertCheckRejectsAnAlertNoProcessExports(t *testing.T) {
	fams := assembledFamilies(t)
	rules := append(loadAlertRules(t), alertRule{Alert: "ImkubeBroken", Expr: `sum by (imcluster) (rate(imkube_dependency_down_total[5m])) > 0`})
	errs := alertErrors(rules, fams)
	if !slices.ContainsFunc(errs, func(e string) bool {
		return strings.Contains(e, "ImkubeBroken") && strings.Contains(e, "imkube_dependency_down_total")
	}) {
		t.Fatalf("an alert on an unexported metric passed; errors: %v", errs)
	}
}

// alertErrors lists the alerts of rules that select a metric fams lacks.
func alertErrors(rules []alertRule, fams map[string]*dto.MetricFamily) []string {
	registered := telemetrytest.SeriesNames(fams)
	var errs []string
	for _, r := range rules {
		names, err := promqlMetricNames(r.Expr)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", r.Alert, err))
			continue
		}
		if len(names) == 0 {
			errs = append(errs, fmt.Sprintf("%s: expression %q selects no metric", r.Alert, r.Expr))
		}
		for _, n := range names {
			if !registered[n] && !prometheusSeries[n] {
				errs = append(errs, fmt.Sprintf("%s: expression uses %s, which no assembled imkube process exports", r.Alert, n))
			}
		}
	}
	slices.Sort(errs)
	return errs
}
