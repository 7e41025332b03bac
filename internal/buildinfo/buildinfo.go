// Package buildinfo holds the build version of the imkube binary.
package buildinfo

// Version is set at build time with -ldflags.
var Version = "dev"
