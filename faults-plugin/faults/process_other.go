//go:build !linux

package faults

import (
	"errors"
	"os"
)

func killSelf() {
	p, _ := os.FindProcess(os.Getpid())
	_ = p.Kill()
	select {}
}

func allocUntilDead(uint64, func(uint64)) error { return errors.New("faults: alloc is Linux-only") }
func checkCgroupLimit(uint64) error {
	return errors.New("faults: memory cgroups are Linux-only")
}
func joinCgroup(string) error { return errors.New("faults: memory cgroups are Linux-only") }
func writeGarbageStdout()     { _, _ = os.Stdout.WriteString("\x00garbage\n") }
func breakSockets()           {}
