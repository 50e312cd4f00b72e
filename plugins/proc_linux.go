//go:build linux

package plugins

import (
	"os"
	"os/exec"
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

// execFile makes cmd execute the open file exe, not whatever its path
// names at exec time: the kernel resolves /proc/self/fd/N to the open file
// itself. The descriptor is close-on-exec, so an ELF plugin inherits
// nothing, and /proc/self/exe (hence $ORIGIN, os.Executable) still names
// the real path; argv[0] stays that path too. A script ("#!") is handed
// to its interpreter by path, which the interpreter opens after exec, so
// its file is passed as descriptor 3 (ExtraFiles) and executed as
// /proc/self/fd/3; so is any file opened as descriptor 0-2 (stdio closed
// in the supervisor), which the child's stdio would replace.
func execFile(cmd *exec.Cmd, exe *os.File) {
	if fd := exe.Fd(); fd > 2 && !isScript(exe) {
		cmd.Path = "/proc/self/fd/" + strconv.Itoa(int(fd))
		return
	}
	cmd.ExtraFiles = []*os.File{exe}
	cmd.Path = "/proc/self/fd/3"
}

// closeInheritedOnExec marks every descriptor of this process above
// stderr close-on-exec. Go opens all of its own so; one the supervisor
// inherited from its parent without the flag (a shell's "3>file", a
// service manager's socket) would otherwise pass to every plugin.
func closeInheritedOnExec() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}

// oomKillFile returns the file holding the oom_kill counter of the memory
// cgroup process pid runs in (plugins inherit the supervisor's unless they
// move), or "" where there is none. Reading it before and after a job
// tells whether the OOM killer acted in that cgroup meanwhile; the file is
// named while the process lives, since /proc/<pid> goes with it.
func oomKillFile(pid int) string {
	cg, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return ""
	}
	// cgroup v2: "0::/path" with memory.events; v1: "N:memory:/path" with
	// memory.oom_control. Both carry an "oom_kill N" line. A v1 memory
	// controller wins over an empty v2 hierarchy.
	var file string
	for _, line := range strings.Split(string(cg), "\n") {
		if rest, found := strings.CutPrefix(line, "0::"); found && file == "" {
			file = filepath.Join("/sys/fs/cgroup", rest, "memory.events")
		}
		if _, rest, found := strings.Cut(line, ":memory:"); found {
			file = filepath.Join("/sys/fs/cgroup/memory", rest, "memory.oom_control")
		}
	}
	return file
}

// oomKillCount reads the oom_kill counter from file (see oomKillFile); ok
// is false where it cannot be read.
func oomKillCount(file string) (n uint64, ok bool) {
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
