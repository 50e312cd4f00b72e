// Package reaper keeps a record of the plugin processes the agent starts,
// in the agent's state dir, and at the next start kills those an earlier
// run left behind. A plugin normally dies with the supervisor (its own
// process group and a parent-death signal); the reaper is the backstop for
// what escapes that: a supervisor killed between fork and prctl, a plugin
// that reset its own parent-death signal, a platform without one.
//
// A record names a pid, the process's start time in clock ticks since boot
// and the boot id, read from /proc when the process started. A leftover is
// killed only while all three still match, so a recycled pid is never
// killed. Only the agent imports this package.
package reaper

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/hashicorp/go-hclog"
)

// Records is the set of live plugin processes, one small file per pid in a
// directory. Its methods are safe for concurrent use (each touches only its
// pid's file).
type Records struct {
	dir string
	log hclog.Logger
}

// Open returns the records kept in dir, creating it (mode 0700).
func Open(dir string, log hclog.Logger) (*Records, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("reaper: %w", err)
	}
	return &Records{dir: dir, log: log.Named("reaper")}, nil
}

// Identity is what tells one process from a later one with the same pid.
type Identity struct {
	Pid       int
	StartTime uint64 // field 22 of /proc/<pid>/stat
	BootID    string
}

// Record notes that pid is a plugin this agent started. A process already
// gone (or whose identity cannot be read) is not recorded.
func (r *Records) Record(pid int) {
	id, err := Identify(pid)
	if err != nil {
		r.log.Debug("plugin not recorded", "pid", pid, "error", err)
		return
	}
	body := fmt.Sprintf("%d %d %s\n", id.Pid, id.StartTime, id.BootID)
	if err := os.WriteFile(r.path(pid), []byte(body), 0o600); err != nil {
		r.log.Warn("plugin pid record not written", "pid", pid, "error", err)
	}
}

// Forget removes pid's record once the process is gone.
func (r *Records) Forget(pid int) {
	if err := os.Remove(r.path(pid)); err != nil && !errors.Is(err, os.ErrNotExist) {
		r.log.Warn("plugin pid record not removed", "pid", pid, "error", err)
	}
}

func (r *Records) path(pid int) string { return filepath.Join(r.dir, strconv.Itoa(pid)) }

// Reap kills the recorded processes of an earlier run that still run with
// the recorded identity, together with their process groups, and removes
// every record. It returns the pids it killed. Call it once at start-up,
// before any plugin starts. A record that cannot be parsed is removed and
// reported in the error; the others are still handled.
func (r *Records) Reap() (killed []int, err error) {
	entries, rerr := os.ReadDir(r.dir)
	if rerr != nil {
		return nil, fmt.Errorf("reaper: %w", rerr)
	}
	var errs []error
	for _, e := range entries {
		path := filepath.Join(r.dir, e.Name())
		rec, perr := parseRecord(e.Name(), path)
		if perr != nil {
			errs = append(errs, perr)
			_ = os.Remove(path)
			continue
		}
		now, ierr := Identify(rec.Pid)
		switch {
		case ierr != nil:
			// Gone: nothing to do.
		case now != rec:
			r.log.Info("recorded plugin pid now belongs to another process; left alone", "pid", rec.Pid)
		case rec.Pid == os.Getpid():
			// Never ourselves, whatever the record says.
		default:
			if kerr := killGroup(rec.Pid); kerr != nil {
				errs = append(errs, fmt.Errorf("reaper: kill leftover plugin %d: %w", rec.Pid, kerr))
				break
			}
			r.log.Warn("killed a plugin left over from an earlier run", "pid", rec.Pid)
			killed = append(killed, rec.Pid)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("reaper: %w", err))
		}
	}
	return killed, errors.Join(errs...)
}

// parseRecord reads the record file at path, named name.
func parseRecord(name, path string) (Identity, error) {
	pid, err := strconv.Atoi(name)
	if err != nil || pid <= 1 || strconv.Itoa(pid) != name {
		return Identity{}, fmt.Errorf("reaper: stray file %q in the records dir", name)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return Identity{}, fmt.Errorf("reaper: record %s: %w", name, err)
	}
	f := strings.Fields(string(b))
	if len(f) != 3 {
		return Identity{}, fmt.Errorf("reaper: record %s: malformed", name)
	}
	rpid, err1 := strconv.Atoi(f[0])
	start, err2 := strconv.ParseUint(f[1], 10, 64)
	if err1 != nil || err2 != nil || rpid != pid {
		return Identity{}, fmt.Errorf("reaper: record %s: malformed", name)
	}
	return Identity{Pid: pid, StartTime: start, BootID: f[2]}, nil
}

// Identify reads pid's identity from /proc.
func Identify(pid int) (Identity, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return Identity{}, err
	}
	// The command name is in parentheses and may hold spaces or ")".
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return Identity{}, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); starttime is field 22.
	if len(f) < 20 {
		return Identity{}, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	if f[0] == "Z" {
		return Identity{}, fmt.Errorf("process %d is a zombie", pid)
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return Identity{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return Identity{}, err
	}
	return Identity{Pid: pid, StartTime: start, BootID: strings.TrimSpace(string(boot))}, nil
}

// killGroup kills pid's process group when pid leads one (plugins do), and
// pid alone otherwise.
func killGroup(pid int) error {
	if pgid, err := syscall.Getpgid(pid); err == nil && pgid == pid {
		return syscall.Kill(-pid, syscall.SIGKILL)
	}
	return syscall.Kill(pid, syscall.SIGKILL)
}
