package gatewaypool

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
	"github.com/imkube/imkube/operator/internal/apply"
	"github.com/imkube/imkube/operator/internal/render"
)

// An autoscaled pool without KEDA's CRD reports KEDANotInstalled (Degraded)
// instead of failing its reconcile; a fixed pool does not need KEDA.
func TestPoolWithoutKEDAIsDegradedNotFailed(t *testing.T) {
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = imv1.AddToScheme(s)
	for _, autoscaled := range []bool{true, false} {
		p := samplePool()
		if !autoscaled {
			p.Spec.Autoscaling, p.Spec.Replicas = nil, new(int32)
		}
		c := fake.NewClientBuilder().WithScheme(s).WithObjects(p).Build()
		r := &Reconciler{Client: c}
		sc := newScope(p, sampleCluster(), render.Options{})
		if err := r.reconcileScaledObject(t.Context(), sc, apply.Applier{Client: c, FieldManager: render.FieldManager}); err != nil {
			t.Fatalf("autoscaled %v: %v", autoscaled, err)
		}
		computeStatus(p, sc, nil)
		d := meta.FindStatusCondition(p.Status.Conditions, imv1.ConditionDegraded)
		if got := d != nil && d.Reason == imv1.ReasonKEDANotInstalled && d.Status == "True"; got != autoscaled {
			t.Errorf("autoscaled %v: Degraded = %+v", autoscaled, d)
		}
	}
}
