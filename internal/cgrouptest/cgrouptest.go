// Package cgrouptest makes memory cgroups for the tests that want the
// kernel's OOM killer to act on a plugin. It is for tests; any package of
// the module may import it.
package cgrouptest

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Memory makes a v1 memory cgroup named name-<pid> under the test's own,
// limited to limit bytes (memory, and memory plus swap where the kernel
// accounts swap), and removes it when the test ends: by then every process
// put in it must be dead.
func Memory(t testing.TB, name string, limit int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	var base string
	for line := range strings.SplitSeq(string(b), "\n") {
		if _, rest, ok := strings.Cut(line, ":memory:"); ok {
			base = filepath.Join("/sys/fs/cgroup/memory", rest)
		}
	}
	if base == "" {
		t.Fatalf("no v1 memory cgroup in /proc/self/cgroup:\n%s", b)
	}
	dir := filepath.Join(base, name+"-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("make memory cgroup: %v", err)
	}
	t.Cleanup(func() {
		if err := os.Remove(dir); err != nil {
			t.Errorf("remove cgroup %s: %v", dir, err)
		}
	})
	if err := os.WriteFile(filepath.Join(dir, "memory.limit_in_bytes"), []byte(strconv.Itoa(limit)), 0); err != nil {
		t.Fatalf("limit cgroup: %v", err)
	}
	// Absent when the kernel does not account swap.
	_ = os.WriteFile(filepath.Join(dir, "memory.memsw.limit_in_bytes"), []byte(strconv.Itoa(limit)), 0)
	return dir
}
