// Package kubescore runs kube-score (pinned by hack/kube-score.sh, path in
// IMKUBE_KUBE_SCORE, set by `make test`) over what imkube installs: the Helm
// chart rendered with the default and the full values (helm from
// hack/helm.sh, IMKUBE_HELM) and every golden desired object of the operator
// (operator/*/testdata/*.yaml). It fails on every CRITICAL finding that is
// not accepted, with its reason, in allowlist.yaml, and on allow-list
// entries that no longer match anything (so the list only shrinks with
// the findings).
package kubescore_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/imkube/imkube/internal/testenv"
)

// kubernetesVersion is what kube-score assumes (it gates some checks):
// the version the chart claims and the envtest control plane runs.
const kubernetesVersion = "v1.37"

// allowed is one accepted finding.
type allowed struct {
	// Check is kube-score's check id (kube-score list), e.g. container-resources.
	Check string `json:"check"`
	// Objects are path.Match patterns over kube-score's object names,
	// <Kind>/<group/version>/<namespace>/<name>, e.g. Deployment/apps/v1/*/*.
	Objects []string `json:"objects"`
	// Comment is a substring of the finding's summary (empty: any).
	Comment string `json:"comment"`
	// Reason says why the finding is accepted; required.
	Reason string `json:"reason"`

	used bool
}

func (a *allowed) matches(f finding) bool {
	if a.Check != f.check || !strings.Contains(f.summary, a.Comment) {
		return false
	}
	for _, p := range a.Objects {
		if ok, _ := path.Match(p, f.object); ok {
			return true
		}
	}
	return false
}

type finding struct{ set, object, check, summary string }

func (f finding) String() string {
	return fmt.Sprintf("%s: %s: %s: %s", f.set, f.object, f.check, f.summary)
}

// scoreJSON is the part of kube-score's JSON output (v2) the test reads.
type scoreJSON []struct {
	ObjectName string `json:"object_name"`
	Checks     []struct {
		Check struct {
			ID string `json:"id"`
		} `json:"check"`
		Grade    int  `json:"grade"`
		Skipped  bool `json:"skipped"`
		Comments []struct {
			Path    string `json:"path"`
			Summary string `json:"summary"`
		} `json:"comments"`
	} `json:"checks"`
}

// gradeCritical is kube-score's CRITICAL grade.
const gradeCritical = 1

func TestNoCriticalKubeScoreFindingsOutsideTheAllowList(t *testing.T) {
	bin := testenv.Require(t, "IMKUBE_KUBE_SCORE")
	helm := testenv.Require(t, "IMKUBE_HELM")
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	var allow []*allowed
	b, err := os.ReadFile("allowlist.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, &allow); err != nil {
		t.Fatalf("allowlist.yaml: %v", err)
	}
	for i, a := range allow {
		if a.Check == "" || len(a.Objects) == 0 || len(strings.TrimSpace(a.Reason)) < 20 {
			t.Fatalf("allowlist.yaml entry %d (%s): needs check, objects and a reason", i+1, a.Check)
		}
	}

	goldens, err := filepath.Glob(filepath.Join(root, "operator", "*", "testdata", "*.yaml"))
	if err != nil || len(goldens) == 0 {
		t.Fatalf("no golden files under operator/*/testdata (err %v)", err)
	}
	sets := map[string][]string{"operator golden objects": goldens}
	for name, args := range map[string][]string{
		"chart, default values": nil,
		"chart, full values":    {"-f", filepath.Join(root, "charts", "imkube", "ci", "full-values.yaml")},
	} {
		cmd := exec.CommandContext(t.Context(), helm, append([]string{"template", "imkube", filepath.Join(root, "charts", "imkube"), "--namespace", "imkube-system"}, args...)...)
		cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("helm template (%s): %v", name, err)
		}
		f := filepath.Join(t.TempDir(), "chart.yaml")
		if err := os.WriteFile(f, out, 0o644); err != nil {
			t.Fatal(err)
		}
		sets[name] = []string{f}
	}

	var findings []finding
	for set, files := range sets {
		cmd := exec.CommandContext(t.Context(), bin, append([]string{"score", "--output-format", "json", "--kubernetes-version", kubernetesVersion}, files...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run() // exits 1 when it found something; the JSON says what
		var res scoreJSON
		if jerr := json.Unmarshal(stdout.Bytes(), &res); jerr != nil {
			t.Fatalf("kube-score (%s): %v: %v\n%s", set, err, jerr, stderr.String())
		}
		if len(res) == 0 {
			t.Fatalf("kube-score (%s) scored no objects", set)
		}
		for _, o := range res {
			for _, c := range o.Checks {
				if c.Skipped || c.Grade != gradeCritical {
					continue
				}
				for _, cm := range c.Comments {
					s := cm.Summary
					if cm.Path != "" {
						s = "(" + cm.Path + ") " + s
					}
					findings = append(findings, finding{set: set, object: o.ObjectName, check: c.Check.ID, summary: s})
				}
			}
		}
	}

	for _, f := range findings {
		ok := false
		for _, a := range allow {
			if a.matches(f) {
				a.used, ok = true, true
			}
		}
		if !ok {
			t.Errorf("CRITICAL, not in test/kubescore/allowlist.yaml: %s", f)
		}
	}
	for _, a := range allow {
		if !a.used {
			t.Errorf("allowlist.yaml: %s %v %q matches no finding any more: remove it", a.Check, a.Objects, a.Comment)
		}
	}
}
