// Package phase runs the reconcile of one object of either operator
// controller: the shared prologue (fetch, deletion short-circuit, metrics),
// the controller's ordered phases with their results merged and errors
// joined, and the status write that follows them.
package phase

import (
	"context"
	"errors"

	ctrl "sigs.k8s.io/controller-runtime"
)

// Func is one phase of a reconcile. It works on the controller's scope,
// records what it observed there for the status, and returns when it wants
// the object reconciled again (zero: no wish) or what went wrong.
type Func[S any] func(ctx context.Context, s S) (ctrl.Result, error)

// Run runs phases in order on s. A failing phase does not stop the ones
// after it: each phase writes objects of its own, and a failure in one (say,
// an invalid Deployment) must not keep the others (the ConfigMap, the
// observation of what is running) from converging. Run returns the results
// merged with Lowest and the errors joined (nil when every phase succeeded).
func Run[S any](ctx context.Context, s S, phases ...Func[S]) (ctrl.Result, error) {
	var (
		res  ctrl.Result
		errs []error
	)
	for _, p := range phases {
		r, err := p(ctx, s)
		if err != nil {
			errs = append(errs, err)
		}
		res = Lowest(res, r)
	}
	return res, errors.Join(errs...)
}

// Lowest merges two results into the one that requeues soonest, like
// cluster-api's util.LowestNonZeroResult: a zero result asks for nothing and
// loses to any other; a rate-limited requeue (Requeue without RequeueAfter)
// comes before any delay; otherwise the smaller RequeueAfter wins. A result
// with both Requeue and RequeueAfter counts as its RequeueAfter, which is
// what controller-runtime does with it.
func Lowest(a, b ctrl.Result) ctrl.Result {
	switch {
	case a.IsZero():
		return b
	case b.IsZero():
		return a
	case immediate(a):
		return a
	case immediate(b):
		return b
	case b.RequeueAfter < a.RequeueAfter:
		return b
	default:
		return a
	}
}

// immediate reports whether r asks for a rate-limited requeue with no delay.
func immediate(r ctrl.Result) bool {
	return r.RequeueAfter <= 0 && r.Requeue // Requeue is deprecated but still honoured
}
