package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/uvmgcs/gcs/protocol"
)

// stateJSON is a container's state as `runc state` prints it.
type stateJSON struct {
	ID     string `json:"id"`
	Pid    int    `json:"pid"`
	Status string `json:"status"`
	Bundle string `json:"bundle"`
	Rootfs string `json:"rootfs"`
	// ExitCode is the init's exit code once stopped.
	ExitCode *int `json:"exitCode,omitempty"`
}

func toStateJSON(st protocol.ContainerState) stateJSON {
	j := stateJSON{ID: st.ID, Pid: st.Pid, Status: st.Status, Bundle: st.Bundle, Rootfs: st.Rootfs}
	if st.Status == protocol.StatusStopped {
		code := st.ExitCode
		j.ExitCode = &code
	}
	return j
}

// stateMain prints a container's state as JSON.
func stateMain(args []string) (int, error) {
	f := newCmdFlags("state")
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return 2, err
	}
	s, _, st, err := f.connectTo(pos[0])
	if err != nil {
		return 1, err
	}
	defer s.close()
	return 0, printJSON(os.Stdout, toStateJSON(*st))
}

// listMain prints every container: a table like `runc list`, their ids
// (-q) or JSON.
func listMain(args []string) (int, error) {
	f := newCmdFlags("list")
	quiet := f.fs.Bool("q", false, "print only the container ids")
	format := f.fs.String("format", "table", "output format: table or json")
	if _, err := f.parse(args, 0, 0); err != nil {
		return 2, err
	}
	if *format != "table" && *format != "json" {
		return 2, usageError{fmt.Errorf("list: --format %q: want table or json", *format)}
	}
	s, err := f.connect()
	if err != nil {
		return 1, err
	}
	defer s.close()
	cs, err := s.gc.ListContainers(s.ctx)
	if err != nil {
		return 1, fmt.Errorf("list: %w", err)
	}
	switch {
	case *quiet:
		for _, c := range cs {
			fmt.Println(c.ID)
		}
		return 0, nil
	case *format == "json":
		l := make([]stateJSON, 0, len(cs))
		for _, c := range cs {
			l = append(l, toStateJSON(c))
		}
		return 0, printJSON(os.Stdout, l)
	}
	w := tabwriter.NewWriter(os.Stdout, 12, 1, 3, ' ', 0)
	fmt.Fprintln(w, "ID\tPID\tSTATUS\tBUNDLE")
	for _, c := range cs {
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\n", c.ID, c.Pid, c.Status, c.Bundle)
	}
	return 0, w.Flush()
}

// psMain prints the pids of a container's processes, one a line (or as a
// JSON array).
func psMain(args []string) (int, error) {
	f := newCmdFlags("ps")
	format := f.fs.String("format", "table", "output format: table (one pid a line) or json")
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return 2, err
	}
	if *format != "table" && *format != "json" {
		return 2, usageError{fmt.Errorf("ps: --format %q: want table or json", *format)}
	}
	s, c, _, err := f.connectTo(pos[0])
	if err != nil {
		return 1, err
	}
	defer s.close()
	props, _, err := c.Properties(s.ctx, protocol.PropertyTypeProcessList)
	if err != nil {
		return 1, fmt.Errorf("ps %q: %w", c.ID(), err)
	}
	pids := make([]uint32, 0, len(props.ProcessList))
	for _, p := range props.ProcessList {
		pids = append(pids, p.ProcessID)
	}
	if *format == "json" {
		return 0, printJSON(os.Stdout, pids)
	}
	for _, pid := range pids {
		fmt.Println(pid)
	}
	return 0, nil
}

// pauseMain freezes a running container.
func pauseMain(args []string) (int, error) { return pauseResume("pause", args) }

// resumeMain thaws a paused container.
func resumeMain(args []string) (int, error) { return pauseResume("resume", args) }

func pauseResume(verb string, args []string) (int, error) {
	f := newCmdFlags(verb)
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return 2, err
	}
	s, c, _, err := f.connectTo(pos[0])
	if err != nil {
		return 1, err
	}
	defer s.close()
	if verb == "pause" {
		err = c.Pause(s.ctx)
	} else {
		err = c.Resume(s.ctx)
	}
	if err != nil {
		return 1, fmt.Errorf("%s %q: %w", verb, c.ID(), err)
	}
	return 0, nil
}

func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
