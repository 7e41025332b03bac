package chart_test

import (
	"archive/tar"
	"compress/gzip"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/imkube/imkube/internal/testenv"
)

// The image that `make image` (hack/image.sh) writes without Docker must be a
// loadable linux/amd64 image that runs the static imkube binary as uid 65532,
// like the Dockerfile's. IMKUBE_IMAGE_TAR comes from `make image-test-prep`,
// which runs hack/image.sh around a static stand-in binary (fast); `make
// image` packages the real one the same way.
func TestImageTarballRunsTheStaticBinaryAsNonRootOnLinuxAMD64(t *testing.T) {
	path := testenv.Require(t, "IMKUBE_IMAGE_TAR")
	files := readTar(t, path, nil)

	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil || len(manifest) != 1 {
		t.Fatalf("manifest.json: %v (%d images), want one image", err, len(manifest))
	}
	m := manifest[0]
	if len(m.RepoTags) != 1 || !strings.HasPrefix(m.RepoTags[0], "ghcr.io/imkube/imkube:") {
		t.Errorf("RepoTags = %v, want one ghcr.io/imkube/imkube:<version> (the chart's image.repository)", m.RepoTags)
	}
	var cfg struct {
		OS, Architecture string
		Config           struct {
			User       string
			Entrypoint []string
			WorkingDir string
		}
	}
	if err := json.Unmarshal(files[m.Config], &cfg); err != nil {
		t.Fatalf("config %s: %v", m.Config, err)
	}
	if cfg.OS != "linux" || cfg.Architecture != "amd64" {
		t.Errorf("platform = %s/%s, want linux/amd64 (containerd drops images without one)", cfg.OS, cfg.Architecture)
	}
	if cfg.Config.User != "65532:65532" {
		t.Errorf("user = %q, want 65532:65532", cfg.Config.User)
	}
	if !slices.Equal(cfg.Config.Entrypoint, []string{"/imkube"}) {
		t.Errorf("entrypoint = %v, want [/imkube]", cfg.Config.Entrypoint)
	}
	if len(m.Layers) != 1 {
		t.Fatalf("layers = %v, want one", m.Layers)
	}

	layer := files[m.Layers[0]]
	modes := map[string]int64{}
	content := readLayer(t, layer, modes)
	if modes["imkube"]&0o111 == 0 {
		t.Errorf("/imkube mode %o is not executable", modes["imkube"])
	}
	if modes["tmp/"]&0o1777 != 0o1777 {
		t.Errorf("/tmp mode %o, want 1777", modes["tmp/"])
	}
	bin, err := elf.NewFile(readerAt(content["imkube"]))
	if err != nil {
		t.Fatalf("/imkube is not an ELF binary: %v", err)
	}
	if bin.Machine != elf.EM_X86_64 {
		t.Errorf("/imkube is built for %s, want x86-64", bin.Machine)
	}
	for _, p := range bin.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("/imkube is dynamically linked (has an interpreter); build it with CGO_ENABLED=0")
		}
	}
	if !contains(content["etc/passwd"], "nonroot:x:65532:65532") {
		t.Error("/etc/passwd does not name uid 65532")
	}
}

func readTar(t *testing.T, path string, modes map[string]int64) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return readTarStream(t, f, modes)
}

func readLayer(t *testing.T, layer []byte, modes map[string]int64) map[string][]byte {
	t.Helper()
	zr, err := gzip.NewReader(readerAt(layer))
	if err != nil {
		t.Fatalf("layer is not gzip: %v", err)
	}
	return readTarStream(t, zr, modes)
}

func readTarStream(t *testing.T, r io.Reader, modes map[string]int64) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	tr := tar.NewReader(r)
	for range 10_000 {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if modes != nil {
			modes[h.Name] = h.Mode
		}
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			out[h.Name] = b
		}
	}
	t.Fatal("tarball has more than 10000 entries")
	return nil
}
