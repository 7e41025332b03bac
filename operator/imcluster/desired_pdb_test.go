package imcluster

import (
	"testing"

	"github.com/imkube/imkube/operator/internal/golden"
	"github.com/imkube/imkube/operator/internal/render"
)

// Every component (all run more than one replica by default) has a
// PodDisruptionBudget; the golden files let kube-score (test/kubescore) match
// each golden Deployment with its budget.
func TestEveryComponentHasAPDBMatchingTheGoldenFiles(t *testing.T) {
	s := newScope(sampleCluster(), render.Options{Version: "v0.0.0-operator"})
	for _, comp := range components() {
		t.Run(comp, func(t *testing.T) {
			golden.Assert(t, "pdb-"+comp, desiredPDB(s, comp))
		})
	}
}
