package chart_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The binary, the image `make image` tags and the image the chart pulls carry
// one version: the VERSION file. A chart whose appVersion differs would pull
// an image nobody built (ImagePullBackOff on a fresh install).
func TestOneVersionForBinaryImageAndChart(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(root, "VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	want := strings.TrimSpace(string(raw))
	if want == "" {
		t.Fatal("VERSION is empty")
	}
	if got := chartAppVersion(t); got != want {
		t.Errorf("charts/imkube/Chart.yaml appVersion %q, VERSION %q: the chart would pull an image `make image` does not build", got, want)
	}
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), name, args...)
		cmd.Dir = root
		// An inherited VERSION would override the file, as it may on purpose.
		for _, e := range os.Environ() {
			if !strings.HasPrefix(e, "VERSION=") && !strings.HasPrefix(e, "MAKEFLAGS=") {
				cmd.Env = append(cmd.Env, e)
			}
		}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
		}
		return strings.TrimSpace(string(out))
	}
	if got := run("make", "-s", "--no-print-directory", "version"); got != want {
		t.Errorf("make version = %q (the binary's -X buildinfo.Version), want VERSION %q", got, want)
	}
	if got := run("hack/image.sh", "version"); got != want {
		t.Errorf("hack/image.sh version = %q (the image tag), want VERSION %q", got, want)
	}
	dockerfile, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(dockerfile), "${VERSION:-$(cat VERSION)}") {
		t.Error("Dockerfile does not default the binary's version to the VERSION file")
	}
}
