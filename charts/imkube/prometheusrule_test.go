package chart_test

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// alertGroups reads the rule groups of alerts/imkube-alerts.yaml, the one
// source of the PrometheusRule (promtool tests it in alerts/).
func alertGroups(t *testing.T) []any {
	t.Helper()
	raw, err := os.ReadFile("alerts/imkube-alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var f map[string]any
	if err := yaml.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	groups, ok := f["groups"].([]any)
	if !ok || len(groups) == 0 {
		t.Fatalf("alerts/imkube-alerts.yaml has no groups: %v", f)
	}
	return groups
}

func prometheusRules(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, u := range objs {
		if u.GetKind() == "PrometheusRule" {
			out = append(out, u)
		}
	}
	return out
}

func TestPrometheusRuleIsOffByDefault(t *testing.T) {
	_, objs := render(t)
	if got := prometheusRules(objs); len(got) != 0 {
		t.Errorf("the default render has %d PrometheusRules, want none (prometheusRule.enabled is false)", len(got))
	}
}

// Enabled, the PrometheusRule carries exactly the groups of the rule file
// that promtool tests, in the release namespace.
func TestPrometheusRuleCarriesTheTestedRuleGroups(t *testing.T) {
	_, objs := render(t, "--set", "prometheusRule.enabled=true")
	rules := prometheusRules(objs)
	if len(rules) != 1 {
		t.Fatalf("%d PrometheusRules, want 1", len(rules))
	}
	r := rules[0]
	if r.GetAPIVersion() != "monitoring.coreos.com/v1" || r.GetNamespace() != namespace {
		t.Errorf("PrometheusRule %s/%s apiVersion %s, want monitoring.coreos.com/v1 in %s", r.GetNamespace(), r.GetName(), r.GetAPIVersion(), namespace)
	}
	if len(r.Object["spec"].(map[string]any)) != 1 {
		t.Errorf("spec has fields besides groups: %v", r.Object["spec"])
	}
	got, _, _ := unstructured.NestedSlice(r.Object, "spec", "groups")
	if want := alertGroups(t); !reflect.DeepEqual(got, want) {
		t.Errorf("the PrometheusRule's groups differ from alerts/imkube-alerts.yaml:\n got %v\nwant %v", got, want)
	}
}

// labels, namespace, runbookBaseURL and additionalGroups apply.
func TestPrometheusRuleValues(t *testing.T) {
	_, objs := render(t, "--set", "prometheusRule.enabled=true", "--set", "prometheusRule.namespace=monitoring",
		"--set", "prometheusRule.labels.release=kube-prometheus-stack",
		"--set", "prometheusRule.runbookBaseURL=https://runbooks.example.com/imkube/",
		"--set", "prometheusRule.additionalGroups[0].name=site",
		"--set", "prometheusRule.additionalGroups[0].rules[0].alert=SiteAlert",
		"--set", "prometheusRule.additionalGroups[0].rules[0].expr=vector(1)")
	rules := prometheusRules(objs)
	if len(rules) != 1 {
		t.Fatalf("%d PrometheusRules, want 1", len(rules))
	}
	r := rules[0]
	if r.GetNamespace() != "monitoring" || r.GetLabels()["release"] != "kube-prometheus-stack" {
		t.Errorf("namespace %q labels %v, want monitoring and release=kube-prometheus-stack", r.GetNamespace(), r.GetLabels())
	}
	groups, _, _ := unstructured.NestedSlice(r.Object, "spec", "groups")
	want := alertGroups(t)
	if len(groups) != len(want)+1 {
		t.Fatalf("%d groups, want the %d of the rule file and the additional one", len(groups), len(want))
	}
	if last := groups[len(groups)-1].(map[string]any); last["name"] != "site" {
		t.Errorf("last group %v, want the additional group site", last)
	}
	n := 0
	for _, g := range groups[:len(want)] {
		for _, rule := range g.(map[string]any)["rules"].([]any) {
			ann, _ := rule.(map[string]any)["annotations"].(map[string]any)
			url, _ := ann["runbook_url"].(string)
			name, _ := rule.(map[string]any)["alert"].(string)
			if want := "https://runbooks.example.com/imkube#" + strings.ToLower(name); url != want {
				t.Errorf("%s runbook_url %q, want %q", name, url, want)
			}
			n++
		}
	}
	if n == 0 {
		t.Error("no alerts rendered")
	}
}
