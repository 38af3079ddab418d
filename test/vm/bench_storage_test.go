package vm

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/uvmgcs/gcs/host/layer"
	hostvm "github.com/uvmgcs/gcs/host/vm"
	"github.com/uvmgcs/gcs/protocol"
)

// BenchmarkVMLayerMount times mounting a 1-layer and a 20-layer rootfs in
// the VM from SCSI disks, ext4 against erofs: hot-plug of the disks, then
// the guest's mounts and overlay (MountLayerStack), reported apart.
func BenchmarkVMLayerMount(b *testing.B) {
	if why := missing(); why != "" {
		b.Skip("SKIP (loud): " + why)
	}
	if _, err := exec.LookPath("mkfs.erofs"); err != nil {
		b.Skip("SKIP (loud): mkfs.erofs (erofs-utils) is not installed")
	}
	ctx := context.Background()
	dir := b.TempDir()
	tree := filepath.Join(dir, "tree")
	if err := layer.Busybox(ctx, "/bin/busybox", tree); err != nil {
		b.Fatal(err)
	}
	m := boot(b, "")
	defer m.close()
	gc := m.gc()
	for _, fs := range []string{"ext4", "erofs"} {
		for _, n := range []int{1, 20} {
			b.Run(fmt.Sprintf("%s-%d", fs, n), func(b *testing.B) {
				imgs := make([]string, n)
				for i := range imgs {
					imgs[i] = filepath.Join(dir, fmt.Sprintf("%s-%d-%d.img", fs, n, i))
					var err error
					if fs == "ext4" {
						err = layer.FromDir(ctx, tree, imgs[i])
					} else {
						var out []byte
						out, err = exec.Command("mkfs.erofs", imgs[i], tree).CombinedOutput()
						if err != nil {
							err = fmt.Errorf("%v: %s", err, out)
						}
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				var attach, mount time.Duration
				for it := range b.N {
					t0 := time.Now()
					disks := make([]hostvm.Disk, n)
					layers := make([]protocol.MappedVirtualDisk, n)
					for i, img := range imgs {
						d, err := m.m.AddSCSIDisk(ctx, img, true)
						if err != nil {
							b.Fatal(err)
						}
						disks[i] = d
						layers[i] = protocol.MappedVirtualDisk{Controller: d.Controller, Lun: d.LUN}
					}
					t1 := time.Now()
					root := fmt.Sprintf("/run/gcs/c/bench-%s-%d-%d/rootfs", fs, n, it)
					unmount, err := gc.MountLayerStack(ctx, layers, nil, root)
					if err != nil {
						b.Fatalf("mount: %v", err)
					}
					t2 := time.Now()
					attach += t1.Sub(t0)
					mount += t2.Sub(t1)
					if err := unmount(ctx); err != nil {
						b.Fatal(err)
					}
					for _, d := range disks {
						gc.RemoveSCSIDevice(ctx, d.Controller, d.LUN)
						if err := m.m.RemoveSCSIDisk(ctx, d); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.ReportMetric(float64(attach.Milliseconds())/float64(b.N), "attach-ms")
				b.ReportMetric(float64(mount.Milliseconds())/float64(b.N), "mount-ms")
			})
		}
	}
}
