// Command containerd-shim-uvmgcs-v1 is containerd's runtime v2 shim for
// the runtime type io.containerd.uvmgcs.v1: each group of tasks (a pod, or
// containers with the same io.containerd.runc.v2.group annotation) runs in
// one utility VM whose agent is uvmgcs's gcs.
//
// containerd runs it as `<shim> [flags] start` (print the address of the
// group's shim daemon, starting one if needed), `<shim> [flags] delete`
// (clean up after a task whose shim died) and `<shim> -info`; the daemon is
// the same binary with no action, serving containerd.task.v2.Task over
// TTRPC on the socket it inherits as fd 3.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/uvmgcs/gcs/shim"
)

// RuntimeName is the runtime type containerd's configuration names.
const RuntimeName = "io.containerd.uvmgcs.v1"

// flags are the ones containerd passes to every shim.
type flags struct {
	namespace, address, publishBinary, id, bundle string
	debug, version, info                          bool
	action                                        string
}

func parseFlags(args []string) (flags, error) {
	var f flags
	fs := flag.NewFlagSet("containerd-shim-uvmgcs-v1", flag.ContinueOnError)
	fs.StringVar(&f.namespace, "namespace", "", "containerd namespace of the task")
	fs.StringVar(&f.address, "address", "", "containerd's GRPC socket")
	fs.StringVar(&f.publishBinary, "publish-binary", "", "containerd binary (events go over TTRPC_ADDRESS instead)")
	fs.StringVar(&f.id, "id", "", "task id")
	fs.StringVar(&f.bundle, "bundle", "", "task bundle (default: the working directory)")
	fs.BoolVar(&f.debug, "debug", false, "debug logging")
	fs.BoolVar(&f.version, "v", false, "print the version and exit")
	fs.BoolVar(&f.info, "info", false, "print the runtime's information (a protobuf RuntimeInfo) and exit")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 1 {
		return f, fmt.Errorf("one action at most (start, delete), got %q", fs.Args())
	}
	f.action = fs.Arg(0)
	if f.bundle == "" && !f.info && !f.version {
		wd, err := os.Getwd()
		if err != nil {
			return f, err
		}
		f.bundle = wd
	}
	return f, nil
}

func main() {
	f, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "containerd-shim-uvmgcs-v1:", err)
		os.Exit(2)
	}
	switch {
	case f.version:
		fmt.Printf("containerd-shim-uvmgcs-v1 %s (%s)\n", shim.Version, RuntimeName)
		return
	case f.info:
		err = printInfo(os.Stdout)
	case f.action == "start":
		err = start(f)
	case f.action == "delete":
		err = deleteAction(f)
	case f.action == "":
		err = serve(f)
	default:
		err = fmt.Errorf("unknown action %q: want start or delete", f.action)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "containerd-shim-uvmgcs-v1:", err)
		os.Exit(1)
	}
}
