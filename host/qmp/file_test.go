//go:build linux

package qmp

import (
	"errors"
	"os"
	"testing"
)

// TestExecuteWithFile: QEMU's getfd takes a descriptor only when one comes
// with the command, and closefd finds it under its name afterwards.
func TestExecuteWithFile(t *testing.T) {
	c, _ := startQEMU(t)
	ctx := testCtx(t)
	var qe *Error
	if err := c.Execute(ctx, "getfd", map[string]string{"fdname": "f0"}, nil); !errors.As(err, &qe) {
		t.Fatalf("getfd without a descriptor: %v", err)
	}
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := c.ExecuteWithFile(ctx, "getfd", map[string]string{"fdname": "f0"}, f, nil); err != nil {
		t.Fatalf("getfd with a descriptor: %v", err)
	}
	if err := c.Execute(ctx, "closefd", map[string]string{"fdname": "f0"}, nil); err != nil {
		t.Errorf("closefd of the passed descriptor: %v", err)
	}
	if err := c.Execute(ctx, "closefd", map[string]string{"fdname": "f0"}, nil); !errors.As(err, &qe) {
		t.Errorf("closefd twice: %v", err)
	}
	// The caller's copy stays open.
	if _, err := f.Stat(); err != nil {
		t.Errorf("the caller's file after passing it: %v", err)
	}
}
