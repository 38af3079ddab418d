// Command host-bridge drives a gcs agent from the host with runc-like verbs.
//
//	host-bridge exec   --socket-dir DIR [--guest PATH] [-i] [-t] [--container ID] -- cmd args...
//	host-bridge create --socket-dir DIR [--bundle B] ID
//	host-bridge start  --socket-dir DIR [-d] [-t] ID
//	host-bridge run    --socket-dir DIR [--bundle B] [-d] [--keep] ID
//	host-bridge ps     --socket-dir DIR ID
//	host-bridge kill   --socket-dir DIR ID [SIGNAL]
//	host-bridge state  --socket-dir DIR ID
//	host-bridge pause  --socket-dir DIR ID
//	host-bridge resume --socket-dir DIR ID
//	host-bridge delete --socket-dir DIR [-f] ID
//	host-bridge list   --socket-dir DIR [-q] [--format table|json]
//
// Every verb listens for the agent on DIR (the unix transport: DIR/40000000
// for the bridge), takes its next connection and closes it when done. The
// agent serves one connection at a time and redials within a second after
// one closes, so verbs run one after another: while an attached start, run
// or exec holds the connection, another verb waits for it
// (--connect-timeout, 30s by default).
//
// exec runs one process in the utility VM, or with --container in a running
// container, streams its stdio and exits with its exit code. With --guest
// it first starts that gcs binary on this host in a private mount namespace
// (host mode) instead of waiting for a VM's agent to dial in.
//
// run, exec --vm and uvm start boot the VM with --driver: qemu (the default
// on Linux) or hcs (the Host Compute Service, the default on Windows, where
// a long-lived VM's verbs reach its agent over hvsocket). layer writes an
// image as the ext4 VHD the hcs driver attaches. exec --guest (host mode)
// runs on Linux only.
//
// The container verbs act on containers of an agent that is already
// running. create reads BUNDLE/config.json (a relative root.path is taken
// from the bundle directory). With --socket-dir the root filesystem must
// lie inside the agent's state root; with --uvm NAME it is a directory or
// a tar on this host, packed into a layer disk cached by content and
// attached with a scratch disk of the container's own, which delete
// releases (host/uvm does the attaching, mounting and releasing). start runs the container's init: with -d it returns
// at once, else it relays stdio and exits with the init's exit code. run is
// create and start; attached, it deletes the container after the init exits
// unless --keep is given.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/sirupsen/logrus"
)

const usage = `usage: host-bridge <command> --socket-dir DIR|--uvm NAME [flags] [args]

commands:
  exec    run one process in the utility VM (or with --container ID in a
          container) and stream its stdio
  create  create a container from a bundle (--bundle B, default .; with
          --uvm NAME its root.path is a directory or tar on this host)
  start   start a created container's init (-d: detached)
  run     create and start a container (-d: detached)
  ps      print the pids of a container's processes
  kill    send a signal to a container's init (default TERM)
  state   print a container's state as JSON
  pause   freeze a container
  resume  thaw a paused container
  delete  delete a stopped container (-f: kill it first)
  list    list the agent's containers
  uvm     start|stop|list long-lived utility VMs; other verbs reach one
          with --uvm NAME instead of --socket-dir
  layer   write an image as an ext4 layer VHD for --driver hcs
          (-o NAME.vhd [--image DIR|TAR]; on Linux)

Without --socket-dir or --uvm:
  run [--image DIR|TAR] [-t] [-i] -- cmd args
          boot a utility VM from out/, run cmd in a container on the
          image (busybox by default) and exit with its code
  exec --vm [-t] [-i] -- cmd args
          boot a utility VM and run cmd in it

The VM verbs take --driver qemu|hcs (default: qemu on Linux, hcs on
Windows, where run's --image is a layer VHD, default busybox.vhd).

Run "host-bridge <command> -h" for a command's flags.
`

// verbs are the commands by name.
var verbs = map[string]func([]string) (int, error){
	"exec":   execMain,
	"create": createMain,
	"start":  startMain,
	"run":    runDispatch,
	"ps":     psMain,
	"kill":   killMain,
	"state":  stateMain,
	"pause":  pauseMain,
	"resume": resumeMain,
	"delete": deleteMain,
	"list":   listMain,
	"uvm":    uvmMain,
	"layer":  layerMain,
}

// synopses are each container verb's one-line usage.
var synopses = map[string]string{
	"create": "host-bridge create --socket-dir DIR [--bundle B] ID",
	"start":  "host-bridge start --socket-dir DIR [-d] [-t] ID",
	"run":    "host-bridge run --socket-dir DIR [--bundle B] [-d] [--keep] ID",
	"ps":     "host-bridge ps --socket-dir DIR [--format table|json] ID",
	"kill":   "host-bridge kill --socket-dir DIR ID [SIGNAL]",
	"state":  "host-bridge state --socket-dir DIR ID",
	"pause":  "host-bridge pause --socket-dir DIR ID",
	"resume": "host-bridge resume --socket-dir DIR ID",
	"delete": "host-bridge delete --socket-dir DIR [-f] ID",
	"list":   "host-bridge list --socket-dir DIR [-q] [--format table|json]",
}

// verbUsage is verb's one-line usage.
func verbUsage(verb string) string {
	return "usage: " + synopses[verb]
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	// The library logs through logrus; a CLI shows only its warnings
	// unless HOST_BRIDGE_LOG names a level.
	logrus.SetLevel(logrus.WarnLevel)
	if lv, err := logrus.ParseLevel(os.Getenv("HOST_BRIDGE_LOG")); err == nil {
		logrus.SetLevel(lv)
	}
	var code int
	var err error
	switch name := os.Args[1]; name {
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		verb, ok := verbs[name]
		if !ok {
			err = usageError{fmt.Errorf("unknown command %q\n%s", name, usage)}
			break
		}
		code, err = verb(os.Args[2:])
	}
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "host-bridge:", err)
	}
	os.Exit(exitCode(code, err))
}
