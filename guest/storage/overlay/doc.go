// Package overlay owns container root filesystems combined from layers:
// an overlayfs whose lower layers are the layer mounts in the order the
// host sends them (first is the top) and whose upper and work directories
// live on the container's scratch disk, or a read-only one without scratch.
package overlay
