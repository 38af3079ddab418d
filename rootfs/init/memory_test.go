package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReportSmallFreeBlocks(t *testing.T) {
	param := filepath.Join(t.TempDir(), "page_reporting_order")
	if err := os.WriteFile(param, []byte("10\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	reportSmallFreeBlocks(param)
	if b, _ := os.ReadFile(param); string(b) != "5" {
		t.Errorf("order %q, want 5", b)
	}
	// A kernel without free page reporting: nothing written, nothing said.
	missing := filepath.Join(t.TempDir(), "none")
	reportSmallFreeBlocks(missing)
	if _, err := os.Stat(missing); err == nil {
		t.Error("created the parameter file")
	}
}
