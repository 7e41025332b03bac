//go:build unix

package bench

import (
	"strings"
	"syscall"
	"testing"
)

// Raising RLIMIT_NOFILE to what it is succeeds; past the hard limit it
// either succeeds (with CAP_SYS_RESOURCE) or says what to do.
func TestRaiseNoFile(t *testing.T) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		t.Skip(err)
	}
	if err := raiseNoFile(r.Cur); err != nil {
		t.Fatalf("raiseNoFile(current %d): %v", r.Cur, err)
	}
	if err := raiseNoFile(r.Max + 1); err != nil && !strings.Contains(err.Error(), "raise the hard limit") {
		t.Errorf("raiseNoFile over the hard limit: %v", err)
	}
}
