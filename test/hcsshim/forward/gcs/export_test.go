//go:build ignore

package gcs

// What the suite (package gcs_test, which also imports internal/cmd, an
// importer of this package) needs of the bridge's internals.

import (
	"context"
	"errors"
	"io"

	"github.com/Microsoft/go-winio/pkg/guid"

	"github.com/Microsoft/hcsshim/internal/gcs/prot"
)

// BridgeTerminated reports whether gc's bridge has ended, and its error.
func BridgeTerminated(gc *GuestConnection) (bool, error) {
	select {
	case <-gc.brdg.waitCh:
		return true, gc.brdg.brdgErr
	default:
		return false, nil
	}
}

// HResult is the HRESULT of a failed RPC, or 0.
func HResult(err error) uint32 {
	var e *rpcError
	if errors.As(err, &e) {
		return uint32(e.result)
	}
	return 0
}

// ReadMessage is the bridge's frame reader.
func ReadMessage(r io.Reader) (int64, prot.MsgType, []byte, error) { return readMessage(r) }

// CreateContainerWithActivity is CreateContainer with the request's
// ActivityId set (hcsshim's makeRequest leaves it zero).
func (gc *GuestConnection) CreateContainerWithActivity(ctx context.Context, cid string, activity guid.GUID, config interface{}) (*Container, error) {
	c := &Container{gc: gc, id: cid, notifyCh: make(chan struct{}), closeCh: make(chan struct{}), waitBlock: make(chan struct{})}
	if err := gc.requestNotify(cid, c.notifyCh); err != nil {
		return nil, err
	}
	req := prot.ContainerCreate{RequestBase: makeRequest(ctx, cid), ContainerConfig: prot.AnyInString{Value: config}}
	req.ActivityID = activity
	var resp prot.ContainerCreateResponse
	if err := gc.brdg.RPC(ctx, prot.RPCCreate, &req, &resp, false); err != nil {
		return nil, err
	}
	go c.waitBackground()
	return c, nil
}
