package apply

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

const manager = "imkube-operator"

// live is a Service as the API server returns it after our apply of
// selector app=x, port http 8080, label a=1, plus another manager's
// annotation and server defaults.
func live() *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name: "s", Namespace: "ns",
			Labels:      map[string]string{"a": "1"},
			Annotations: map[string]string{"other": "yes"},
			ManagedFields: []metav1.ManagedFieldsEntry{
				{Manager: manager, Operation: metav1.ManagedFieldsOperationApply, FieldsV1: &metav1.FieldsV1{Raw: []byte(
					`{"f:metadata":{"f:labels":{"f:a":{}}},"f:spec":{"f:ports":{"k:{\"port\":8080,\"protocol\":\"TCP\"}":{".":{},"f:name":{},"f:port":{},"f:protocol":{},"f:targetPort":{}}},"f:selector":{}}}`)}},
				{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationUpdate, FieldsV1: &metav1.FieldsV1{Raw: []byte(
					`{"f:metadata":{"f:annotations":{"f:other":{}}}}`)}},
			},
		},
		Spec: corev1.ServiceSpec{
			Type:      corev1.ServiceTypeClusterIP, // defaulted, not ours
			ClusterIP: "10.0.0.1",
			Selector:  map[string]string{"app": "x"},
			Ports:     []corev1.ServicePort{{Name: "http", Port: 8080, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("http")}},
		},
	}
}

func desired() *corev1.Service {
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "ns", Labels: map[string]string{"a": "1"}},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "x"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 8080, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("http")}},
		},
	}
}

func TestUpToDate(t *testing.T) {
	tests := []struct {
		name     string
		give     func(d *corev1.Service)
		giveLive func(l *corev1.Service)
		want     bool
		wantWhy  string
	}{
		{name: "same owned fields, other managers and defaults ignored", want: true},
		{name: "a changed label", give: func(d *corev1.Service) { d.Labels["a"] = "2" }, wantWhy: ".metadata.labels.a"},
		{name: "a new field", give: func(d *corev1.Service) { d.Spec.Type = corev1.ServiceTypeNodePort }, wantWhy: ".spec.type"},
		{name: "a field no longer desired", give: func(d *corev1.Service) { d.Labels = nil }, wantWhy: "no longer desired"},
		{name: "a changed list item", give: func(d *corev1.Service) { d.Spec.Ports[0].Name = "web" }, wantWhy: ".spec.ports[0].name"},
		{name: "someone else changed our selector", giveLive: func(l *corev1.Service) { l.Spec.Selector["app"] = "y" }, wantWhy: ".spec.selector.app"},
		{name: "nothing owned yet", giveLive: func(l *corev1.Service) { l.ManagedFields = l.ManagedFields[1:] }, wantWhy: "no fields owned"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, l := desired(), live()
			if tt.give != nil {
				tt.give(d)
			}
			if tt.giveLive != nil {
				tt.giveLive(l)
			}
			got, why := UpToDate(l, d, manager)
			if got != tt.want || !strings.Contains(why, tt.wantWhy) {
				t.Errorf("UpToDate = %v (%q), want %v (%q)", got, why, tt.want, tt.wantWhy)
			}
		})
	}
}

func TestIntentDropsStatusAndNulls(t *testing.T) {
	m, err := Intent(desired())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m["status"]; ok {
		t.Error("intent carries status")
	}
	md := m["metadata"].(map[string]any)
	if _, ok := md["creationTimestamp"]; ok {
		t.Error("intent carries a null creationTimestamp")
	}
}
