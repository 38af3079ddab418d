module github.com/uvmgcs/gcs

go 1.26.0

require (
	github.com/mdlayher/vsock v1.4.0
	github.com/opencontainers/runtime-spec v1.3.0
)

require (
	github.com/containerd/console v1.0.5 // indirect
	github.com/mdlayher/socket v0.8.0 // indirect
	github.com/sirupsen/logrus v1.10.2 // indirect
	golang.org/x/net v0.62.0 // indirect
	golang.org/x/sync v0.24.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
)
