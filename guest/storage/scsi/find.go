package scsi

import (
	"context"
	"errors"
	"fmt"
	"github.com/uvmgcs/gcs/guest/storage/uevent"

	"github.com/uvmgcs/gcs/internal/log"
	"github.com/uvmgcs/gcs/protocol"
)

// Find returns the device node of (controller, lun, partition), waiting
// for the kernel to announce it when it is not there yet: the host attaches
// a disk and sends the request at about the same time. The wait ends at
// the Locator's timeout with an error naming the controller and LUN and
// wrapping protocol.HrVmcomputeTimeout.
func (l *Locator) Find(ctx context.Context, controller, lun uint8, partition uint64) (string, error) {
	// Subscribe before the first look, so an event between the look and
	// the wait is not lost.
	w, err := l.watch()
	if err != nil {
		log.G(ctx).WithError(err).Warn("kernel uevents unavailable; polling sysfs for SCSI devices")
		w = uevent.NewPoller()
	}
	defer w.Close()
	wctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	for {
		dev, err := l.Lookup(controller, lun, partition)
		if err == nil {
			return dev, nil
		}
		if !errors.Is(err, errNotPresent) {
			return "", fmt.Errorf("scsi controller %d lun %d: %w", controller, lun, err)
		}
		if werr := w.Wait(wctx); werr != nil {
			if ctx.Err() != nil {
				return "", fmt.Errorf("scsi controller %d lun %d: %w", controller, lun, ctx.Err())
			}
			if wctx.Err() != nil {
				return "", fmt.Errorf("scsi controller %d lun %d partition %d: device did not appear within %v (%v): %w",
					controller, lun, partition, l.cfg.Timeout, err, protocol.HrVmcomputeTimeout)
			}
			return "", fmt.Errorf("scsi controller %d lun %d: wait for device: %w", controller, lun, werr)
		}
	}
}
