// Package version holds the build version of the imkube binary.
package version

// Version is set at build time with -ldflags.
var Version = "dev"
