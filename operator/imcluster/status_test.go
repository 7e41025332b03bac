package imcluster

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
		name        string
		give        error // the joined error of the phases
		wantGen     int64
		wantReady   metav1.ConditionStatus
		wantReason  string
		wantDegrade metav1.ConditionStatus
	}{
		{
			name: "a successful reconcile observes the current generation", wantGen: 3,
			wantReady: metav1.ConditionFalse, wantReason: imv1.ReasonComponentsNotReady, wantDegrade: metav1.ConditionFalse,
		},
		{
			name: "a failed reconcile keeps the previous generation and reports the failure",
			give: errors.New("apply Deployment demo-user: invalid"), wantGen: 2,
			wantReady: metav1.ConditionFalse, wantReason: imv1.ReasonApplyFailed, wantDegrade: metav1.ConditionTrue,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := sampleCluster() // generation 3
			c.Status.ObservedGeneration = 2
			computeStatus(c, newScope(c, render.Options{}), tt.give)
			if c.Status.ObservedGeneration != tt.wantGen {
				t.Errorf("observedGeneration = %d, want %d", c.Status.ObservedGeneration, tt.wantGen)
			}
			for _, typ := range []string{imv1.ConditionReady, imv1.ConditionProgressing, imv1.ConditionDegraded, imv1.ConditionDependenciesReady} {
				cond := meta.FindStatusCondition(c.Status.Conditions, typ)
				if cond == nil {
					t.Errorf("condition %s not set", typ)
					continue
				}
				if cond.ObservedGeneration != tt.wantGen {
					t.Errorf("%s observedGeneration = %d, want %d", typ, cond.ObservedGeneration, tt.wantGen)
				}
			}
			ready := meta.FindStatusCondition(c.Status.Conditions, imv1.ConditionReady)
			if ready == nil || ready.Status != tt.wantReady || ready.Reason != tt.wantReason {
				t.Errorf("Ready = %+v, want %s/%s", ready, tt.wantReady, tt.wantReason)
			}
			if d := meta.FindStatusCondition(c.Status.Conditions, imv1.ConditionDegraded); d == nil || d.Status != tt.wantDegrade {
				t.Errorf("Degraded = %+v, want %s", d, tt.wantDegrade)
			}
		})
	}
}
