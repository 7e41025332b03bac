package phase

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
)

func TestLowest(t *testing.T) {
	requeue := ctrl.Result{Requeue: true} // deprecated, still honoured by controller-runtime
	tests := []struct {
		name string
		give [2]ctrl.Result
		want ctrl.Result
	}{
		{name: "two zero results stay zero", give: [2]ctrl.Result{{}, {}}, want: ctrl.Result{}},
		{name: "a zero result loses to a delay", give: [2]ctrl.Result{{}, {RequeueAfter: time.Minute}}, want: ctrl.Result{RequeueAfter: time.Minute}},
		{name: "a delay wins over a zero result after it", give: [2]ctrl.Result{{RequeueAfter: time.Minute}, {}}, want: ctrl.Result{RequeueAfter: time.Minute}},
		{name: "the shorter delay wins", give: [2]ctrl.Result{{RequeueAfter: 10 * time.Minute}, {RequeueAfter: 30 * time.Second}}, want: ctrl.Result{RequeueAfter: 30 * time.Second}},
		{name: "the shorter delay wins in either order", give: [2]ctrl.Result{{RequeueAfter: 30 * time.Second}, {RequeueAfter: 10 * time.Minute}}, want: ctrl.Result{RequeueAfter: 30 * time.Second}},
		{name: "a rate-limited requeue comes before any delay", give: [2]ctrl.Result{{RequeueAfter: time.Second}, requeue}, want: requeue},
		{name: "a rate-limited requeue first also wins", give: [2]ctrl.Result{requeue, {RequeueAfter: time.Second}}, want: requeue},
		{name: "a rate-limited requeue wins over a zero result", give: [2]ctrl.Result{{}, requeue}, want: requeue},
		{
			name: "Requeue with a delay counts as its delay",
			give: [2]ctrl.Result{{Requeue: true, RequeueAfter: time.Hour}, {RequeueAfter: time.Minute}},
			want: ctrl.Result{RequeueAfter: time.Minute},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Lowest(tt.give[0], tt.give[1]); got != tt.want {
				t.Errorf("Lowest(%+v, %+v) = %+v, want %+v", tt.give[0], tt.give[1], got, tt.want)
			}
		})
	}
}

// trace is the scope of the Run tests: the names of the phases that ran.
type trace struct{ ran []string }

func step(name string, res ctrl.Result, err error) Func[*trace] {
	return func(_ context.Context, s *trace) (ctrl.Result, error) {
		s.ran = append(s.ran, name)
		return res, err
	}
}

func TestRun(t *testing.T) {
	errApply := errors.New("apply Deployment demo-user: invalid")
	errObserve := errors.New("list GatewayPools: timeout")
	tests := []struct {
		name     string
		give     []Func[*trace]
		wantRan  []string
		wantRes  ctrl.Result
		wantErrs []error
	}{
		{name: "no phases is a zero result", wantRes: ctrl.Result{}},
		{
			name:    "every phase runs in order and the soonest requeue wins",
			give:    []Func[*trace]{step("deps", ctrl.Result{RequeueAfter: 30 * time.Second}, nil), step("apply", ctrl.Result{}, nil), step("resync", ctrl.Result{RequeueAfter: 10 * time.Minute}, nil)},
			wantRan: []string{"deps", "apply", "resync"},
			wantRes: ctrl.Result{RequeueAfter: 30 * time.Second},
		},
		{
			name:     "phases after a failing one still run",
			give:     []Func[*trace]{step("deps", ctrl.Result{}, nil), step("apply", ctrl.Result{}, errApply), step("observe", ctrl.Result{}, nil)},
			wantRan:  []string{"deps", "apply", "observe"},
			wantErrs: []error{errApply},
		},
		{
			name:     "the errors of every failing phase are joined",
			give:     []Func[*trace]{step("apply", ctrl.Result{}, errApply), step("observe", ctrl.Result{}, errObserve)},
			wantRan:  []string{"apply", "observe"},
			wantErrs: []error{errApply, errObserve},
		},
		{
			name:     "results are still merged next to an error",
			give:     []Func[*trace]{step("deps", ctrl.Result{RequeueAfter: time.Second}, nil), step("apply", ctrl.Result{}, errApply)},
			wantRan:  []string{"deps", "apply"},
			wantRes:  ctrl.Result{RequeueAfter: time.Second},
			wantErrs: []error{errApply},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &trace{}
			res, err := Run(context.Background(), s, tt.give...)
			if !slices.Equal(s.ran, tt.wantRan) {
				t.Errorf("ran %v, want %v", s.ran, tt.wantRan)
			}
			if res != tt.wantRes {
				t.Errorf("result = %+v, want %+v", res, tt.wantRes)
			}
			if len(tt.wantErrs) == 0 && err != nil {
				t.Errorf("err = %v, want nil", err)
			}
			if len(tt.wantErrs) > 0 && err == nil {
				t.Errorf("err = nil, want %v", tt.wantErrs)
			}
			for _, want := range tt.wantErrs {
				if !errors.Is(err, want) {
					t.Errorf("err = %v, does not wrap %v", err, want)
				}
			}
		})
	}
}
