package releasetest

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stokerhq/stoker/internal/syncbuf"
)

// testUser runs the release when the test runs as root.
const testUser = "stoker-release-test"

// productionPlugins are what bin/ holds besides stoker; nothing else.
var productionPlugins = []string{"llamacpp-plugin", "onnx-plugin", "sdcpp-plugin", "whisper-plugin"}

// releaseDir holds what the tests build, once per test binary run
// (TestMain removes it).
var releaseDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "stoker-releasetest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	releaseDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testVersion is the version the test's release carries.
const testVersion = "9.8.7-test"

// buildRelease runs scripts/release.sh once per test binary run and
// returns the tarball's path.
var buildRelease = sync.OnceValues(func() (string, error) {
	// Read here so that go test's cache sees a change to the scripts and
	// units (it records the files the test binary opens, not those its
	// subprocesses do).
	for _, pat := range []string{"../../../scripts/*.sh", "../../../scripts/engines/*.sh", "../../../scripts/systemd/*"} {
		files, _ := filepath.Glob(pat)
		for _, f := range files {
			os.ReadFile(f)
		}
	}
	cmd := exec.Command("bash", "../../../scripts/release.sh")
	cmd.Env = append(os.Environ(), "STOKER_RELEASE_DIR="+releaseDir, "STOKER_RELEASE_VERSION="+testVersion)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("release.sh: %v\n%s", err, tail(stderr.String(), 4000))
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1], nil
})

func releaseTarball(t *testing.T) string {
	t.Helper()
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skipf("releases are built for linux-amd64, not %s-%s", runtime.GOOS, runtime.GOARCH)
	}
	tarball, err := buildRelease()
	if err != nil {
		t.Fatal(err)
	}
	return tarball
}

// TestRelease checks the release from every side.
func TestRelease(t *testing.T) {
	tarball := releaseTarball(t)
	if filepath.Base(tarball) != "stoker-"+testVersion+"-linux-amd64.tar.gz" {
		t.Fatalf("release.sh printed %q", tarball)
	}
	sumCheck := exec.Command("sha256sum", "-c", filepath.Base(tarball)+".sha256")
	sumCheck.Dir = filepath.Dir(tarball)
	if out, err := sumCheck.CombinedOutput(); err != nil {
		t.Fatalf("the tarball's checksum: %v\n%s", err, out)
	}

	// The documented install: a fresh directory others can enter, the
	// files owned by root (or the installing user).
	base := t.TempDir()
	for _, d := range []string{base, filepath.Dir(base)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(base, "opt", "stoker-"+testVersion)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("tar", "-xzf", tarball, "--strip-components=1", "--no-same-owner", "-C", dir).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	check := exec.Command("sha256sum", "-c", "--quiet", "SHA256SUMS")
	check.Dir = dir
	if out, err := check.CombinedOutput(); err != nil {
		t.Fatalf("SHA256SUMS: %v\n%s", err, out)
	}

	t.Run("contents", func(t *testing.T) { checkContents(t, dir) })
	t.Run("rpaths", func(t *testing.T) { checkRpaths(t, dir) })
	t.Run("version", func(t *testing.T) {
		out, err := exec.Command(filepath.Join(dir, "bin", "stoker"), "version").CombinedOutput()
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"stoker " + testVersion, "commit:", "go:      go1.", "llama.cpp v", "whisper.cpp ", "stable-diffusion.cpp ", "onnxruntime "} {
			if !strings.Contains(string(out), want) {
				t.Errorf("stoker version lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("serves tiny-llama as an unprivileged user", func(t *testing.T) { serveTinyLlama(t, base, dir) })
}

func checkContents(t *testing.T, dir string) {
	bins, _ := filepath.Glob(filepath.Join(dir, "bin", "*"))
	var names []string
	for _, b := range bins {
		fi, err := os.Lstat(b)
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o755 {
			t.Errorf("bin/%s: %v, mode %v: want a plain executable file", filepath.Base(b), err, fi.Mode())
		}
		names = append(names, filepath.Base(b))
	}
	if want := append([]string{"stoker"}, productionPlugins...); !slices.Equal(names, sortedCopy(want)) {
		t.Errorf("bin/ holds %v, want %v (no test, synthetic, faults or example plugin)", names, sortedCopy(want))
	}
	for _, f := range []string{
		"systemd/stoker.service", "systemd/stoker.toml.example", "docs/operations.md", "docs/README.md",
		"completion/stoker.bash", "completion/_stoker", "VERSION", "SHA256SUMS",
		"lib/libllama.so.0", "lib/libwhisper.so.1", "lib/libstable-diffusion.so", "lib/libonnxruntime.so.1",
	} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("the release lacks %s: %v", f, err)
		}
	}
	sums, _ := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
	for _, f := range []string{"bin/stoker", "bin/llamacpp-plugin", "lib/libllama.so.0.4.0", "systemd/stoker.service"} {
		if !strings.Contains(string(sums), "  "+f+"\n") {
			t.Errorf("SHA256SUMS does not list %s", f)
		}
	}
}

// checkRpaths: every ELF file's RUNPATH is relative to itself ($ORIGIN),
// nothing names the building machine's directories, and the loader finds
// every library of every binary inside the release.
func checkRpaths(t *testing.T, dir string) {
	var files []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && (strings.HasPrefix(p, filepath.Join(dir, "bin")) || strings.HasPrefix(p, filepath.Join(dir, "lib"))) {
			files = append(files, p)
		}
		return nil
	})
	for _, p := range files {
		f, err := elf.Open(p)
		if err != nil {
			t.Errorf("%s: not ELF: %v", p, err)
			continue
		}
		for _, tag := range []elf.DynTag{elf.DT_RPATH, elf.DT_RUNPATH} {
			vals, _ := f.DynString(tag)
			for _, v := range vals {
				for _, entry := range strings.Split(v, ":") {
					if !strings.HasPrefix(entry, "$ORIGIN") {
						t.Errorf("%s: %v %q has %q, not relative to $ORIGIN", p, tag, v, entry)
					}
				}
			}
		}
		f.Close()
		// The engines' C++ sources name themselves (__FILE__, in their
		// assertion messages) by the path they were built at; any other
		// mention of the build user's engines cache would be a path the
		// release might try to use.
		home, _ := os.UserHomeDir()
		if b, _ := os.ReadFile(p); home != "" && home != "/" {
			for _, str := range stringsWith(b, filepath.Join(home, ".cache", "stoker")) {
				if !sourceFile.MatchString(str) {
					t.Errorf("%s names the build machine's %q", p, str)
				}
			}
		}
	}
	for _, name := range productionPlugins {
		exe := filepath.Join(dir, "bin", name)
		cmd := exec.Command("ldd", exe)
		cmd.Env = []string{"PATH=/usr/bin:/bin"}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("ldd %s: %v\n%s", name, err, out)
			continue
		}
		for _, line := range strings.Split(string(out), "\n") {
			fields := strings.Fields(line)
			if len(fields) < 3 || fields[1] != "=>" {
				continue
			}
			lib, path := fields[0], fields[2]
			switch {
			case path == "not":
				t.Errorf("%s: %s not found", name, lib)
			case strings.HasPrefix(lib, "libllama") || strings.HasPrefix(lib, "libggml") || strings.HasPrefix(lib, "libwhisper") || strings.HasPrefix(lib, "libstable-diffusion"):
				if !strings.HasPrefix(path, filepath.Join(dir, "bin")+"/../lib/") {
					t.Errorf("%s: %s resolves to %s, outside the release", name, lib, path)
				}
			}
		}
	}
}

// sourceFile matches a C or C++ source file's path as __FILE__ gives it,
// alone or opening an assertion's message ("file.h:704: exception: …").
var sourceFile = regexp.MustCompile(`^/[^ :]*\.(c|cc|cpp|cxx|h|hpp|cu|m)(:[0-9]+: .*)?$`)

// stringsWith returns, for each place sub occurs in b, the string from
// there to the next NUL.
func stringsWith(b []byte, sub string) []string {
	var out []string
	for i := 0; ; {
		j := bytes.Index(b[i:], []byte(sub))
		if j < 0 {
			return out
		}
		start := i + j
		end := bytes.IndexByte(b[start:], 0)
		if end < 0 {
			end = len(b) - start
		}
		out = append(out, string(b[start:start+end]))
		i = start + end
	}
}

// runAs is who runs the release: a system user the test makes when it runs
// as root, else the test's own user.
type runAs struct {
	uid, gid int
	name     string
	cred     *syscall.Credential
}

func unprivileged(t *testing.T) runAs {
	if os.Getuid() != 0 {
		u, _ := user.Current()
		return runAs{uid: os.Getuid(), gid: os.Getgid(), name: u.Username}
	}
	if _, err := user.Lookup(testUser); err != nil {
		out, err := exec.Command("useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", testUser).CombinedOutput()
		if err != nil && !strings.Contains(string(out), "already exists") {
			t.Fatalf("useradd: %v\n%s", err, out)
		}
	}
	u, err := user.Lookup(testUser)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return runAs{uid: uid, gid: gid, name: testUser, cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: false, Groups: []uint32{}}}
}

// command is exe args... run as r, with the bare environment of a service
// (no LD_LIBRARY_PATH, no engines cache).
func (r runAs) command(ctx context.Context, exe string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/nonexistent", "LANG=C.UTF-8", "USER=" + r.name}
	cmd.Dir = "/"
	if r.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: r.cred}
	}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 2 * time.Minute
	return cmd
}

func serveTinyLlama(t *testing.T, base, dir string) {
	r := unprivileged(t)
	stoker := filepath.Join(dir, "bin", "stoker")
	mkdir := func(p string, mode os.FileMode) string {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, r.uid, r.gid); err != nil {
			t.Fatal(err)
		}
		return p
	}
	state := mkdir(filepath.Join(base, "var", "lib", "stoker"), 0o700)
	studioDir := mkdir(filepath.Join(base, "var", "lib", "studio"), 0o700)
	studioAddr, apiAddr := freePort(t), freePort(t)
	etc := filepath.Join(base, "etc", "stoker")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(etc, "stoker.toml")
	example, err := os.ReadFile(filepath.Join(dir, "systemd", "stoker.toml.example"))
	if err != nil {
		t.Fatal(err)
	}
	// The example config, with the studio, state dir and local API of this
	// test (the keys appended win: TOML would refuse a key twice, so they
	// replace the example's lines).
	cfg := replaceKey(string(example), "api_base_url", strconv.Quote("http://"+studioAddr+"/"))
	cfg = replaceKey(cfg, "state_dir", strconv.Quote(state))
	cfg += fmt.Sprintf("listen = %q\nfetch_allow = [\"127.0.0.0/8\"]\n", apiAddr)
	if err := os.WriteFile(config, []byte(cfg), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(config, 0, r.gid); err != nil && os.Getuid() == 0 {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if out, err := r.command(ctx, stoker, "config", "validate", "-config", config).CombinedOutput(); err != nil {
		t.Fatalf("config validate as %s: %v\n%s", r.name, err, out)
	}

	studioURL := startStudio(t, ctx, r, stoker, studioAddr, studioDir)
	var agentLog syncbuf.Buffer
	agentCmd := r.command(ctx, stoker, "agent", "-config", config)
	agentCmd.Stdout, agentCmd.Stderr = &agentLog, &agentLog
	if err := agentCmd.Start(); err != nil {
		t.Fatal(err)
	}
	agentDone := make(chan error, 1)
	go func() { agentDone <- agentCmd.Wait() }()
	defer func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", tail(agentLog.String(), 8000))
		}
	}()

	// Every plugin of the release ready: each found its engine library
	// in lib/.
	var status struct {
		Plugins []struct {
			Name, State, LastError string
			Ready                  bool
		}
	}
	until(t, ctx, agentDone, "every plugin ready", func() bool {
		if getJSON("http://"+apiAddr+"/v1/status", &status) != nil || len(status.Plugins) != len(productionPlugins) {
			return false
		}
		for _, p := range status.Plugins {
			if !p.Ready {
				return false
			}
		}
		return true
	})

	job := serveJob(t, ctx, studioURL, agentDone)
	t.Logf("tiny-llama served by %s: %s", job.Worker, job.Result)

	// stoker ps, as the service user, through the local API.
	out, err := r.command(ctx, stoker, "ps", "-config", config).CombinedOutput()
	if err != nil {
		t.Fatalf("stoker ps: %v\n%s", err, out)
	}
	t.Logf("stoker ps:\n%s", out)
	if !regexpLine(string(out), "llamacpp-plugin", "tiny-llama") {
		t.Errorf("stoker ps does not list tiny-llama resident in llamacpp-plugin:\n%s", out)
	}

	// A stop drains and exits 0.
	agentCmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-agentDone:
		if err != nil {
			t.Errorf("agent after SIGTERM: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the agent did not stop")
	}
}

// startStudio runs `stoker studio` of the release as r on addr, with the
// dev models in dir, auto-approving; it stops when the test ends. It
// returns the studio's URL once its catalog holds tiny-llama.
func startStudio(t *testing.T, ctx context.Context, r runAs, stoker, addr, dir string) string {
	var studioLog syncbuf.Buffer
	studio := r.command(ctx, stoker, "studio", "-listen", addr, "-auto-approve", "-dir", dir)
	studio.Stdout, studio.Stderr = &studioLog, &studioLog
	if err := studio.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- studio.Wait() }()
	t.Cleanup(func() {
		studio.Process.Signal(syscall.SIGTERM)
		<-done
		if t.Failed() {
			t.Logf("studio log:\n%s", tail(studioLog.String(), 4000))
		}
	})
	url := "http://" + addr
	until(t, ctx, done, "the studio's catalog", func() bool {
		var ids []string
		return getJSON(url+"/api/models", &ids) == nil && slices.Contains(ids, "tiny-llama")
	})
	return url
}

// job is a studio job as its API shows it.
type job struct {
	ID, Status, Error, Worker string
	Result                    json.RawMessage
}

// serveJob submits a tiny-llama chat job to the studio and waits until it
// is completed, failing t otherwise.
func serveJob(t *testing.T, ctx context.Context, studioURL string, agentDone <-chan error) job {
	t.Helper()
	var sub struct{ ID string }
	body := `{"model":"tiny-llama","task":{"kind":"llm","messages":[{"role":"user","content":"Say hello"}],"maxTokens":8,"seed":1}}`
	resp, err := http.Post(studioURL+"/api/jobs", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&sub)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || sub.ID == "" {
		t.Fatalf("submit: %s %v", resp.Status, err)
	}
	var j job
	until(t, ctx, agentDone, "the job done", func() bool {
		return getJSON(studioURL+"/api/jobs/"+sub.ID, &j) == nil && (j.Status == "completed" || j.Status == "failed")
	})
	if j.Status != "completed" || len(j.Result) == 0 {
		t.Fatalf("job %s: %s %s %s", sub.ID, j.Status, j.Error, j.Result)
	}
	return j
}

// until polls cond (a real HTTP answer each time) until it holds, failing
// t when ctx ends or the process behind done (the agent) exits first.
func until(t *testing.T, ctx context.Context, done <-chan error, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case err := <-done:
			t.Fatalf("waiting for %s: it exited: %v", what, err)
		case <-tick.C:
		}
	}
}

func getJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v)
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// replaceKey sets a top-level key's line of a TOML text.
func replaceKey(text, key, value string) string {
	var out []string
	done := false
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if !done && strings.HasPrefix(line, key+" =") {
			line, done = key+" = "+value, true
		}
		out = append(out, line)
	}
	if !done {
		out = append([]string{key + " = " + value}, out...)
	}
	return strings.Join(out, "\n") + "\n"
}

// regexpLine reports whether one line holds every word.
func regexpLine(text string, words ...string) bool {
	for _, line := range strings.Split(text, "\n") {
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(line, w)
		}
		if ok {
			return true
		}
	}
	return false
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
