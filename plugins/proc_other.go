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

// The OOM killer's counter is unknown off Linux.
func oomKillFile(int) string             { return "" }
func oomKillCount(string) (uint64, bool) { return 0, false }
