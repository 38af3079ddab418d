package vm

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/uvmgcs/gcs/host/layer"
	"github.com/uvmgcs/gcs/host/uvm"
)

// BenchmarkVMLayerMount times mounting a 1-layer and a 20-layer rootfs in
// the VM from SCSI disks, ext4 against erofs: each disk hot-plugged and
// mounted through the VM's owner, then the overlay, reported apart.
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
					var held []*uvm.Resource
					var layers []string
					for _, img := range imgs {
						r, err := m.u.AddSCSI(ctx, img, uvm.SCSIOptions{ReadOnly: true})
						if err != nil {
							b.Fatal(err)
						}
						held = append(held, r)
						layers = append(layers, r.GuestPath())
					}
					t1 := time.Now()
					overlay, err := m.u.Combine(ctx, uvm.RootPath(fmt.Sprintf("bench-%s-%d-%d", fs, n, it)), layers, "")
					if err != nil {
						b.Fatalf("overlay: %v", err)
					}
					t2 := time.Now()
					attach += t1.Sub(t0)
					mount += t2.Sub(t1)
					for _, r := range append(held, overlay) {
						if err := r.Release(ctx); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.ReportMetric(float64(attach.Milliseconds())/float64(b.N), "attach-and-mount-ms")
				b.ReportMetric(float64(mount.Milliseconds())/float64(b.N), "overlay-ms")
			})
		}
	}
}
