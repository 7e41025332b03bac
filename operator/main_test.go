package operator

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
	"github.com/imkube/imkube/internal/testenv"
)

func TestMainCommandLine(t *testing.T) {
	tests := []struct {
		name    string
		give    []string
		wantErr string
		wantOut string
	}{
		{name: "help lists the flags", give: []string{"-h"}, wantOut: "-leader-elect"},
		{name: "an unknown flag is an error", give: []string{"--bogus"}, wantErr: "flag provided but not defined: -bogus"},
		{name: "stray arguments are an error", give: []string{"extra"}, wantErr: `unexpected arguments ["extra"]`},
		{name: "an unreadable kubeconfig is an error", give: []string{"--kubeconfig", "/nonexistent/kubeconfig"}, wantErr: "kubernetes config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := Main(context.Background(), tt.give, &out, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if tt.wantErr == "" && err != nil {
				t.Fatalf("err = %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("output %q lacks %q", out.String(), tt.wantOut)
			}
		})
	}
}

// TestMainReconcilesTheSamples runs `imkube operator` (Main) with leader
// election against a real API server through a kubeconfig, as a user would.
// RocketMQ is the real admin client here: the sample's name server does not
// resolve, which must show as a condition while the workloads are deployed.
func TestMainReconcilesTheSamples(t *testing.T) {
	assets := testenv.Require(t, "KUBEBUILDER_ASSETS")
	env := &envtest.Environment{
		CRDDirectoryPaths: []string{filepath.Join("..", "crds")}, ErrorIfCRDPathMissing: true, BinaryAssetsDirectory: assets,
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	admin, err := env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := admin.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Main(ctx, []string{"--kubeconfig", kubeconfig, "--metrics-addr", "0", "--health-addr", "127.0.0.1:0",
			"--leader-elect", "--leader-election-namespace", "default"}, io.Discard, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			cancel()
			<-done
		}
	})

	scheme, err := NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, c: c}
	ns := h.namespace("main")
	h.applySamples(ns, "imcluster.yaml", "gatewaypool.yaml")
	for _, name := range []string{"demo-message", "demo-sequence", "demo-user", "edge-gateway"} {
		h.eventually("Deployment "+name, func() error { return h.get(ns, name, &appsv1.Deployment{}) })
	}
	h.eventually("unreachable RocketMQ reported", func() error {
		return h.clusterCondition(ns, "demo", imv1.ConditionDependenciesReady, metav1.ConditionFalse, imv1.ReasonTopicsNotReady)
	})
	var lease coordinationv1.Lease
	h.eventually("leader election Lease", func() error { return h.get("default", LeaderElectionID, &lease) })

	cancel()
	stopped = true
	if err := <-done; err != nil {
		t.Errorf("Main returned %v after cancel, want nil", err)
	}
}
