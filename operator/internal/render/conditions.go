package render

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ObservedGeneration is the generation a status written now describes: the
// object's generation after a reconcile in which every phase succeeded, the
// previously observed one after a failure. So `observedGeneration ==
// generation` means the operator has acted on the current spec, while the
// conditions of a failed reconcile are still written (stamped with the old
// generation) and say what went wrong.
func ObservedGeneration(previous, generation int64, reconcileErr error) int64 {
	if reconcileErr != nil {
		return previous
	}
	return generation
}

// SetCondition sets one condition, stamped with the generation it describes.
// The transition time only moves when the status changes.
func SetCondition(conds *[]metav1.Condition, generation int64, typ string, status bool, reason, message string) {
	s := metav1.ConditionFalse
	if status {
		s = metav1.ConditionTrue
	}
	meta.SetStatusCondition(conds, metav1.Condition{
		Type:               typ,
		Status:             s,
		ObservedGeneration: generation,
		Reason:             reason,
		Message:            truncate(message, 1024),
	})
}

// IsTrue reports whether condition typ is True.
func IsTrue(conds []metav1.Condition, typ string) bool {
	return meta.IsStatusConditionTrue(conds, typ)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}
