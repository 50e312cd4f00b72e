//go:build llamacpp || whispercpp || sdcpp || onnx

package agent_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stokerhq/stoker/plugins"
)

// The Python plugin's costs next to the Go synthetic plugin's, through the
// host's own plugins.Launch (the engine host's launch path):
//
//	go test -tags "llamacpp whispercpp sdcpp" -run '^$' \
//	  -bench 'BenchmarkPlugin(Startup|TTSJob)' ./supervisor/internal/agent/
//
// BenchmarkPluginStartup: launch (fork, exec from the descriptor,
// handshake, TLS) → Describe → kill, per op. BenchmarkPluginTTSJob: one
// tiny TTS job ("Hi.") on a running plugin per op; for espeak-tts it
// includes espeak-ng's own process start and synthesis, so the plugin's
// overhead is the op minus `espeak-ng -w` run directly (reported as
// espeak-ng-ms for that sub-benchmark).

type discardEvents struct{ bytes int }

func (*discardEvents) Progress(uint64, uint64, string) error { return nil }
func (*discardEvents) Log(string, string) error              { return nil }
func (d *discardEvents) Output(_ string, p []byte) error     { d.bytes += len(p); return nil }
func (*discardEvents) Result([]byte) error                   { return nil }

// benchPlugins returns the two plugins' executables in a plugin dir.
func benchPlugins(b *testing.B) map[string]string {
	b.Helper()
	espeak, err := buildEspeakPlugin()
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	out := map[string]string{}
	for name, src := range map[string]string{"espeak-tts": espeak, "synthetic": filepath.Join(binDir, "synthetic-plugin")} {
		dst := filepath.Join(dir, name+"-plugin")
		linkPlugin(b, src, dst)
		out[name] = dst
	}
	return out
}

func launchBench(b *testing.B, path string) *plugins.Plugin {
	b.Helper()
	p, err := plugins.Launch(plugins.LaunchConfig{Path: path, Env: plugins.Env(os.Environ(), nil)})
	if err != nil {
		b.Fatal(err)
	}
	return p
}

func BenchmarkPluginStartup(b *testing.B) {
	for _, name := range []string{"espeak-tts", "synthetic"} {
		path := benchPlugins(b)[name]
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				p := launchBench(b, path)
				if _, err := p.Describe(context.Background()); err != nil {
					b.Fatal(err)
				}
				p.Kill()
			}
		})
	}
}

func BenchmarkPluginTTSJob(b *testing.B) {
	paths := benchPlugins(b)
	for _, c := range []struct{ name, engine string }{{"espeak-tts", "espeak-ng"}, {"synthetic", "synthetic"}} {
		b.Run(c.name, func(b *testing.B) {
			p := launchBench(b, paths[c.name])
			defer p.Kill()
			req := &plugins.RunRequest{JobID: "bench", Model: "m", Engine: c.engine,
				Task: plugins.Task{Kind: plugins.KindTTS, TTS: &plugins.TTSTask{Text: "Hi.", Ext: "wav"}}}
			for b.Loop() {
				var ev discardEvents
				if err := p.Run(context.Background(), req, &ev); err != nil || ev.bytes == 0 {
					b.Fatalf("run: %v (%d bytes)", err, ev.bytes)
				}
			}
			if c.name == "espeak-tts" {
				out := filepath.Join(b.TempDir(), "ref.wav")
				const n = 20
				start := time.Now()
				for range n {
					if err := execQuiet("espeak-ng", "-w", out, "Hi."); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(time.Since(start).Microseconds())/1000/n, "espeak-ng-ms")
			}
		})
	}
}

func execQuiet(name string, args ...string) error {
	return exec.Command(name, args...).Run()
}
