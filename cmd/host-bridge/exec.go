package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/uvmgcs/gcs/host"
)

// execMain runs one process, in the utility VM or (with --container) in a
// running container, and relays its stdio.
func execMain(args []string) (int, error) {
	fs := flag.NewFlagSet("exec", flag.ContinueOnError)
	dir := fs.String("socket-dir", "", "directory of the unix transport's sockets")
	var uvmName string
	fs.Func("uvm", "the long-lived utility VM NAME (host-bridge uvm start) to act on", func(name string) error {
		if !validUVMName(name) {
			return fmt.Errorf("uvm name %q is not valid", name)
		}
		uvmName = name
		return nil
	})
	guest := fs.String("guest", "", "start this gcs binary on this host (host mode, Linux) instead of waiting for a VM's agent")
	ctr := fs.String("container", "", "run the command in this running container instead of the utility VM")
	tty := fs.Bool("t", false, "allocate a terminal")
	interactive := fs.Bool("i", false, "keep stdin open")
	cwd := fs.String("cwd", "/", "working directory")
	user := fs.String("user", "", "UID[:GID] to run as in the container (default 0:0)")
	timeout := fs.Duration("connect-timeout", defaultConnectTimeout, "how long to wait for the agent to connect")
	inVM := fs.Bool("vm", false, "boot a utility VM (--kernel, --initrd) and run the command in it")
	vf := addVMFlags(fs)
	var env multiFlag
	fs.Var(&env, "env", "KEY=VALUE environment entry (repeatable)")
	if err := fs.Parse(args); err != nil {
		return 2, usageError{err}
	}
	argv := fs.Args()
	switch {
	case len(argv) == 0:
		return 2, usageError{errors.New("exec: no command given")}
	case *dir == "" && uvmName == "" && *guest == "" && !*inVM:
		return 2, usageError{errors.New("exec: --socket-dir, --uvm, --guest or --vm is required")}
	case *inVM && (*dir != "" || uvmName != "" || *guest != "" || *ctr != ""):
		return 2, usageError{errors.New("exec: --vm runs in a VM of its own: no --socket-dir, --uvm, --guest or --container")}
	case *guest != "" && uvmName != "":
		return 2, usageError{errors.New("exec: --guest starts its own agent: no --uvm")}
	case *ctr != "" && *guest != "":
		return 2, usageError{errors.New("exec: --container needs a running agent (--socket-dir), not --guest")}
	case *ctr == "" && *user != "":
		return 2, usageError{errors.New("exec: --user needs --container")}
	}
	var proc *specs.Process
	if *ctr != "" {
		u, err := parseUser(*user)
		if err != nil {
			return 2, usageError{err}
		}
		proc = &specs.Process{Args: argv, Env: envList(env), Cwd: *cwd, Terminal: *tty, User: u}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var gc *host.GuestConnection
	if *inVM {
		m, release, err := vf.machine()
		if err != nil {
			return 1, err
		}
		defer release()
		bctx, cancel := context.WithTimeout(ctx, vmBootTimeout)
		u, shutdown, err := vf.boot(bctx, m)
		cancel()
		if err != nil {
			return 1, err
		}
		defer shutdown()
		gc = u.GuestConnection()
	} else {
		cctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		r, err := reach(cctx, *dir, uvmName, *guest)
		if err != nil {
			return 1, err
		}
		defer r.close()
		gc = r.gc
	}

	params := stdioParams(*tty, *interactive)
	if *tty {
		defer localConsole(params)()
	}
	var p *host.Process
	var err error
	if proc != nil {
		var c *host.Container
		if c, err = gc.OpenContainer(ctx, *ctr); err == nil {
			p, err = c.Exec(ctx, proc, params)
		}
		if err != nil {
			err = fmt.Errorf("exec in %q: %w", *ctr, err)
		}
	} else {
		params.CommandArgs, params.WorkingDirectory, params.Environment = argv, *cwd, envMap(env)
		p, err = gc.CreateProcess(ctx, params)
	}
	if err != nil {
		return 1, err
	}
	return attach(ctx, p, *tty)
}

// agentLog is where a host-mode agent's log goes: stderr when
// HOST_BRIDGE_AGENT_LOG=1, else nowhere.
func agentLog() io.Writer {
	if os.Getenv("HOST_BRIDGE_AGENT_LOG") == "1" {
		return os.Stderr
	}
	return nil
}

func envMap(env []string) map[string]string {
	m := map[string]string{"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	for _, kv := range env {
		for i := 0; i < len(kv); i++ {
			if kv[i] == '=' {
				m[kv[:i]] = kv[i+1:]
				break
			}
		}
	}
	return m
}

// envList is envMap as sorted KEY=VALUE entries (an OCI process's Env).
func envList(env []string) []string {
	var l []string
	for k, v := range envMap(env) {
		l = append(l, k+"="+v)
	}
	slices.Sort(l)
	return l
}

// parseUser parses UID[:GID]; empty is root.
func parseUser(s string) (specs.User, error) {
	var u specs.User
	if s == "" {
		return u, nil
	}
	uid, gid, hasGID := strings.Cut(s, ":")
	n, err := strconv.ParseUint(uid, 10, 32)
	if err != nil {
		return u, fmt.Errorf("--user %q: want UID[:GID]: %w", s, err)
	}
	u.UID = uint32(n)
	if hasGID {
		n, err := strconv.ParseUint(gid, 10, 32)
		if err != nil {
			return u, fmt.Errorf("--user %q: want UID[:GID]: %w", s, err)
		}
		u.GID = uint32(n)
	}
	return u, nil
}

type multiFlag []string

func (m *multiFlag) String() string     { return fmt.Sprint(*m) }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
