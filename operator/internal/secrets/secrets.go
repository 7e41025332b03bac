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

// Reader reads the Secrets of one namespace for one reconcile with the
// operator's API reader (Secrets are not cached) and remembers each one, so
// a Secret referenced by several components or checks is fetched once.
type Reader struct {
	r         client.Reader
	namespace string
	got       map[string]*corev1.Secret // nil value: not found
}

// NewReader returns a Reader of namespace; use it for one reconcile only.
func NewReader(r client.Reader, namespace string) *Reader {
	return &Reader{r: r, namespace: namespace, got: map[string]*corev1.Secret{}}
}

// Get returns Secret name, or nil when it does not exist.
func (r *Reader) Get(ctx context.Context, name string) (*corev1.Secret, error) {
	if sec, ok := r.got[name]; ok {
		return sec, nil
	}
	sec := &corev1.Secret{}
	err := r.r.Get(ctx, types.NamespacedName{Namespace: r.namespace, Name: name}, sec)
	switch {
	case apierrors.IsNotFound(err):
		sec = nil
	case err != nil:
		return nil, fmt.Errorf("get Secret %q: %w", name, err)
	}
	r.got[name] = sec
	return sec, nil
}

// Read returns the referenced keys. A Secret or key that does not exist is
// Missing; any other failure is an error, so a reconcile never renders a pod
// template from a half-read set.
func (r *Reader) Read(ctx context.Context, refs []corev1.SecretKeySelector) ([]Value, error) {
	out := make([]Value, 0, len(refs))
	for _, ref := range refs {
		sec, err := r.Get(ctx, ref.Name)
		if err != nil {
			return nil, err
		}
		if sec == nil {
			out = append(out, Value{Ref: ref, Missing: true})
			continue
		}
		v, ok := sec.Data[ref.Key]
		out = append(out, Value{Ref: ref, Value: v, Missing: !ok})
	}
	return out, nil
}
