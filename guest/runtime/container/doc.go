// Package container owns the OCI containers the agent runs, through
// libcontainer linked in-process: creation from a bundle's spec, the init
// process and execs with their stdio relayed to the host, waits, signals,
// shutdown, pause and resume, resource updates, statistics, pods sharing a
// sandbox's namespaces, and teardown that leaves nothing behind.
//
// Every process started here is waited for by its owner; the reaper it
// shares with the utility VM's processes never collects a tracked pid.
package container
