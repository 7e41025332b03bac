//go:build e2e

package k8s

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imkube/imkube/internal/testenv"
)

// The quick start of docs/install.md (the same block as README.md's, a chart
// test checks that) is what the suite runs: its helm install, its kubectl
// apply and its kubectl wait, with these rewrites only:
//   - the namespace `chat` becomes the suite's namespace;
//   - helm gets --wait and a timeout, and the image under test (kind);
//   - process mode (kwok: no container runs) drops --set
//     dependencies.enabled=true and applies the sample with the RocketMQ of
//     hack/deps.sh in place of the demo one (imclusterManifest);
//   - kubectl wait gets the suite's timeout.
// Any other command in the block fails the suite: extend the rewrites.

// docNamespace is the namespace the quick start uses.
const docNamespace = "chat"

// quickstartBlock returns the commands of the block following the
// `<!-- quickstart` comment of docs/install.md.
func quickstartBlock(t *testing.T, root string) [][]string {
	t.Helper()
	cmds, err := testenv.QuickstartBlock(root)
	if err != nil {
		t.Fatal(err)
	}
	return cmds
}

// quickstartStep is one command of the quick start, rewritten for the suite.
type quickstartStep struct {
	kind  string // "helm install", "kubectl apply", "kubectl wait"
	name  string // helm or kubectl
	args  []string
	stdin bool // the sample is given on stdin (process mode)
}

// quickstartSteps rewrites the quick start for the suite (see above).
func quickstartSteps(t *testing.T, cmds [][]string, cfg config, helmTimeout time.Duration) []quickstartStep {
	t.Helper()
	var steps []quickstartStep
	for _, c := range cmds {
		args := slices.Clone(c[1:])
		for i := range args {
			if args[i] == docNamespace && i > 0 && (args[i-1] == "-n" || args[i-1] == "--namespace") {
				args[i] = namespace
			}
		}
		switch {
		case c[0] == "helm" && len(args) > 2 && args[0] == "install":
			if args[1] != release || args[2] != "charts/imkube" {
				t.Fatalf("quick start: %q: want `helm install %s charts/imkube ...`", strings.Join(c, " "), release)
			}
			var out []string
			for i := 0; i < len(args); i++ {
				if cfg.mode == modeProcess && args[i] == "--set" && i+1 < len(args) && args[i+1] == "dependencies.enabled=true" {
					i++ // kwok runs no container: hack/deps.sh stands in for the demo dependencies
					continue
				}
				out = append(out, args[i])
			}
			out = append(out, "--wait", "--timeout", helmTimeout.String())
			if cfg.image != "" {
				i := strings.LastIndex(cfg.image, ":")
				repo, tag := cfg.image[:max(i, 0)], cfg.image[i+1:]
				if i < 0 || strings.Contains(tag, "/") || repo == "" || tag == "" {
					t.Fatalf("IMKUBE_E2E_IMAGE=%q: want repository:tag", cfg.image)
				}
				out = append(out, "--set", "image.repository="+repo, "--set", "image.tag="+tag)
			}
			steps = append(steps, quickstartStep{kind: "helm install", name: "helm", args: out})
		case c[0] == "kubectl" && slices.Contains(args, "apply"):
			st := quickstartStep{kind: "kubectl apply", name: "kubectl", args: args}
			if cfg.mode == modeProcess {
				// The IMCluster sample is rewritten (imclusterManifest) and
				// given on stdin; the other files are applied as written.
				var out []string
				for i := 0; i < len(args); i++ {
					if args[i] == "-f" && i+1 < len(args) && args[i+1] == "crds/samples/imcluster.yaml" {
						out = append(out, "-f", "-")
						st.stdin = true
						i++
						continue
					}
					out = append(out, args[i])
				}
				st.args = out
			}
			steps = append(steps, st)
		case c[0] == "kubectl" && slices.Contains(args, "wait"):
			var out []string
			for _, a := range args {
				if !strings.HasPrefix(a, "--timeout") {
					out = append(out, a)
				}
			}
			steps = append(steps, quickstartStep{kind: "kubectl wait", name: "kubectl", args: append(out, "--timeout", cfg.readyTimeout.String())})
		default:
			t.Fatalf("quick start: no rewrite for %q: extend quickstartSteps", strings.Join(c, " "))
		}
	}
	var kinds []string
	for _, s := range steps {
		kinds = append(kinds, s.kind)
	}
	if want := []string{"helm install", "kubectl apply", "kubectl wait"}; !slices.Equal(kinds, want) {
		t.Fatalf("quick start runs %v, the suite expects %v", kinds, want)
	}
	return steps
}

// run executes a quick start step in the repository root (paths in the doc
// are relative to it), the sample on stdin when asked.
func (st quickstartStep) run(k *kube, root, stdin string, timeout time.Duration) result {
	k.t.Helper()
	if !st.stdin {
		stdin = ""
	}
	args := st.args
	if st.name == "helm" {
		args = slices.Clone(args)
		args[2] = filepath.Join(root, args[2])
	} else {
		args = slices.Clone(args)
		for i := range args {
			if i > 0 && args[i-1] == "-f" && args[i] != "-" {
				args[i] = filepath.Join(root, args[i])
			}
		}
	}
	name := st.name
	if name == "helm" {
		name = k.helm // the pinned helm of hack/helm.sh
	}
	return k.exec(timeout, stdin, name, args...)
}

func (st quickstartStep) String() string {
	return fmt.Sprintf("%s %s", st.name, strings.Join(st.args, " "))
}

// TestQuickstartIsWhatTheSuiteRuns checks the rewrites without a cluster.
func TestQuickstartIsWhatTheSuiteRuns(t *testing.T) {
	root := repoRoot(t)
	cmds := quickstartBlock(t, root)
	tests := []struct {
		name string
		give config
		want []string
	}{
		{
			name: "process mode: hack/deps.sh stands in for the demo dependencies",
			give: config{mode: modeProcess, readyTimeout: 3 * time.Minute},
			want: []string{
				"helm install imkube charts/imkube --namespace imkube-e2e --create-namespace --wait --timeout 5m0s",
				"kubectl -n imkube-e2e apply -f - -f crds/samples/gatewaypool.yaml",
				"kubectl -n imkube-e2e wait --for=condition=Ready imc/demo gwp/edge --timeout 3m0s",
			},
		},
		{
			name: "in-cluster mode: the commands as written, with the image under test",
			give: config{mode: modeInCluster, readyTimeout: 10 * time.Minute, image: "ghcr.io/imkube/imkube:0.1.0"},
			want: []string{
				"helm install imkube charts/imkube --namespace imkube-e2e --create-namespace --set dependencies.enabled=true --wait --timeout 5m0s --set image.repository=ghcr.io/imkube/imkube --set image.tag=0.1.0",
				"kubectl -n imkube-e2e apply -f crds/samples/imcluster.yaml -f crds/samples/gatewaypool.yaml",
				"kubectl -n imkube-e2e wait --for=condition=Ready imc/demo gwp/edge --timeout 10m0s",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, st := range quickstartSteps(t, cmds, tt.give, 5*time.Minute) {
				got = append(got, st.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("steps:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}
