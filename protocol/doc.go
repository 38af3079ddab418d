// Package protocol owns the bridge's wire format: the 16-byte frame header,
// message identifiers, every request, response and notification body with its
// exact JSON field names, and the HRESULT codes carried in responses.
//
// It is the single definition shared by the guest agent (guest/bridge) and the
// host library (host/); neither side declares wire types of its own.
//
// The protocol is wire-compatible with hcsshim's GCS protocol version 4. Where
// the shared specification is silent, this package chooses:
//
//   - MaxFrameSize is 0x100000 (1 MiB) for frames the guest accepts and
//     0x10000 (64 KiB) would be hcsshim's own host bound; a frame whose Size is
//     below HeaderSize or above the reader's bound is a protocol error and no
//     buffer is allocated from it. The payload is read into a buffer sized only
//     after the bound check.
//   - Payloads are written with a trailing newline, as hcsshim's host does;
//     decoders accept payloads with or without it.
//   - Unknown JSON fields are ignored (additive fields are non-breaking), so
//     trace context may arrive as "otsc" (W3C) or hcsshim's "ocsc".
//   - Extensions beyond hcsshim's set (pause, resume) use message ids above
//     0x100 and are advertised in GuestDefinedCapabilities; a host that never
//     sends them sees no difference.
//   - A container's exit notification echoes the ActivityId of the container's
//     Create (NullActivityID when that named none: hcsshim decodes every
//     ActivityId as a GUID) and carries Result 0, as hcsshim's guest does; the
//     exit code of record is WaitForProcess on the init. ResultInfo, a JSON
//     string holding an ExitInfo, is an extension no host needs.
//   - SignalProcess with Signal 0 means SIGKILL.
//   - WaitForProcess with TimeoutInMs 0xFFFFFFFF waits forever; a wait that
//     times out answers VmcomputeTimeout.
package protocol
