package phase

import (
	"context"
	"errors"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
)

// recorder is what the fake controller saw in one reconcile.
type recorder struct {
	scoped    bool
	statusErr error // the error WriteStatus was given
	wrote     bool
	origGen   int64
}

// returns is a phase that only returns res and err.
func returns(res ctrl.Result, err error) Func[*recorder] {
	return func(context.Context, *recorder) (ctrl.Result, error) { return res, err }
}

func TestReconcile(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := imv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	live := &imv1.IMCluster{ObjectMeta: metav1.ObjectMeta{Namespace: "chat", Name: "demo", Generation: 4}}
	deleting := &imv1.IMCluster{ObjectMeta: metav1.ObjectMeta{
		Namespace: "chat", Name: "leaving", DeletionTimestamp: &now, Finalizers: []string{"example.com/hold"},
	}}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(live, deleting).Build()

	errApply := errors.New("apply Deployment demo-user: invalid")
	errStatus := errors.New("write IMCluster status: conflict")
	errScope := errors.New("get IMCluster demo: timeout")
	tests := []struct {
		name       string
		give       string // object name
		phases     []Func[*recorder]
		scopeErr   error
		writeErr   error
		wantRes    ctrl.Result
		wantErr    []error
		wantScoped bool
		wantWrote  bool
		wantStatus error // the error WriteStatus is given
	}{
		{name: "a missing object is not an error", give: "gone"},
		{name: "a deleted object is left to the garbage collector", give: "leaving"},
		{
			name: "a successful reconcile returns the merged result after writing the status",
			give: "demo",
			phases: []Func[*recorder]{
				returns(ctrl.Result{RequeueAfter: time.Minute}, nil),
				returns(ctrl.Result{RequeueAfter: time.Second}, nil),
			},
			wantRes: ctrl.Result{RequeueAfter: time.Second}, wantScoped: true, wantWrote: true,
		},
		{
			name: "a failing phase reaches the status write and returns the error without a result",
			give: "demo",
			phases: []Func[*recorder]{
				returns(ctrl.Result{RequeueAfter: time.Minute}, errApply),
			},
			wantErr: []error{errApply}, wantScoped: true, wantWrote: true, wantStatus: errApply,
		},
		{
			name:     "a failing status write is joined to the phase errors",
			give:     "demo",
			phases:   []Func[*recorder]{returns(ctrl.Result{}, errApply)},
			writeErr: errStatus,
			wantErr:  []error{errApply, errStatus}, wantScoped: true, wantWrote: true, wantStatus: errApply,
		},
		{
			name: "a scope that cannot be built ends the reconcile without a status write",
			give: "demo", scopeErr: errScope, wantErr: []error{errScope}, wantScoped: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			ctl := Controller[imv1.IMCluster, *imv1.IMCluster, *recorder]{
				Name:   "imcluster",
				Client: c,
				Scope: func(_ context.Context, obj *imv1.IMCluster) (*recorder, error) {
					rec.scoped = true
					return rec, tt.scopeErr
				},
				Phases: func(*recorder) []Func[*recorder] { return tt.phases },
				WriteStatus: func(_ context.Context, orig, obj *imv1.IMCluster, s *recorder, err error) error {
					s.wrote, s.statusErr, s.origGen = true, err, orig.Generation
					if orig == obj {
						t.Error("WriteStatus got the live object as the original")
					}
					return tt.writeErr
				},
			}
			res, err := Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "chat", Name: tt.give}}, ctl)
			if res != tt.wantRes {
				t.Errorf("result = %+v, want %+v", res, tt.wantRes)
			}
			if len(tt.wantErr) == 0 && err != nil {
				t.Errorf("err = %v, want nil", err)
			}
			for _, want := range tt.wantErr {
				if !errors.Is(err, want) {
					t.Errorf("err = %v, does not wrap %v", err, want)
				}
			}
			if rec.scoped != tt.wantScoped || rec.wrote != tt.wantWrote {
				t.Errorf("scope built %v, status written %v; want %v, %v", rec.scoped, rec.wrote, tt.wantScoped, tt.wantWrote)
			}
			if !errors.Is(rec.statusErr, tt.wantStatus) || (tt.wantStatus == nil && rec.statusErr != nil) {
				t.Errorf("WriteStatus got err %v, want %v", rec.statusErr, tt.wantStatus)
			}
			if tt.wantWrote && rec.origGen != live.Generation {
				t.Errorf("original generation = %d, want %d", rec.origGen, live.Generation)
			}
		})
	}
}
