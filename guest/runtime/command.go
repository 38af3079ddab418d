package runtime

import (
	"fmt"
	"sort"
	"strings"

	shellwords "github.com/mattn/go-shellwords"

	"github.com/uvmgcs/gcs/protocol"
)

// DefaultPath is PATH for a process whose environment names none.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Bounds on what a request may ask for.
const (
	maxArgs    = 4096
	maxEnv     = 4096
	maxArgSize = 256 << 10 // total bytes of argv and environment
)

// Argv returns the command to run: CommandArgs, else CommandLine split as a
// POSIX shell would split words (quotes and escapes, no expansion).
func Argv(p *protocol.ProcessParameters) ([]string, error) {
	args := p.CommandArgs
	if len(args) == 0 && p.CommandLine != "" {
		var err error
		args, err = shellwords.Parse(p.CommandLine)
		if err != nil {
			return nil, fmt.Errorf("command line %q: %v: %w", p.CommandLine, err, protocol.HrInvalidArg)
		}
	}
	if len(args) == 0 || args[0] == "" {
		return nil, fmt.Errorf("no command given: %w", protocol.HrInvalidArg)
	}
	if len(args) > maxArgs {
		return nil, fmt.Errorf("%d arguments, at most %d: %w", len(args), maxArgs, protocol.HrInvalidArg)
	}
	return args, nil
}

// Env returns the environment as sorted KEY=VALUE entries, with PATH set to
// DefaultPath when the request names none.
func Env(m map[string]string) ([]string, error) {
	if len(m) > maxEnv {
		return nil, fmt.Errorf("%d environment entries, at most %d: %w", len(m), maxEnv, protocol.HrInvalidArg)
	}
	env := make([]string, 0, len(m)+1)
	for k, v := range m {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			return nil, fmt.Errorf("environment entry %q: %w", k, protocol.HrInvalidArg)
		}
		env = append(env, k+"="+v)
	}
	if _, ok := m["PATH"]; !ok {
		env = append(env, "PATH="+DefaultPath)
	}
	sort.Strings(env)
	return env, nil
}

// checkSize bounds the bytes of argv and environment together.
func checkSize(args, env []string) error {
	n := 0
	for _, s := range args {
		if strings.ContainsRune(s, 0) {
			return fmt.Errorf("argument holds a NUL byte: %w", protocol.HrInvalidArg)
		}
		n += len(s) + 1
	}
	for _, s := range env {
		n += len(s) + 1
	}
	if n > maxArgSize {
		return fmt.Errorf("arguments and environment are %d bytes, at most %d: %w", n, maxArgSize, protocol.HrInvalidArg)
	}
	return nil
}
