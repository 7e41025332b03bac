package phase

import (
	"context"
	"errors"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/imkube/imkube/internal/telemetry"
)

// Object is a pointer to an API type (P = *O) that deep-copies itself.
type Object[O any] interface {
	*O
	client.Object
	DeepCopy() *O
}

// Controller is what one CRD controller plugs into Reconcile. O is the API
// type (imv1.IMCluster), P its pointer, S the controller's scope.
type Controller[O any, P Object[O], S any] struct {
	// Name labels the reconcile metrics ("imcluster").
	Name    string
	Client  client.Reader
	Metrics *telemetry.Operator // nil: none
	// Scope builds the scope of one reconcile of obj. It may read other
	// objects; an error ends the reconcile without a status write.
	Scope func(ctx context.Context, obj P) (S, error)
	// Phases returns the phases to run on s, in order.
	Phases func(s S) []Func[S]
	// WriteStatus computes obj's status from s and writes it when it differs
	// from orig. err is the joined error of the phases: nil means the
	// reconcile succeeded and the status may claim the object's generation
	// as observed.
	WriteStatus func(ctx context.Context, orig, obj P, s S, err error) error
}

// Reconcile is the reconcile of one object: time it, fetch it (gone: done),
// leave a deleted one to the garbage collector (owner references), build the
// scope, run the phases, then write the status. The status write follows the
// phases directly instead of in a defer: a panicking phase (recovered by
// controller-runtime) must not get its generation stamped as observed.
//
// A reconcile that failed returns the joined error and no result, since
// controller-runtime ignores (and warns about) a result next to an error and
// retries with backoff.
func Reconcile[O any, P Object[O], S any](ctx context.Context, req ctrl.Request, c Controller[O, P, S]) (res ctrl.Result, err error) {
	start := time.Now()
	defer func() {
		requeue := res.RequeueAfter > 0 || res.Requeue // Requeue is deprecated but still honoured
		c.Metrics.Reconciled(c.Name, telemetry.ResultOf(requeue, err), time.Since(start))
	}()
	obj := P(new(O))
	if err := c.Client.Get(ctx, req.NamespacedName, obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !obj.GetDeletionTimestamp().IsZero() {
		return ctrl.Result{}, nil // owner references let the garbage collector clean up
	}
	orig := P(obj.DeepCopy())
	s, err := c.Scope(ctx, obj)
	if err != nil {
		return ctrl.Result{}, err
	}
	res, err = Run(ctx, s, c.Phases(s)...)
	if werr := c.WriteStatus(ctx, orig, obj, s, err); werr != nil {
		err = errors.Join(err, werr)
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	return res, nil
}
