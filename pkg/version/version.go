// Package version holds the version string stamped into every binary.
package version

// Version is set at build time with
// -ldflags "-X github.com/tcpwrapd/tcpwrapd/pkg/version.Version=v1.2.3";
// it is "dev" in a plain `go build`.
var Version = "dev"
