package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/stokerhq/stoker/plugins"
)

// Environment variables read at start-up (see the package doc).
const (
	EnvStart      = "STOKER_FAULTS_START"
	EnvDescribe   = "STOKER_FAULTS_DESCRIBE"
	EnvCgroup     = "STOKER_FAULTS_CGROUP"
	EnvOnlyIfFile = "STOKER_FAULTS_ONLY_IF_FILE"
	EnvJob        = "STOKER_FAULTS_JOB"
	EnvDevice     = "STOKER_FAULTS_DEVICE"
)

// EngineID is the ModelSource engine id the plugin serves.
const EngineID = "faults"

// Models are the advertised model ids per kind.
var Models = map[plugins.TaskKind][]string{
	plugins.KindLLM:   {"faults-llm"},
	plugins.KindImage: {"faults-image"},
}

// Engine is the fault-injection engine. Its zero value is not usable; call
// New.
type Engine struct {
	log hclog.Logger
	env func(string) string
}

// New returns the engine. env looks up start-up settings (os.Getenv in the
// plugin's main).
func New(log hclog.Logger, env func(string) string) *Engine {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Engine{log: log, env: env}
}

// startFault returns the value of a start-up fault variable, or "" when it
// is unset or disarmed by EnvOnlyIfFile.
func startFault(env func(string) string, key string) string {
	v := env(key)
	if v == "" {
		return ""
	}
	if f := env(EnvOnlyIfFile); f != "" {
		if _, err := os.Stat(f); err != nil {
			return ""
		}
	}
	return v
}

// Describe reports the faults engine, or lies as EnvDescribe asks.
func (e *Engine) Describe(ctx context.Context) (*plugins.Description, error) {
	d := &plugins.Description{
		Name: "faults", Version: "0.1.0", ContractVersion: plugins.ContractVersion,
		Engines: []string{EngineID},
		Kinds:   []plugins.TaskKind{plugins.KindImage, plugins.KindLLM},
		Models:  Models,
		Device:  plugins.Device{Backend: "cpu", Name: "fault injector"},
		Ready:   true,
	}
	if f := e.env(EnvDevice); f != "" {
		dev, err := readDevice(f)
		if err != nil {
			return nil, fmt.Errorf("faults: %s: %w", EnvDevice, err)
		}
		d.Device = dev
	}
	switch lie := startFault(e.env, EnvDescribe); lie {
	case "":
	case "wrong-contract":
		d.ContractVersion = plugins.ContractVersion + 98
	case "bogus-kinds":
		d.Kinds = []plugins.TaskKind{"teleport"}
		d.Models = map[plugins.TaskKind][]string{"teleport": {"faults-teleport"}}
	case "no-engines":
		d.Engines = nil
	case "hang":
		<-ctx.Done()
		return nil, ctx.Err()
	case "huge":
		return hugeDescription(d, 100_000), nil
	case "many-models":
		return hugeDescription(d, 2000), nil
	default:
		return nil, fmt.Errorf("faults: unknown %s %q", EnvDescribe, lie)
	}
	return d, nil
}

// readDevice reads the device to report from file: one line "<backend>
// <total bytes> <free bytes> <name...>", read again at every Describe.
func readDevice(file string) (plugins.Device, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return plugins.Device{}, err
	}
	f := strings.Fields(string(b))
	if len(f) < 4 {
		return plugins.Device{}, fmt.Errorf("%s: want \"<backend> <total bytes> <free bytes> <name>\", got %q", file, b)
	}
	total, err1 := strconv.ParseUint(f[1], 10, 64)
	free, err2 := strconv.ParseUint(f[2], 10, 64)
	if err1 != nil || err2 != nil {
		return plugins.Device{}, fmt.Errorf("%s: memory %q %q: want byte counts", file, f[1], f[2])
	}
	return plugins.Device{Backend: f[0], Name: strings.Join(f[3:], " "), MemoryTotal: total, MemoryFree: free}, nil
}

// Fault is a parsed prompt: the fault's name and its argument (after '=').
type Fault struct {
	Name string
	Arg  string
}

// ParseFault reads the fault from a prompt's first word.
func ParseFault(prompt string) Fault {
	word, _, _ := strings.Cut(strings.TrimSpace(prompt), " ")
	name, arg, _ := strings.Cut(word, "=")
	return Fault{Name: name, Arg: arg}
}

// Run injects the fault the prompt names, or answers normally.
func (e *Engine) Run(ctx context.Context, req *plugins.RunRequest, ev plugins.Events) error {
	if req.Task.Kind != plugins.KindLLM && req.Task.Kind != plugins.KindImage {
		return plugins.Errorf(plugins.ErrUnsupported, "faults serves llm and image, not %s", req.Task.Kind)
	}
	if req.Task.Kind == plugins.KindLLM && req.Task.LLM == nil || req.Task.Kind == plugins.KindImage && req.Task.Image == nil {
		return plugins.Errorf(plugins.ErrBadInput, "%s task without parameters", req.Task.Kind)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	prompt := req.Task.Prompt()
	if job := startFault(e.env, EnvJob); job != "" {
		prompt = job // every job injects it, whatever its prompt
	}
	f := ParseFault(prompt)
	switch f.Name {
	case "segv", "segv-raw", "abort", "panic", "exit", "sigkill", "alloc", "oom-kernel", "break-transport":
		announce(f.Name)
	}
	switch f.Name {
	case "segv":
		cSegv(false)
	case "segv-raw":
		cSegv(true)
	case "abort":
		cAbort()
	case "panic":
		panic(fmt.Sprintf("faults: injected panic in job %s", req.JobID))
	case "exit":
		code := 1
		if f.Arg != "" {
			n, err := strconv.Atoi(f.Arg)
			if err != nil {
				return plugins.Errorf(plugins.ErrBadInput, "exit=%q: %w", f.Arg, err)
			}
			code = n
		}
		os.Exit(code)
	case "sigkill":
		killSelf()
	case "hang":
		e.log.Info("hanging without a word", "job_id", req.JobID)
		select {} // ignores cancellation on purpose: only a kill ends it
	case "progress-hang":
		return tick(ctx, ev, 0)
	case "sleep":
		d, err := time.ParseDuration(f.Arg)
		if err != nil {
			return plugins.Errorf(plugins.ErrBadInput, "sleep=%q: %w", f.Arg, err)
		}
		if err := tick(ctx, ev, d); err != nil {
			return err
		}
	case "alloc":
		return allocUntilDead(256<<20, func(n uint64) { _ = ev.Progress(n, 0, "block") })
	case "oom-kernel":
		if err := checkCgroupLimit(1 << 30); err != nil {
			return plugins.Errorf(plugins.ErrEngine, "oom-kernel refused: %w", err)
		}
		return allocUntilDead(0, func(n uint64) { _ = ev.Progress(n, 0, "block") })
	case "env":
		// What the plugin's environment holds: how a test sees what the
		// supervisor handed its plugins.
		v, set := os.LookupEnv(f.Arg)
		js, err := json.Marshal(map[string]any{"fault": "env", "name": f.Arg, "value": v, "set": set})
		if err != nil {
			return err
		}
		return ev.Result(js)
	case "stdout-garbage":
		writeGarbageStdout()
	case "break-transport":
		breakSockets()
		// Live on so the host sees a broken stream from a live process;
		// the host kills the process group.
		select {}
	}
	if handled, err := e.hostile(ctx, req, f, ev); handled {
		return err
	}
	return answer(req, prompt, ev)
}

// tick reports progress every 50ms until d has passed (forever when d is
// 0) or ctx is done.
func tick(ctx context.Context, ev plugins.Events, d time.Duration) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	var end <-chan time.Time
	if d > 0 {
		timer := time.NewTimer(d)
		defer timer.Stop()
		end = timer.C
	}
	for step := uint64(0); ; step++ {
		if err := ev.Progress(step, 0, "tick"); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return plugins.Errorf(plugins.ErrCancelled, "faults: cancelled: %w", ctx.Err())
		case <-end:
			return nil
		case <-t.C:
		}
	}
}

func answer(req *plugins.RunRequest, prompt string, ev plugins.Events) error {
	if err := ev.Progress(1, 1, "step"); err != nil {
		return err
	}
	if req.Task.Kind == plugins.KindImage {
		var buf bytes.Buffer
		img := image.NewGray(image.Rect(0, 0, 8, 8))
		for i := range img.Pix {
			img.Pix[i] = byte(i * 4)
		}
		img.Set(0, 0, color.Gray{Y: byte(len(prompt))})
		if err := png.Encode(&buf, img); err != nil {
			return plugins.Errorf(plugins.ErrEngine, "encode png: %w", err)
		}
		return ev.Output("png", buf.Bytes())
	}
	js, err := json.Marshal(map[string]any{"fault": "ok", "echo": prompt, "pid": os.Getpid()})
	if err != nil {
		return err
	}
	return ev.Result(js)
}

// announce writes the line the crash report's stderr tail will show. It
// writes to file descriptor 2 itself, as C code would: after plugins.Serve,
// os.Stderr is go-plugin's pipe to the host's stdio stream, which a dying
// process does not flush.
func announce(name string) {
	line := fmt.Sprintf("faults: injecting %s pid=%d at=%d\n", name, os.Getpid(), time.Now().UnixNano())
	_, _ = syscall.Write(2, []byte(line))
}
