package main

import (
	"reflect"
	"testing"
)

func TestSplitCmdline(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"  console=ttyS0   panic=-1\n", []string{"console=ttyS0", "panic=-1"}},
		{`gcs.a="x y" b`, []string{"gcs.a=x y", "b"}},
		{`"gcs.a=x y"`, []string{"gcs.a=x y"}},
		{`a="" b`, []string{"a=", "b"}},
		{"a\tb", []string{"a", "b"}},
		{`a="unterminated b`, []string{"a=unterminated b"}},
	} {
		if got := splitCmdline(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("splitCmdline(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseBootConfig(t *testing.T) {
	defaults := []string{"-transport=auto", "-state-root=/run/gcs"}
	for _, tc := range []struct {
		name     string
		cmdline  string
		args     []string
		v1       bool
		warnings int
	}{
		{name: "no gcs parameters", cmdline: "console=ttyS0 panic=-1 quiet", args: defaults},
		{name: "a flag", cmdline: "console=ttyS0 gcs.loglevel=debug",
			args: append(defaults, "-loglevel=debug")},
		{name: "defaults overridden in place", cmdline: "gcs.loglevel=debug gcs.state-root=/run/x gcs.transport=vsock",
			args: []string{"-transport=vsock", "-state-root=/run/x", "-loglevel=debug"}},
		{name: "last value wins, first position kept", cmdline: "gcs.loglevel=debug gcs.log-format=json gcs.loglevel=trace",
			args: append(defaults, "-loglevel=trace", "-log-format=json")},
		{name: "boolean flag", cmdline: "gcs.verbose", args: append(defaults, "-verbose")},
		{name: "empty value", cmdline: "gcs.cgroup-parent=", args: append(defaults, "-cgroup-parent=")},
		{name: "value with = and spaces", cmdline: `gcs.env="A=b c"`, args: append(defaults, "-env=A=b c")},
		{name: "similar prefixes are not ours", cmdline: "gcsx.a=1 xgcs.b=2 GCS.c=3", args: defaults},
		{name: "no name", cmdline: "gcs.=1 gcs. gcs.-x=1", args: defaults, warnings: 3},
		{name: "cgroup v1 is the init's", cmdline: "gcs.cgroup=v1 gcs.loglevel=debug",
			args: append(defaults, "-loglevel=debug"), v1: true},
		{name: "cgroup v2", cmdline: "gcs.cgroup=v1 gcs.cgroup=v2", args: defaults},
		{name: "bad cgroup", cmdline: "gcs.cgroup=v3", args: defaults, warnings: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := parseBootConfig(tc.cmdline)
			if !reflect.DeepEqual(cfg.agentArgs, tc.args) {
				t.Errorf("args = %q, want %q", cfg.agentArgs, tc.args)
			}
			if cfg.cgroupV1 != tc.v1 {
				t.Errorf("cgroupV1 = %v, want %v", cfg.cgroupV1, tc.v1)
			}
			if len(cfg.warnings) != tc.warnings {
				t.Errorf("warnings = %q, want %d", cfg.warnings, tc.warnings)
			}
		})
	}
}

// The defaults must not change between boots.
func TestParseBootConfigKeepsDefaults(t *testing.T) {
	parseBootConfig("gcs.transport=vsock")
	if got := parseBootConfig("").agentArgs; !reflect.DeepEqual(got, []string{"-transport=auto", "-state-root=/run/gcs"}) {
		t.Fatalf("defaults changed: %q", got)
	}
}
