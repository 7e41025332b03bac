//go:build unix

package bench

import (
	"fmt"
	"syscall"
)

// raiseNoFile raises RLIMIT_NOFILE (soft and, when needed, hard) to at
// least need for this process. Setting it explicitly also makes the
// processes this one starts (the servers under test) inherit it: Go
// otherwise restores the soft limit it found at start-up for children.
func raiseNoFile(need uint64) error {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return fmt.Errorf("bench: getrlimit: %w", err)
	}
	want := r
	want.Cur = max(r.Cur, need)
	want.Max = max(r.Max, want.Cur)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		return fmt.Errorf("bench: %d open files needed, RLIMIT_NOFILE is %d (hard %d) and raising it failed (%v): "+
			"run as root or raise the hard limit (ulimit -Hn, limits.conf, LimitNOFILE=); fs.nr_open caps it", need, r.Cur, r.Max, err)
	}
	return nil
}

// noFileLimit is RLIMIT_NOFILE as "soft/hard".
func noFileLimit() string {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return "-"
	}
	return fmt.Sprintf("%d/%d", r.Cur, r.Max)
}
