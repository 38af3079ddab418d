//go:build !race

package uvm_test

const raceEnabled = false
