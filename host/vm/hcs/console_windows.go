package hcs

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/Microsoft/go-winio"
)

// consolePipeSDDL lets SYSTEM, Administrators and the Hyper-V VM worker
// processes (NT VIRTUAL MACHINE\Virtual Machines) open the console pipe:
// the worker connects the VM's serial port to it and writes.
const consolePipeSDDL = "D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;GA;;;S-1-5-83-0)"

// serveConsole listens on a new named pipe for the VM's serial port and
// copies what the VM writes there to w until stop.
func serveConsole(w io.Writer) (name string, stop func(), err error) {
	b := make([]byte, 8)
	rand.Read(b)
	name = `\\.\pipe\uvmgcs-console-` + hex.EncodeToString(b)
	l, err := winio.ListenPipe(name, &winio.PipeConfig{SecurityDescriptor: consolePipeSDDL})
	if err != nil {
		return "", nil, fmt.Errorf("console pipe %s: %w", name, err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			io.Copy(w, c)
			c.Close()
		}
	}()
	return name, func() { l.Close() }, nil
}
