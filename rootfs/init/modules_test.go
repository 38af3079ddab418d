package main

import (
	"os"
	"path/filepath"
	"testing"
)

// A fake /sys/bus/virtio/devices: the vsock transport is wanted only
// when a vsock device (ID 19) is on the bus; other modules always are.
func TestVirtioDeviceWanted(t *testing.T) {
	dir := t.TempDir()
	dev := func(name, id string) {
		if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "device"), []byte(id+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dev("virtio0", "0x0008") // scsi
	dev("virtio1", "0x0003") // console
	wanted := virtioDeviceWanted(dir)
	if wanted("vmw_vsock_virtio_transport") {
		t.Error("vsock transport wanted without a vsock device")
	}
	for _, m := range []string{"virtio_console", "vsock", "hv_sock", "virtio_pci"} {
		if !wanted(m) {
			t.Errorf("%s not wanted", m)
		}
	}
	dev("virtio2", "0x0013") // vsock
	if !wanted("vmw_vsock_virtio_transport") {
		t.Error("vsock transport not wanted with a vsock device")
	}
	if !virtioDeviceWanted(filepath.Join(dir, "absent"))("vmw_vsock_virtio_transport") {
		t.Error("without a virtio bus to ask, the module should be loaded")
	}
}

// loadModules reports a module wanted refuses as not for this machine
// and does not try to load it.
func TestLoadModulesSkipsUnwanted(t *testing.T) {
	dir := t.TempDir()
	list := filepath.Join(dir, "modules-load")
	if err := os.WriteFile(list, []byte("kernel/net/vmw_vsock/vmw_vsock_virtio_transport.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := loadModules(list, dir, func(string) bool { return false })
	if res.loaded != 0 || len(res.failed) != 0 || len(res.skipped) != 1 || res.skipped[0] != "vmw_vsock_virtio_transport" {
		t.Fatalf("got %+v, want one skipped", res)
	}
}
