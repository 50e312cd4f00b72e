//go:build linux

package faults

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

func killSelf() {
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

// allocUntilDead allocates and touches memory in 16 MiB blocks until the
// process dies, reporting progress after each block (an engine loading a
// model reports as it goes, so the stall watchdog must not be what ends
// it). With capBytes > 0 it first limits its own address space to
// what it maps now plus capBytes, so the Go runtime, not the machine, runs
// out. It returns only if the process survived far past any sane limit.
func allocUntilDead(capBytes uint64, progress func(step uint64)) error {
	if capBytes > 0 {
		vsz, err := vmSize()
		if err != nil {
			return fmt.Errorf("faults: alloc: %w", err)
		}
		lim := &syscall.Rlimit{Cur: vsz + capBytes, Max: vsz + capBytes}
		if err := syscall.Setrlimit(syscall.RLIMIT_AS, lim); err != nil {
			return fmt.Errorf("faults: alloc: setrlimit: %w", err)
		}
	}
	const block = 16 << 20
	var held [][]byte
	for total := 0; total < 4<<30; total += block {
		b := make([]byte, block)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		held = append(held, b)
		progress(uint64(len(held)))
	}
	return fmt.Errorf("faults: alloc: still alive after 4 GiB (%d blocks)", len(held))
}

// vmSize is the process's mapped address space in bytes.
func vmSize() (uint64, error) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, errors.New("empty /proc/self/statm")
	}
	pages, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil {
		return 0, err
	}
	return pages * uint64(os.Getpagesize()), nil
}

// memoryCgroupLimit returns the memory limit of the cgroup the process is
// in (v1 memory controller or v2 unified).
func memoryCgroupLimit() (uint64, error) {
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0, err
	}
	var file string
	for _, line := range strings.Split(string(cg), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok && file == "" {
			file = filepath.Join("/sys/fs/cgroup", rest, "memory.max")
		}
		if _, rest, ok := strings.Cut(line, ":memory:"); ok {
			file = filepath.Join("/sys/fs/cgroup/memory", rest, "memory.limit_in_bytes")
		}
	}
	if file == "" {
		return 0, errors.New("no memory cgroup")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, fmt.Errorf("%s: no limit", file)
	}
	return strconv.ParseUint(s, 10, 64)
}

func checkCgroupLimit(most uint64) error {
	lim, err := memoryCgroupLimit()
	if err != nil {
		return err
	}
	if lim > most {
		return fmt.Errorf("memory cgroup limit %d bytes is above %d", lim, most)
	}
	return nil
}

// joinCgroup moves the process into the cgroup dir.
func joinCgroup(dir string) error {
	return os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0)
}

func writeGarbageStdout() {
	_, _ = syscall.Write(1, []byte("\x00\xffthis is not a go-plugin line|||\n1|2|tcp|nowhere|grpc\n"))
}

// breakSockets shuts down every socket the process holds (the gRPC
// listener and connections) without exiting.
func breakSockets() {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil || !strings.HasPrefix(target, "socket:") {
			continue
		}
		_ = syscall.Shutdown(fd, syscall.SHUT_RDWR)
	}
}
