// Package apply writes owned objects with server-side apply under the one
// field manager of the operator, and skips the write when the fields the
// operator owns on the live object already hold the desired values.
package apply

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// Applier applies desired objects.
type Applier struct {
	Client       client.Client
	FieldManager string
}

// Apply makes the live object match desired in the fields desired sets. It
// returns whether a write was sent. desired must carry its apiVersion and kind.
func (a Applier) Apply(ctx context.Context, desired client.Object) (bool, error) {
	gvk, err := apiutil.GVKForObject(desired, a.Client.Scheme())
	if err != nil {
		return false, fmt.Errorf("apply: %w", err)
	}
	var live client.Object
	if _, ok := desired.(*unstructured.Unstructured); ok {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(gvk)
		live = u
	} else {
		obj, err := a.Client.Scheme().New(gvk)
		if err != nil {
			return false, fmt.Errorf("apply %s: %w", gvk.Kind, err)
		}
		live = obj.(client.Object)
	}
	switch err := a.Client.Get(ctx, client.ObjectKeyFromObject(desired), live); {
	case err == nil:
		ok, why := UpToDate(live, desired, a.FieldManager)
		if ok {
			return false, nil
		}
		log.FromContext(ctx).V(1).Info("applying", "kind", gvk.Kind, "name", desired.GetName(), "difference", why)
	case !apierrors.IsNotFound(err):
		return false, fmt.Errorf("get %s %s: %w", gvk.Kind, desired.GetName(), err)
	}
	m, err := Intent(desired)
	if err != nil {
		return false, err
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetGroupVersionKind(gvk)
	if err := a.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u),
		client.FieldOwner(a.FieldManager), client.ForceOwnership); err != nil {
		return true, fmt.Errorf("apply %s %s: %w", gvk.Kind, desired.GetName(), err)
	}
	return true, nil
}

// Intent converts a typed desired object into the map that is applied: no
// status, no null values.
func Intent(desired runtime.Object) (map[string]any, error) {
	var m map[string]any
	if u, ok := desired.(*unstructured.Unstructured); ok {
		m = u.DeepCopy().Object
	} else {
		var err error
		if m, err = runtime.DefaultUnstructuredConverter.ToUnstructured(desired); err != nil {
			return nil, fmt.Errorf("convert %T: %w", desired, err)
		}
	}
	delete(m, "status")
	pruneNulls(m)
	return m, nil
}

func pruneNulls(v any) {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			if e == nil {
				delete(t, k)
				continue
			}
			pruneNulls(e)
		}
	case []any:
		for _, e := range t {
			pruneNulls(e)
		}
	}
}

// UpToDate reports whether the fields fieldManager owns (by apply) on live
// equal the intent of desired; the second result describes the first
// difference.
func UpToDate(live, desired client.Object, fieldManager string) (bool, string) {
	var fields *metav1.FieldsV1
	for _, e := range live.GetManagedFields() {
		if e.Manager == fieldManager && e.Operation == metav1.ManagedFieldsOperationApply && e.Subresource == "" {
			fields = e.FieldsV1
		}
	}
	if fields == nil {
		return false, "no fields owned"
	}
	var tree map[string]any
	if err := json.Unmarshal(fields.Raw, &tree); err != nil {
		return false, "bad managedFields: " + err.Error()
	}
	var liveMap map[string]any
	if u, ok := live.(*unstructured.Unstructured); ok {
		liveMap = u.Object
	} else {
		var err error
		if liveMap, err = runtime.DefaultUnstructuredConverter.ToUnstructured(live); err != nil {
			return false, err.Error()
		}
	}
	want, err := Intent(desired)
	if err != nil {
		return false, err.Error()
	}
	// Identity is not in managedFields: apiVersion, kind, name, namespace.
	delete(want, "apiVersion")
	delete(want, "kind")
	if md, ok := want["metadata"].(map[string]any); ok {
		delete(md, "name")
		delete(md, "namespace")
	}
	got := filter(liveMap, tree)
	if d := diff("", got, want); d != "" {
		return false, d
	}
	return true, ""
}

// filter keeps the parts of v named by a managedFields (FieldsV1) tree.
func filter(v any, tree map[string]any) any {
	switch val := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for key, sub := range tree {
			name, ok := strings.CutPrefix(key, "f:")
			if !ok {
				continue
			}
			e, ok := val[name]
			if !ok {
				continue
			}
			if st, _ := sub.(map[string]any); len(st) > 0 && !onlyDot(st) {
				out[name] = filter(e, st)
			} else {
				out[name] = e
			}
		}
		return out
	case []any:
		out := []any{}
		for _, item := range val {
			for key, sub := range tree {
				if matchItem(key, item) {
					if st, _ := sub.(map[string]any); len(st) > 0 && !onlyDot(st) {
						out = append(out, filter(item, st))
					} else {
						out = append(out, item)
					}
					break
				}
			}
		}
		return out
	default:
		return v
	}
}

func onlyDot(m map[string]any) bool {
	_, ok := m["."]
	return ok && len(m) == 1
}

// matchItem matches a list item against a "k:{...}" (keyed) or "v:..." (set) path element.
func matchItem(key string, item any) bool {
	switch {
	case strings.HasPrefix(key, "k:"):
		var keys map[string]any
		if json.Unmarshal([]byte(key[2:]), &keys) != nil {
			return false
		}
		m, ok := item.(map[string]any)
		if !ok {
			return false
		}
		for k, want := range keys {
			if !jsonEqual(m[k], want) {
				return false
			}
		}
		return true
	case strings.HasPrefix(key, "v:"):
		var want any
		return json.Unmarshal([]byte(key[2:]), &want) == nil && jsonEqual(item, want)
	}
	return false
}

func jsonEqual(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(x) == string(y)
}

// diff returns the path of the first difference between got and want, or "".
func diff(path string, got, want any) string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return path + ": not an object"
		}
		for k, wv := range w {
			if d := diff(path+"."+k, g[k], wv); d != "" {
				return d
			}
		}
		for k := range g {
			if _, ok := w[k]; !ok {
				return path + "." + k + ": no longer desired"
			}
		}
		return ""
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return path + ": list differs"
		}
		for i := range w {
			if d := diff(fmt.Sprintf("%s[%d]", path, i), g[i], w[i]); d != "" {
				return d
			}
		}
		return ""
	default:
		if reflect.DeepEqual(got, want) || jsonEqual(got, want) {
			return ""
		}
		return fmt.Sprintf("%s: %v != %v", path, got, want)
	}
}
