// Package secrets reads the Secret keys an IMCluster's pods take as
// environment variables and fingerprints them for the pod templates
// (render.AnnotationSecretsHash).
package secrets

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Value is what a reconcile read of one referenced Secret key: the
// value, or Missing when the Secret or the key does not exist.
type Value struct {
	Ref     corev1.SecretKeySelector
	Value   []byte
	Missing bool
}

// Hash fingerprints the values (in order). A missing key hashes as
// missing, so restoring it changes the hash again.
func Hash(values []Value) string {
	h := sha256.New()
	for _, v := range values {
		fmt.Fprintf(h, "%s\x00%s\x00%t\x00%d\x00", v.Ref.Name, v.Ref.Key, v.Missing, len(v.Value))
		h.Write(v.Value)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Read reads the referenced Secret keys in namespace with r (the operator's
// API reader: Secrets are not cached). A Secret or key that does not exist is
// returned as Missing; any other failure is an error, so a reconcile never
// renders a pod template from a half-read set.
func Read(ctx context.Context, r client.Reader, namespace string, refs []corev1.SecretKeySelector) ([]Value, error) {
	out := make([]Value, 0, len(refs))
	for _, ref := range refs {
		var sec corev1.Secret
		err := r.Get(ctx, types.NamespacedName{Namespace: namespace, Name: ref.Name}, &sec)
		switch {
		case apierrors.IsNotFound(err):
			out = append(out, Value{Ref: ref, Missing: true})
		case err != nil:
			return nil, fmt.Errorf("get Secret %q: %w", ref.Name, err)
		default:
			v, ok := sec.Data[ref.Key]
			out = append(out, Value{Ref: ref, Value: v, Missing: !ok})
		}
	}
	return out, nil
}
