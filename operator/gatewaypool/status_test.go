package gatewaypool

import (
	"errors"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
	"github.com/imkube/imkube/operator/internal/render"
)

func TestComputeStatusObservedGeneration(t *testing.T) {
	tests := []struct {
		name       string
		give       error // the joined error of the phases
		wantGen    int64
		wantReason string
	}{
		{name: "a successful reconcile observes the current generation", wantGen: 2, wantReason: imv1.ReasonComponentsNotReady},
		{
			name: "a failed reconcile keeps the previous generation and reports the failure",
			give: errors.New("apply Deployment edge-gateway: invalid"), wantGen: 1, wantReason: imv1.ReasonApplyFailed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := samplePool() // generation 2
			p.Status.ObservedGeneration = 1
			computeStatus(p, newScope(p, sampleCluster(), render.Options{}), tt.give)
			if p.Status.ObservedGeneration != tt.wantGen {
				t.Errorf("observedGeneration = %d, want %d", p.Status.ObservedGeneration, tt.wantGen)
			}
			for _, typ := range []string{imv1.ConditionReady, imv1.ConditionProgressing, imv1.ConditionDegraded} {
				cond := meta.FindStatusCondition(p.Status.Conditions, typ)
				if cond == nil {
					t.Errorf("condition %s not set", typ)
					continue
				}
				if cond.ObservedGeneration != tt.wantGen {
					t.Errorf("%s observedGeneration = %d, want %d", typ, cond.ObservedGeneration, tt.wantGen)
				}
			}
			if ready := meta.FindStatusCondition(p.Status.Conditions, imv1.ConditionReady); ready == nil ||
				ready.Status != metav1.ConditionFalse || ready.Reason != tt.wantReason {
				t.Errorf("Ready = %+v, want False/%s", ready, tt.wantReason)
			}
		})
	}
}
