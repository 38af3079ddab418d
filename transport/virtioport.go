package transport

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// FindVirtioPort returns the device node of the virtio-serial port called
// name: the kernel names each port in <sysRoot>/class/virtio-ports/<dev>/name
// and, with no udev in the VM, the node is <devRoot>/<dev> (vportNpM, N
// varies with probe order).
func FindVirtioPort(sysRoot, devRoot, name string) (string, error) {
	dirs, err := filepath.Glob(filepath.Join(sysRoot, "class", "virtio-ports", "*"))
	if err != nil {
		return "", err
	}
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "name"))
		if err != nil {
			continue
		}
		if strings.TrimSpace(string(b)) == name {
			return filepath.Join(devRoot, filepath.Base(d)), nil
		}
	}
	return "", fmt.Errorf("virtio port %q under %s: %w", name, sysRoot, errNoPort)
}

// VirtioSerial is the guest's multiplexed transport over the virtio-serial
// port called Name.
func VirtioSerial(sysRoot, devRoot, name string) *MuxDialer {
	return &MuxDialer{Open: func() (io.ReadWriteCloser, error) {
		p, err := FindVirtioPort(sysRoot, devRoot, name)
		if err != nil {
			return nil, err
		}
		return os.OpenFile(p, os.O_RDWR, 0)
	}}
}
