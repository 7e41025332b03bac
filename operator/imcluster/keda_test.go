package imcluster

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
	"github.com/imkube/imkube/operator/internal/render"
)

// Without KEDA's CRD the operator writes nothing for message autoscaling,
// fails nothing, and says why in Degraded; with the HPA provider it does not
// need KEDA and says nothing.
func TestKEDANotInstalledIsACondition(t *testing.T) {
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = imv1.AddToScheme(s)
	for _, tt := range []struct {
		provider    imv1.AutoscalingProvider
		wantMissing bool
	}{
		{imv1.AutoscalingKEDA, true},
		{imv1.AutoscalingHPA, false},
	} {
		c := sampleCluster()
		c.Spec.Autoscaling.Provider = tt.provider
		// The fake client's RESTMapper knows the scheme's kinds only: no keda.sh.
		r := &Reconciler{Client: fake.NewClientBuilder().WithScheme(s).WithObjects(c).Build()}
		sc := newScope(c, render.Options{})
		if err := r.reconcileScaledObject(t.Context(), sc); err != nil {
			t.Fatalf("provider %s: reconcileScaledObject: %v", tt.provider, err)
		}
		if sc.kedaMissing != tt.wantMissing {
			t.Errorf("provider %s: kedaMissing = %v, want %v", tt.provider, sc.kedaMissing, tt.wantMissing)
		}
		computeStatus(c, sc, nil)
		d := meta.FindStatusCondition(c.Status.Conditions, imv1.ConditionDegraded)
		if got := d != nil && d.Status == "True" && d.Reason == imv1.ReasonKEDANotInstalled; got != tt.wantMissing {
			t.Errorf("provider %s: Degraded = %+v, want KEDANotInstalled %v", tt.provider, d, tt.wantMissing)
		}
	}
}

// A new autoscaled Deployment starts at minReplicas (not the API's default
// of 1), so message runs its minimum even while KEDA is missing.
func TestNewAutoscaledDeploymentStartsAtMinReplicas(t *testing.T) {
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = imv1.AddToScheme(s)
	c := sampleCluster()
	if c.Spec.Message.Autoscaling == nil {
		t.Fatal("the sample cluster does not autoscale message")
	}
	c.Spec.Message.Autoscaling.MinReplicas = 3
	r := &Reconciler{Client: fake.NewClientBuilder().WithScheme(s).WithObjects(c).Build()}
	sc := newScope(c, render.Options{})
	if _, err := r.reconcileComponents(t.Context(), sc); err != nil {
		t.Fatalf("reconcileComponents: %v", err)
	}
	var d appsv1.Deployment
	if err := r.Client.Get(t.Context(), types.NamespacedName{Namespace: c.Namespace, Name: sc.name(render.Message)}, &d); err != nil {
		t.Fatal(err)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
		t.Fatalf("new message Deployment replicas %v, want minReplicas 3", d.Spec.Replicas)
	}
}
