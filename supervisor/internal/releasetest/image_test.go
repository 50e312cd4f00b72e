package releasetest

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stokerhq/stoker/internal/syncbuf"
)

// imageUID is the image's stoker user (scripts/image.sh).
const imageUID = 10001

// podmanRun are the flags this machine needs to start a container: a
// cgroups v1 host in a sandbox without CAP_SYS_RESOURCE, where crun refuses
// the hybrid cgroup layout and no limit may be raised to the hard one
// (docs/operations.md, "Containers").
var podmanRun = []string{"--runtime", "runc", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"}

// TestImage builds the OCI image of the release with scripts/image.sh (no
// registry: Debian's archive and the release), loads it into podman and
// runs the agent in it against a studio on the host: it serves a
// tiny-llama job, answers /healthz and /readyz, drains on podman stop and,
// restarted on the same state volume, is the same approved worker.
func TestImage(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("image.sh and podman run as root here (debootstrap, chroot, rootful podman)")
	}
	tarball := releaseTarball(t)
	cmd := exec.Command("bash", "../../../scripts/image.sh", tarball)
	var stderr syncbuf.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("image.sh: %v\n%s", err, tail(stderr.String(), 4000))
	}
	archive := strings.TrimSpace(string(b))
	t.Logf("%s", strings.TrimSpace(stderr.String()))
	ref := "localhost/stoker:" + testVersion
	podman := func(args ...string) (string, error) {
		out, err := exec.Command("podman", args...).CombinedOutput()
		return string(out), err
	}
	if out, err := podman("load", "-i", archive); err != nil {
		t.Fatalf("podman load: %v\n%s", err, out)
	}
	t.Cleanup(func() { podman("rmi", "-f", ref) })

	out, err := podman(append(append([]string{"run", "--rm"}, podmanRun...), ref, "version")...)
	if err != nil || !strings.Contains(out, "stoker "+testVersion) || !strings.Contains(out, "llama.cpp") {
		t.Fatalf("podman run %s version: %v\n%s", ref, err, out)
	}

	// The studio on the host, from the release, as an unprivileged user.
	r := unprivileged(t)
	base := t.TempDir()
	os.Chmod(base, 0o755)
	os.Chmod(filepath.Dir(base), 0o755)
	dir := filepath.Join(base, "stoker")
	os.MkdirAll(dir, 0o755)
	if out, err := exec.Command("tar", "-xzf", tarball, "--strip-components=1", "--no-same-owner", "-C", dir).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	studioDir := filepath.Join(base, "studio")
	os.Mkdir(studioDir, 0o700)
	os.Chown(studioDir, r.uid, r.gid)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	studioAddr, apiAddr := freePort(t), freePort(t)
	studioURL := startStudio(t, ctx, r, filepath.Join(dir, "bin", "stoker"), studioAddr, studioDir)

	// The state volume: a host directory the image's user owns, as a
	// DaemonSet's hostPath or a Nomad host volume is.
	state := filepath.Join(base, "state")
	os.Mkdir(state, 0o700)
	os.Chown(state, imageUID, imageUID)
	start := func(name string) <-chan error {
		args := append([]string{"run", "--rm", "--name", name, "--network", "host", "-v", state + ":/var/lib/stoker"}, podmanRun...)
		args = append(args, "-e", "STOKER_API_BASE_URL="+studioURL+"/", "-e", "STOKER_LISTEN="+apiAddr, "-e", "STOKER_FETCH_ALLOW=127.0.0.0/8", ref)
		c := exec.Command("podman", args...)
		var log syncbuf.Buffer
		c.Stdout, c.Stderr = &log, &log
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		t.Cleanup(func() {
			podman("rm", "-f", "-t", "0", name)
			if t.Failed() {
				t.Logf("%s log:\n%s", name, tail(log.String(), 6000))
			}
		})
		return done
	}
	ready := func(done <-chan error) {
		t.Helper()
		until(t, ctx, done, "/healthz and /readyz", func() bool {
			for _, p := range []string{"/healthz", "/readyz"} {
				resp, err := http.Get("http://" + apiAddr + p)
				if err != nil {
					return false
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					return false
				}
			}
			return true
		})
	}
	stop := func(name string, done <-chan error) {
		t.Helper()
		if out, err := podman("stop", "-t", "120", name); err != nil {
			t.Fatalf("podman stop: %v\n%s", err, out)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s after podman stop: %v (want a drain and exit 0)", name, err)
			}
		case <-ctx.Done():
			t.Fatal("the container did not stop")
		}
	}

	first := start("stoker-releasetest-1")
	ready(first)
	j1 := serveJob(t, ctx, studioURL, first)
	t.Logf("tiny-llama served in the container by %s: %s", j1.Worker, j1.Result)
	stop("stoker-releasetest-1", first)

	second := start("stoker-releasetest-2")
	ready(second)
	j2 := serveJob(t, ctx, studioURL, second)
	if j2.Worker != j1.Worker {
		t.Errorf("restarted on the same state volume, the worker is %s, was %s: the approval did not survive", j2.Worker, j1.Worker)
	}
	var regs []map[string]any
	if err := getJSON(studioURL+"/api/registrations", &regs); err != nil || len(regs) != 1 {
		t.Errorf("registrations after a restart: %v %v, want the one of the first start", err, regs)
	}
	stop("stoker-releasetest-2", second)
}
