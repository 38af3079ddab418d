// Package test holds the integration tests: they start the real gcs binary
// in host mode (a private mount namespace, the unix-socket transport) and
// drive it only through the host library, or through raw frames where the
// wire itself is under test.
package test
