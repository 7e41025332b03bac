package readyz

import (
	"strings"
	"testing"
)

func TestGaugeValueSumsTheSamplesOfOneMetric(t *testing.T) {
	text := `# HELP imkube_gateway_connections Open client connections on this gateway pod.
# TYPE imkube_gateway_connections gauge
imkube_gateway_connections{otel_scope_name="imkube"} 17
imkube_gateway_connections_total 99
imkube_gateway_connections{shard="b"} 3
imkube_gateway_connects_total 5
`
	n, err := GaugeValue(strings.NewReader(text), "imkube_gateway_connections")
	if err != nil || n != 20 {
		t.Fatalf("GaugeValue = %d, %v; want 20", n, err)
	}
	if _, err := GaugeValue(strings.NewReader("other 1\n"), "imkube_gateway_connections"); err == nil {
		t.Fatal("a missing metric must be an error")
	}
	if _, err := GaugeValue(strings.NewReader("imkube_gateway_connections x\n"), "imkube_gateway_connections"); err == nil {
		t.Fatal("a malformed sample must be an error")
	}
}
