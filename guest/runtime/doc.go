// Package runtime owns the processes the agent runs in the utility VM: it
// starts them with their stdio relayed over one dialed connection per
// stream, reports exit codes only after the output has drained, and, as the
// VM's child subreaper, collects every orphan without stealing the exit
// status of a process someone is waiting for.
//
// Containers (guest/runtime/container) reuse its Reaper and Stdio relay.
package runtime
