//go:build llamacpp || whispercpp || sdcpp || onnx

package agent_test

// The Python example plugin (espeak-tts-plugin) end to end: built
// by its build.sh, run by the agent from its plugin dir like any plugin,
// serving the dev catalog's "espeak" model (devmodels.AddToCatalog adds it
// when espeak-ng is installed; scripts/install-engines.sh installs it, so
// CI runs these tests).

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/supervisor/internal/devmodels"
	"github.com/stokerhq/stoker/supervisor/internal/devstudio"
	"github.com/stokerhq/stoker/supervisor/internal/engines"
)

// buildEspeakPlugin makes the Python plugin (a zipapp) once per test
// binary run, with the build script scripts/build.sh uses.
var buildEspeakPlugin = sync.OnceValues(func() (string, error) {
	out := filepath.Join(binDir, "engines", "espeak-tts-plugin")
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	b, err := exec.Command("bash", "../../../espeak-tts-plugin/build.sh", out).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("espeak-tts-plugin/build.sh (scripts/install-engines.sh installs protoc and grpc_python_plugin): %w\n%s", err, b)
	}
	return out, nil
})

// wavPCM returns the sample data of a RIFF WAV (its "data" chunk) and its
// format chunk.
func wavPCM(tb testing.TB, b []byte) (fmtChunk, data []byte) {
	tb.Helper()
	if len(b) < 12 || string(b[:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		tb.Fatalf("not a WAV file (%d bytes, starts %q)", len(b), b[:min(len(b), 12)])
	}
	for p := 12; p+8 <= len(b); {
		id, n := string(b[p:p+4]), int(binary.LittleEndian.Uint32(b[p+4:p+8]))
		body := b[p+8 : min(len(b), p+8+n)]
		switch id {
		case "fmt ":
			fmtChunk = body
		case "data":
			data = body
		}
		p += 8 + n + n%2
	}
	if fmtChunk == nil || data == nil {
		tb.Fatalf("WAV without fmt or data chunk (%d bytes)", len(b))
	}
	return fmtChunk, data
}

func startEspeakStack(tb testing.TB, maxAttempts int) *engineStack {
	tb.Helper()
	if _, err := exec.LookPath("espeak-ng"); err != nil {
		tb.Fatalf("espeak-ng is not installed (scripts/install-engines.sh installs it): %v", err)
	}
	s := startEngineStack(tb, engineOptions{plugins: []string{"espeak-tts-plugin"}, maxAttempts: maxAttempts})
	if _, ok := s.catalog.Get(devmodels.EspeakModel); !ok {
		tb.Fatalf("the dev catalog has no %q model with espeak-ng installed", devmodels.EspeakModel)
	}
	return s
}

// TestEspeakPluginMatchesEspeakNG: a job for the dev catalog's "espeak"
// model, through the dev studio, the agent and the Python plugin, yields a
// WAV whose samples are those `espeak-ng -w` writes for the same text,
// voice and rate.
func TestEspeakPluginMatchesEspeakNG(t *testing.T) {
	s := startEspeakStack(t, 1)
	const text = "The forge is lit. Stoker speaks through espeak, from a plugin written in Python."
	cases := []struct {
		voice, language string
		speed           float64
		args            []string // espeak-ng's for the same voice and rate
	}{
		{"en-us", "", 1.2, []string{"-v", "en-us", "-s", "210"}},
		{"default", "", 0, []string{"-s", "175"}},
		{"f3", "fr", 0.8, []string{"-v", "fr+f3", "-s", "140"}}, // a variant of the language's voice
	}
	for _, c := range cases {
		t.Run(c.voice+"-"+c.language, func(t *testing.T) {
			task := map[string]any{"kind": "audio_tts", "text": text, "voice": c.voice, "language": c.language, "ext": "WAV"}
			if c.speed != 0 {
				task["speed"] = c.speed
			}
			v := s.submit(t, devmodels.EspeakModel, task)
			if v.Status != devstudio.JobCompleted {
				t.Fatalf("job %s: %s: %s", v.ID, v.Status, v.Error)
			}
			got := s.result(t, v)
			ref := filepath.Join(t.TempDir(), "out.wav")
			args := append([]string{"-w", ref}, c.args...)
			if out, err := exec.Command("espeak-ng", append(args, text)...).CombinedOutput(); err != nil {
				t.Fatalf("espeak-ng: %v\n%s", err, out)
			}
			want, err := os.ReadFile(ref)
			if err != nil {
				t.Fatal(err)
			}
			gf, gd := wavPCM(t, got)
			wf, wd := wavPCM(t, want)
			if !bytes.Equal(gf, wf) {
				t.Fatalf("format chunk %x, espeak-ng's %x", gf, wf)
			}
			if len(gd) < 1000 || !bytes.Equal(gd, wd) {
				t.Fatalf("samples differ from espeak-ng's: %d bytes against %d", len(gd), len(wd))
			}
			t.Logf("%s: %d bytes of samples, identical to espeak-ng -w", c.voice, len(gd))
		})
	}
	t.Run("refusals", func(t *testing.T) {
		for _, c := range []struct {
			task map[string]any
			want string
		}{
			{map[string]any{"kind": "audio_tts", "text": "hi", "ext": "mp3"}, "mp3"},
			{map[string]any{"kind": "audio_tts", "text": "hi", "voice": "no-such-voice"}, "no-such-voice"},
			{map[string]any{"kind": "audio_tts", "text": "hi", "speed": 5}, "words per minute"},
			{map[string]any{"kind": "audio_tts", "text": "hi", "language": "xx-nowhere"}, "xx-nowhere"},
		} {
			v := s.submit(t, devmodels.EspeakModel, c.task)
			if v.Status != devstudio.JobFailed || v.Retryable || !strings.Contains(v.Error, c.want) {
				t.Errorf("%v: %s retryable=%v %q, want a final fail naming %q", c.task, v.Status, v.Retryable, v.Error, c.want)
			}
		}
	})
}

// speakingWriter sends the espeak_pid of each "speaking" line the plugin
// logs to ch, dropping it if ch is full. It reads the line as the agent's
// log renders it (espeak_pid=N) and as the plugin writes it to stderr
// ("espeak_pid": N).
type speakingWriter chan int

func (w speakingWriter) Write(p []byte) (int, error) {
	line := string(p)
	i := strings.Index(line, "speaking")
	if i < 0 {
		return len(p), nil
	}
	j := strings.Index(line[i:], "espeak_pid")
	if j < 0 {
		return len(p), nil
	}
	rest := strings.TrimLeft(line[i+j+len("espeak_pid"):], `"=: `)
	end := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
	if end < 0 {
		end = len(rest)
	}
	if pid, err := strconv.Atoi(rest[:end]); err == nil {
		select {
		case w <- pid:
		default:
		}
	}
	return len(p), nil
}

// TestEspeakPluginKilledMidJob: SIGKILL to the Python process while it
// speaks a long text fails the job retryably (the dev studio, allowed one
// attempt, keeps the fail), the agent relaunches the plugin and serves the
// next job.
func TestEspeakPluginKilledMidJob(t *testing.T) {
	s := startEspeakStack(t, 1)
	first := s.waitPlugin(t, "espeak-tts-plugin", func(st engines.PluginStatus) bool { return st.State == engines.StateReady && st.Pid > 0 })
	speaking := make(chan int, 1)
	sink := hclog.NewSinkAdapter(&hclog.LoggerOptions{Level: hclog.Info, Output: speakingWriter(speaking)})
	s.log.RegisterSink(sink)
	t.Cleanup(func() { s.log.DeregisterSink(sink) })
	long := strings.Repeat("The furnace roars while the stoker shovels coal into the firebox, and the engine climbs the long grade. ", 400)
	id, err := s.studio.Submit(devmodels.EspeakModel, []byte(fmt.Sprintf(`{"kind":"audio_tts","text":%q}`, long)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The plugin logs "speaking" with espeak-ng's pid once the child runs;
	// the agent folds that line into its log.
	var espeakPid int
	select {
	case espeakPid = <-speaking:
	case <-ctx.Done():
		t.Fatal("the plugin never logged that espeak-ng speaks")
	}
	_, killed := s.killMidJob(ctx, t, id, first.Pid)
	// espeak-ng, in the plugin's process group, dies with it.
	pidfd, err := unix.PidfdOpen(espeakPid, 0)
	if err == nil {
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}, 10_000)
		unix.Close(pidfd)
		if err != nil || n != 1 {
			t.Fatalf("espeak-ng (pid %d) outlived the killed plugin by 10 s (poll %d, %v)", espeakPid, n, err)
		}
	} else if err != unix.ESRCH {
		t.Fatal(err)
	}
	again := s.waitPlugin(t, "espeak-tts-plugin", func(st engines.PluginStatus) bool {
		return st.State == engines.StateReady && st.Pid > 0 && st.Pid != first.Pid
	})
	t.Logf("relaunched as pid %d %v after the kill (restarts %d)", again.Pid, time.Since(killed).Round(time.Millisecond), again.Restarts)
	next := s.submit(t, devmodels.EspeakModel, map[string]any{"kind": "audio_tts", "text": "Still here."})
	if next.Status != devstudio.JobCompleted {
		t.Fatalf("next job: %s %q", next.Status, next.Error)
	}
	if _, d := wavPCM(t, s.result(t, next)); len(d) == 0 {
		t.Fatal("next job: no samples")
	}
}

// TestEspeakPluginCancel: cancelling a job (the host ends the call) kills
// the espeak-ng child at once, and the plugin serves the next job.
func TestEspeakPluginCancel(t *testing.T) {
	bin, err := buildEspeakPlugin()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "espeak-tts-plugin")
	linkPlugin(t, bin, path)
	speaking := make(chan int, 1)
	p, err := plugins.Launch(plugins.LaunchConfig{Path: path, Env: plugins.Env(os.Environ(), nil), Stderr: speakingWriter(speaking)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	long := strings.Repeat("A long speech that the caller will not wait for. ", 8000) // about 20 s of synthesis here
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- p.Run(ctx, &plugins.RunRequest{JobID: "c", Model: "espeak", Engine: "espeak-ng",
			Task: plugins.Task{Kind: plugins.KindTTS, TTS: &plugins.TTSTask{Text: long}}}, &discardEvents{})
	}()
	var pid int
	select {
	case pid = <-speaking:
	case err := <-done:
		t.Fatalf("run ended before espeak-ng ran: %v", err)
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatalf("espeak-ng (pid %d) is gone before the cancel: %v", pid, err)
	}
	defer unix.Close(pidfd)
	cancel()
	if n, err := unix.Poll([]unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}, 10_000); err != nil || n != 1 {
		t.Fatalf("espeak-ng (pid %d) still runs 10 s after the cancel (poll %d, %v)", pid, n, err)
	}
	if err := <-done; err == nil {
		t.Fatal("a cancelled run returned no error")
	}
	var ev discardEvents
	err = p.Run(context.Background(), &plugins.RunRequest{JobID: "n", Model: "espeak", Engine: "espeak-ng",
		Task: plugins.Task{Kind: plugins.KindTTS, TTS: &plugins.TTSTask{Text: "Next."}}}, &ev)
	if err != nil || ev.bytes == 0 {
		t.Fatalf("next run: %v (%d bytes)", err, ev.bytes)
	}
}
