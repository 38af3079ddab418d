package main

import (
	"fmt"
	"strings"
)

// paramPrefix marks the kernel parameters meant for the agent (and a few
// for this init).
const paramPrefix = "gcs."

// initParams are gcs.* parameters this init consumes; gcs never sees them.
var initParams = map[string]bool{"cgroup": true}

// agentDefaults are the flags gcs gets unless the command line names them.
var agentDefaults = []flagValue{
	{name: "transport", value: "auto", hasValue: true},
	{name: "state-root", value: "/run/gcs", hasValue: true},
}

type bootConfig struct {
	agentArgs []string // flags for gcs, each "-name=value" or "-name"
	cgroupV1  bool
	warnings  []string // bad parameters, reported on the console
}

type flagValue struct {
	name, value string
	hasValue    bool
}

// parseBootConfig reads the gcs.* parameters of a kernel command line.
//
// Each becomes one argument "-name=value" rather than the pair
// "-name value": Go's flag package reads both the same for string flags,
// and only the first for booleans. A parameter given twice keeps its last
// value at its first position.
func parseBootConfig(cmdline string) bootConfig {
	var cfg bootConfig
	flags := append([]flagValue(nil), agentDefaults...)
	index := map[string]int{}
	for i, f := range flags {
		index[f.name] = i
	}
	for _, p := range splitCmdline(cmdline) {
		rest, ok := strings.CutPrefix(p, paramPrefix)
		if !ok {
			continue
		}
		name, value, hasValue := strings.Cut(rest, "=")
		switch {
		case name == "" || strings.HasPrefix(name, "-"):
			cfg.warnings = append(cfg.warnings, fmt.Sprintf("ignoring kernel parameter %q: no flag name", p))
		case initParams[name]:
			cfg.applyInitParam(name, value)
		default:
			f := flagValue{name: name, value: value, hasValue: hasValue}
			if i, seen := index[name]; seen {
				flags[i] = f
			} else {
				index[name] = len(flags)
				flags = append(flags, f)
			}
		}
	}
	for _, f := range flags {
		if f.hasValue {
			cfg.agentArgs = append(cfg.agentArgs, "-"+f.name+"="+f.value)
		} else {
			cfg.agentArgs = append(cfg.agentArgs, "-"+f.name)
		}
	}
	return cfg
}

func (cfg *bootConfig) applyInitParam(name, value string) {
	switch name {
	case "cgroup":
		switch value {
		case "v1":
			cfg.cgroupV1 = true
		case "v2":
			cfg.cgroupV1 = false
		default:
			cfg.warnings = append(cfg.warnings, fmt.Sprintf("gcs.cgroup=%q: want v1 or v2; using v2", value))
			cfg.cgroupV1 = false
		}
	}
}

// splitCmdline splits a kernel command line the way the kernel does:
// at spaces outside double quotes, with the quotes removed
// (param="a b" is one parameter, param=a b).
func splitCmdline(s string) []string {
	var (
		out     []string
		cur     strings.Builder
		inQuote bool
		inToken bool
	)
	for _, r := range s {
		switch {
		case r == '"':
			inQuote = !inQuote
			inToken = true
		case !inQuote && (r == ' ' || r == '\t' || r == '\n'):
			if inToken {
				out = append(out, cur.String())
				cur.Reset()
				inToken = false
			}
		default:
			cur.WriteRune(r)
			inToken = true
		}
	}
	if inToken {
		out = append(out, cur.String())
	}
	return out
}
