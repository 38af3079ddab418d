package scsi

import (
	"context"
	"errors"
	"fmt"

	"github.com/uvmgcs/gcs/guest/storage/uevent"

	"github.com/uvmgcs/gcs/internal/log"
)

// Find returns the device node of (controller, lun, partition), waiting
// for the kernel to announce it when it is not there yet: the host attaches
// a disk and sends the request at about the same time. The wait ends at
// the Locator's timeout with an error naming the controller and LUN and
// wrapping context.DeadlineExceeded.
//
// When the device is missing at the first look, Find asks the kernel to
// scan exactly that LUN (Scan) before it waits: a kernel booted with
// scsi_mod.scan=manual (QEMU's command line) adds a hot-plugged LUN 0, and
// any LUN whose hot-plug event the controller dropped, only that way.
func (l *Locator) Find(ctx context.Context, controller, lun uint8, partition uint64) (string, error) {
	// Subscribe before the first look, so an event between the look and
	// the wait is not lost.
	w, err := l.watch()
	if err != nil {
		log.G(ctx).WithError(err).Warn("kernel uevents unavailable; polling sysfs for SCSI devices")
		w = uevent.NewPoller()
	}
	defer w.Close()
	scanned := false
	lookup := func() (string, error) {
		dev, err := l.Lookup(controller, lun, partition)
		if scanned || !errors.Is(err, errNotPresent) {
			return dev, err
		}
		scanned = true
		if serr := l.Scan(controller, lun); serr != nil {
			log.G(ctx).WithError(serr).Debug("scsi scan")
		}
		return l.Lookup(controller, lun, partition)
	}
	dev, err := uevent.Find(ctx, w, l.cfg.Timeout, lookup)
	if err != nil {
		return "", fmt.Errorf("scsi controller %d lun %d partition %d: %w", controller, lun, partition, err)
	}
	return dev, nil
}
