//go:build !linux

package plugins

import (
	"os"
	"os/exec"
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

// execFile runs the plugin by its path off Linux: there is no
// /proc/self/fd, so the file executed is the one the path names at exec
// time (CheckPath keeps others from changing it).
func execFile(*exec.Cmd, *os.File) {}

// closeInheritedOnExec does nothing off Linux.
func closeInheritedOnExec() {}

// The OOM killer's counter is unknown off Linux.
func oomKillFile(int) string             { return "" }
func oomKillCount(string) (uint64, bool) { return 0, false }
