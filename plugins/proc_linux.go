//go:build linux

package plugins

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// sysProcAttr puts the plugin in a process group of its own (so killing the
// group takes its helpers too) and asks the kernel to SIGKILL it if the
// supervisor dies, so no plugin outlives the supervisor.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func killGroup(pid int) error { return syscall.Kill(-pid, syscall.SIGKILL) }

// oomKillCount returns the oom_kill counter of the memory cgroup the
// supervisor runs in; plugins inherit it. A SIGKILL that comes with a rise
// of this counter is the OOM killer's work. ok is false where the counter
// cannot be read.
func oomKillCount() (n uint64, ok bool) {
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0, false
	}
	// cgroup v2: "0::/path" with memory.events; v1: "N:memory:/path" with
	// memory.oom_control. Both carry an "oom_kill N" line.
	var file string
	for _, line := range strings.Split(string(cg), "\n") {
		if rest, found := strings.CutPrefix(line, "0::"); found && file == "" {
			file = filepath.Join("/sys/fs/cgroup", rest, "memory.events")
		}
		if _, rest, found := strings.Cut(line, ":memory:"); found {
			file = filepath.Join("/sys/fs/cgroup/memory", rest, "memory.oom_control")
		}
	}
	if file == "" {
		return 0, false
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, found := strings.CutPrefix(line, "oom_kill "); found {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
