package containerd

import (
	"context"
	"strings"
	"testing"
)

// TestRunHello is the first thing a user does: ctr run --rm an image
// through the runtime and read what the container printed.
func TestRunHello(t *testing.T) {
	forEach(t, func(t *testing.T, d *daemon) {
		out, err := d.ctrOK(context.Background(), d.runArgs("--rm", busyboxImage, "hello-"+d.id(), "echo", "hello")...)
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(out) != "hello" {
			t.Fatalf("output %q, want hello", out)
		}
	})
}
