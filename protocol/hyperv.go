package protocol

// HyperVSCSIControllerGUID is the VMBus instance ID of the utility VM's
// SCSI controller n under Hyper-V: the host names controller n by it in
// the VM document, and the guest finds controller n's SCSI host by it
// (/sys/bus/vmbus/devices/<id>). These are the version-5 GUIDs hcsshim
// uses for controllers 0-3; there are no others.
func HyperVSCSIControllerGUID(n uint8) (string, bool) {
	guids := [...]string{
		"df6d0690-79e5-55b6-a5ec-c1e2f77f580a",
		"0110f83b-de10-5172-a266-78bca56bf50a",
		"b5d2d8d4-3a75-51bf-945b-3444dc6b8579",
		"305891a9-b251-5dfe-91a2-c25d9212275b",
	}
	if int(n) >= len(guids) {
		return "", false
	}
	return guids[n], true
}
