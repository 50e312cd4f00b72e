//go:build !linux

package plugins

import (
	"os"
	"syscall"
)

// sysProcAttr returns nil off Linux: there is no parent-death signal, so the
// supervisor's start-up reaper is the only guard against orphans there.
func sysProcAttr() *syscall.SysProcAttr { return nil }

func killGroup(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}

// oomKillCount is unknown off Linux.
func oomKillCount() (uint64, bool) { return 0, false }
