package main

import (
	"time"

	"golang.org/x/sys/unix"
)

// crngReady reports whether the kernel's random number generator is
// seeded: until then getrandom(2) blocks.
func crngReady() bool {
	var b [1]byte
	_, err := unix.Getrandom(b[:], unix.GRND_NONBLOCK)
	return err == nil
}

// seedEntropy makes sure the kernel's RNG gets seeded soon after boot. The
// seed normally comes from the CPU (random.trust_cpu=on and RDRAND) or a
// virtio-rng device (virtio_rng is in the load list; the kernel credits
// what it reads). Without either, as under TCG's default CPU, a blocking
// getrandom makes the kernel seed it from CPU jitter, about a second here:
// that runs in the background, so neither the boot nor gcs waits for it.
func seedEntropy() {
	if crngReady() {
		return
	}
	logf("entropy: kernel RNG not seeded; seeding from CPU jitter in the background (-device virtio-rng-pci seeds it at once)")
	go func() {
		start := time.Now()
		var b [1]byte
		for {
			if _, err := unix.Getrandom(b[:], 0); err != unix.EINTR {
				break
			}
		}
		logf("entropy: kernel RNG seeded after %d ms", time.Since(start).Milliseconds())
	}()
}
