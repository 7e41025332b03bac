//go:build e2e

package k8s

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// TestIMClusterManifest checks the sample rewriting without a cluster.
func TestIMClusterManifest(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "crds", "samples", "imcluster.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		give        config
		wantKinds   []string
		wantNamesrv string
		wantBroker  string
	}{
		{
			name:        "process mode uses the RocketMQ of hack/deps.sh",
			give:        config{mode: modeProcess, namesrv: "127.0.0.1:19876", broker: "127.0.0.1:20911"},
			wantKinds:   []string{"Secret", "IMCluster"},
			wantNamesrv: "127.0.0.1:19876",
			wantBroker:  "127.0.0.1:20911",
		},
		{
			name:        "in-cluster mode keeps the demo dependencies",
			give:        config{mode: modeInCluster},
			wantKinds:   []string{"Secret", "IMCluster"},
			wantNamesrv: "imkube-rocketmq-namesrv:9876",
			wantBroker:  "imkube-rocketmq-broker:10911",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := imclusterManifest(t, raw, tt.give)
			var kinds []string
			for _, doc := range splitYAML(got) {
				var u unstructured.Unstructured
				if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
					t.Fatalf("output does not parse: %v\n%s", err, got)
				}
				kinds = append(kinds, u.GetKind())
				if u.GetKind() != "IMCluster" {
					continue
				}
				ns, _, _ := unstructured.NestedStringSlice(u.Object, "spec", "dependencies", "rocketmq", "nameServers")
				br, _, _ := unstructured.NestedStringSlice(u.Object, "spec", "dependencies", "rocketmq", "brokerAddresses")
				if strings.Join(ns, ",") != tt.wantNamesrv || strings.Join(br, ",") != tt.wantBroker {
					t.Errorf("nameServers %v brokerAddresses %v, want %s and %s", ns, br, tt.wantNamesrv, tt.wantBroker)
				}
			}
			if strings.Join(kinds, ",") != strings.Join(tt.wantKinds, ",") {
				t.Errorf("kinds %v, want %v", kinds, tt.wantKinds)
			}
		})
	}
}
