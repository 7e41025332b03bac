// Package testenv tells integration tests where the real dependencies started by
// hack/ scripts live. A missing dependency skips the test on a developer machine
// and FAILS it in CI (CI=true), so a green CI always means the real thing ran.
package testenv

import (
	"os"
	"testing"
)

// Require returns the value of the environment variable name, set by the hack/
// scripts that `make test` runs. When it is empty the test is skipped locally
// and failed in CI.
func Require(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v != "" {
		return v
	}
	if InCI() {
		t.Fatalf("%s is not set: run the test through `make test`, which starts the dependency", name)
	}
	t.Skipf("%s is not set: run `make test` (or `eval \"$(hack/deps.sh env)\"`) to use the real dependency", name)
	return ""
}

// InCI reports whether the tests run in CI, where nothing may be skipped.
func InCI() bool { return os.Getenv("CI") == "true" }
