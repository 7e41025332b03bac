package render

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestResourcesWithDefaultsFillsWhatIsMissingAndStaysValid(t *testing.T) {
	q := resource.MustParse
	tests := []struct {
		name string
		give corev1.ResourceRequirements
		// want: resource -> {request, limit} ("" = absent)
		want map[corev1.ResourceName][2]string
	}{
		{
			name: "nothing set takes every default, no CPU limit",
			want: map[corev1.ResourceName][2]string{
				corev1.ResourceCPU: {"100m", ""}, corev1.ResourceMemory: {"96Mi", "256Mi"}, corev1.ResourceEphemeralStorage: {"64Mi", "256Mi"},
			},
		},
		{
			name: "a request above the default limit raises the limit to it",
			give: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceMemory: q("1Gi")}},
			want: map[corev1.ResourceName][2]string{
				corev1.ResourceCPU: {"100m", ""}, corev1.ResourceMemory: {"1Gi", "1Gi"}, corev1.ResourceEphemeralStorage: {"64Mi", "256Mi"},
			},
		},
		{
			name: "a limit below the default request lowers the request to it",
			give: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: q("64Mi"), corev1.ResourceCPU: q("2")}},
			want: map[corev1.ResourceName][2]string{
				corev1.ResourceCPU: {"100m", "2"}, corev1.ResourceMemory: {"64Mi", "64Mi"}, corev1.ResourceEphemeralStorage: {"64Mi", "256Mi"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ResourcesWithDefaults(tt.give, ServiceDefaults)
			for name, w := range tt.want {
				req, hasReq := got.Requests[name]
				lim, hasLim := got.Limits[name]
				if (w[0] == "") == hasReq || (hasReq && req.Cmp(q(w[0])) != 0) {
					t.Errorf("%s request = %v (set %v), want %q", name, req.String(), hasReq, w[0])
				}
				if (w[1] == "") == hasLim || (hasLim && lim.Cmp(q(w[1])) != 0) {
					t.Errorf("%s limit = %v (set %v), want %q", name, lim.String(), hasLim, w[1])
				}
			}
		})
	}
}

func TestTmpSizeLimitIsTheEphemeralStorageLimit(t *testing.T) {
	r := ResourcesWithDefaults(corev1.ResourceRequirements{}, GatewayDefaults)
	if got := TmpSizeLimit(r); got == nil || got.Cmp(resource.MustParse("256Mi")) != 0 {
		t.Errorf("/tmp sizeLimit = %v, want 256Mi", got)
	}
	if got := TmpSizeLimit(corev1.ResourceRequirements{}); got != nil {
		t.Errorf("/tmp sizeLimit without a limit = %v, want none", got)
	}
}
