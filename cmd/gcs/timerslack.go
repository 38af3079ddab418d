package main

// The agent's timer slack, 1 ms (internal/timerslack says why), is set before the Go
// runtime starts, so that every thread the runtime makes, sysmon first,
// inherits it. A container init re-executing the agent gets it too, for
// its own runtime's threads; main sets the init's thread back to the
// default before libcontainer's init runs, and processes the agent starts
// itself get the default through timerslack.Start.

/*
#include <sys/prctl.h>

__attribute__((constructor)) static void gcs_timer_slack(void) {
	prctl(PR_SET_TIMERSLACK, 1000000UL, 0UL, 0UL, 0UL);
}
*/
import "C"
