//go:build !unix

package bench

// raiseNoFile is a no-op where there is no RLIMIT_NOFILE.
func raiseNoFile(need uint64) error { return nil }

// noFileLimit is RLIMIT_NOFILE as "soft/hard".
func noFileLimit() string { return "-" }
