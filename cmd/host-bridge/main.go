// Command host-bridge drives a gcs agent from the host with runc-like verbs.
//
//	host-bridge exec --socket-dir DIR [--guest PATH] [-i] [-t] -- cmd args...
//
// exec listens for the agent on DIR (the unix transport: DIR/40000000 for the
// bridge), runs one process in the utility VM, streams its stdio and exits
// with its exit code. With --guest it first starts that gcs binary on this
// host in a private mount namespace (host mode) instead of waiting for a VM's
// agent to dial in.
package main

import (
	"fmt"
	"os"
)

const usage = `usage: host-bridge <command> [flags] [-- args]

commands:
  exec   run one process in the utility VM and stream its stdio
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var code int
	var err error
	switch os.Args[1] {
	case "exec":
		code, err = execMain(os.Args[2:])
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		err = fmt.Errorf("unknown command %q\n%s", os.Args[1], usage)
		code = 2
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "host-bridge:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}
