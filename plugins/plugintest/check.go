package plugintest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/stokerhq/stoker/plugins"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The one definition of "conforms": Check runs the engine contract's checks
// on an Engine, CheckPlugin launches a plugin executable and adds those
// only a process can fail (the handshake, stdout after it, staying alive).
// Conformance renders Check as subtests; `stoker plugin check` renders
// CheckPlugin as one line per check.

// Result is the outcome of one check.
type Result struct {
	// Name is the check, e.g. "describe", "run llm", "cancel".
	Name string
	// Pass says whether the plugin conforms on this point.
	Pass bool
	// Detail is the reason for a failure, or what a pass saw.
	Detail string
}

// Report is the outcome of every check run on one plugin.
type Report struct {
	Results []Result
}

// OK reports whether every check passed (and there was at least one).
func (r *Report) OK() bool {
	if len(r.Results) == 0 {
		return false
	}
	for _, c := range r.Results {
		if !c.Pass {
			return false
		}
	}
	return true
}

// Failed returns the failed checks.
func (r *Report) Failed() []Result {
	var f []Result
	for _, c := range r.Results {
		if !c.Pass {
			f = append(f, c)
		}
	}
	return f
}

// Result returns the check named name.
func (r *Report) Result(name string) (Result, bool) {
	for _, c := range r.Results {
		if c.Name == name {
			return c, true
		}
	}
	return Result{}, false
}

// WriteTo writes one line per check, "PASS name: detail" or "FAIL name:
// reason", then a summary line.
func (r *Report) WriteTo(w io.Writer) (int64, error) {
	var b strings.Builder
	for _, c := range r.Results {
		verdict := "PASS"
		if !c.Pass {
			verdict = "FAIL"
		}
		fmt.Fprintf(&b, "%s %s: %s\n", verdict, c.Name, c.Detail)
	}
	if f := len(r.Failed()); f > 0 || len(r.Results) == 0 {
		fmt.Fprintf(&b, "%d of %d checks failed: the plugin does not conform\n", f, len(r.Results))
	} else {
		fmt.Fprintf(&b, "all %d checks passed\n", len(r.Results))
	}
	n, err := io.WriteString(w, b.String())
	return int64(n), err
}

// add records a check; its detail is made one line.
func (r *Report) add(name string, pass bool, format string, args ...any) {
	detail := strings.Join(strings.Fields(strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", " | ")), " ")
	r.Results = append(r.Results, Result{Name: name, Pass: pass, Detail: detail})
}

// Options tunes Check.
type Options struct {
	// Model is the model id of the sample tasks. (default "conformance")
	Model string
	// Files are the model files every sample task carries, so an engine
	// can be checked on a real model. Without them an engine that needs a
	// model fails its sample task, which passes if the failure is typed.
	Files []plugins.ModelFile
	// Requests, if set, replace the sample task of a kind.
	Requests map[plugins.TaskKind]*plugins.RunRequest
	// CallBound bounds Describe and each sample job. (default 2 min)
	CallBound time.Duration
	// CancelBound bounds how long a cancelled job may take to return.
	// (default the package's CancelBound)
	CancelBound time.Duration

	// exited, if set, is closed once the engine's process is gone: the
	// checks stop there rather than fail one after another for it.
	exited <-chan struct{}
	// audio is the sample audio_stt input.
	audio string
}

// gone reports whether the engine's process has exited.
func (o *Options) gone() bool {
	select {
	case <-o.exited:
		return true
	default:
		return false
	}
}

func (o *Options) defaults() {
	if o.Model == "" {
		o.Model = "conformance"
	}
	if o.CallBound == 0 {
		o.CallBound = 2 * time.Minute
	}
	if o.CancelBound == 0 {
		o.CancelBound = CancelBound
	}
}

// cancelAfter is how long the cancel check lets a job run before it
// cancels it, if the job has sent no event by then.
const cancelAfter = 100 * time.Millisecond

// Check runs the engine contract's checks on e and returns their report:
//   - describe: Describe answers within the bound with a name, a version,
//     the contract version, at least one engine id, only known task kinds,
//     models only for served kinds, and a reason whenever it is not ready;
//   - ready: the engine says it is ready to serve;
//   - run KIND, for each served kind: a sample task succeeds with an output
//     or a result, or fails with a typed error (not a crash, a stall or a
//     breach of the contract) within the bound;
//   - unsupported kind: a kind the engine does not serve fails with a
//     non-retryable unsupported_kind;
//   - bad request: a task with no kind fails with a non-retryable error,
//     and the engine serves the next job;
//   - cancel: a job cancelled while it runs returns within the cancel
//     bound, and the engine serves the next job.
func Check(ctx context.Context, e plugins.Engine, opt Options) *Report {
	opt.defaults()
	r := &Report{}
	dir, err := os.MkdirTemp("", "plugin-check-")
	if err != nil {
		r.add("inputs", false, "cannot write the sample inputs: %v", err)
		return r
	}
	defer os.RemoveAll(dir)
	if opt.audio, err = writeSampleWAV(dir); err != nil {
		r.add("inputs", false, "cannot write the sample inputs: %v", err)
		return r
	}
	dctx, cancel := context.WithTimeout(ctx, opt.CallBound)
	d, err := e.Describe(dctx)
	timedOut := boundHit(ctx, dctx, err)
	cancel()
	if err != nil {
		if timedOut {
			r.add("describe", false, "Describe did not answer within %v", opt.CallBound)
		} else {
			r.add("describe", false, "Describe failed: %v", err)
		}
		return r
	}
	if problems := describeProblems(d); len(problems) > 0 {
		r.add("describe", false, "%s", strings.Join(problems, "; "))
	} else {
		r.add("describe", true, "%s %s, engines %s, kinds %s", d.Name, d.Version, strings.Join(d.Engines, ","), kindList(d.Kinds))
	}
	if !d.Ready {
		r.add("ready", false, "not ready: %s", d.NotReadyReason)
		return r
	}
	r.add("ready", true, "ready")
	var served []plugins.TaskKind
	for _, k := range d.Kinds {
		if known(k) {
			served = append(served, k)
		}
	}
	for _, k := range served {
		name := "run " + string(k)
		rec, err := runBounded(ctx, e, opt.request(k, d), opt.CallBound)
		pass, detail := judgeRun(rec, err, opt.CallBound)
		r.add(name, pass, "%s", detail)
		if opt.gone() {
			return r
		}
	}
	if kind, ok := unservedKind(d); ok {
		_, err := runBounded(ctx, e, opt.request(kind, d), opt.CallBound)
		je := plugins.AsJobError(err)
		switch {
		case err == nil:
			r.add("unsupported kind", false, "a task of kind %s, which the engine does not serve, succeeded; want a non-retryable %s error", kind, plugins.ErrUnsupported)
		case je.Kind != plugins.ErrUnsupported || je.Retryable():
			r.add("unsupported kind", false, "a task of kind %s, which the engine does not serve, failed with %s (%s); want a non-retryable %s error", kind, je.Kind, je.Message, plugins.ErrUnsupported)
		default:
			r.add("unsupported kind", true, "a task of kind %s was refused: %s", kind, je.Message)
		}
		if opt.gone() {
			return r
		}
	} else {
		r.add("unsupported kind", true, "the engine serves every kind; nothing to refuse")
	}
	if len(served) == 0 {
		return r
	}
	bad := opt.request(served[0], d)
	bad.Task = plugins.Task{}
	_, err = runBounded(ctx, e, bad, opt.CallBound)
	je := plugins.AsJobError(err)
	switch {
	case err == nil:
		r.add("bad request", false, "a task with no kind succeeded; want a non-retryable error such as %s", plugins.ErrBadInput)
	case je.Retryable():
		r.add("bad request", false, "a task with no kind failed with the retryable %s (%s); want a non-retryable error such as %s", je.Kind, je.Message, plugins.ErrBadInput)
	default:
		if pass, detail := servesNext(ctx, e, opt.request(served[0], d), opt.CallBound); !pass {
			r.add("bad request", false, "refused (%s), but then %s", je.Kind, detail)
		} else {
			r.add("bad request", true, "a task with no kind was refused as %s: %s", je.Kind, je.Message)
		}
	}
	if opt.gone() {
		return r
	}
	pass, detail := checkCancel(ctx, e, opt.request(served[0], d), opt)
	r.add("cancel", pass, "%s", detail)
	return r
}

// checkCancel cancels a job of req's kind at its first event (or after
// cancelAfter) and checks it returns within the bound and the engine serves
// the next job.
func checkCancel(ctx context.Context, e plugins.Engine, req *plugins.RunRequest, opt Options) (bool, string) {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rec := &cancellingRecorder{cancel: cancel}
	timer := time.AfterFunc(cancelAfter, cancel)
	defer timer.Stop()
	done := make(chan error, 1)
	go func() { done <- e.Run(cctx, req, rec) }()
	var err error
	select {
	case err = <-done:
	case <-time.After(opt.CancelBound):
		return false, fmt.Sprintf("a cancelled job of kind %s did not return within %v", req.Task.Kind, opt.CancelBound)
	}
	how := "returned " + errorKind(err)
	if err == nil {
		how = "finished before the cancel reached it"
	}
	if pass, detail := servesNext(ctx, e, req, opt.CallBound); !pass {
		return false, fmt.Sprintf("a cancelled job of kind %s %s, but then %s", req.Task.Kind, how, detail)
	}
	return true, fmt.Sprintf("a job of kind %s cancelled mid-run %s; the next job was served", req.Task.Kind, how)
}

// servesNext runs req and reports whether the engine still serves.
func servesNext(ctx context.Context, e plugins.Engine, req *plugins.RunRequest, bound time.Duration) (bool, string) {
	rec, err := runBounded(ctx, e, req, bound)
	pass, detail := judgeRun(rec, err, bound)
	if !pass {
		return false, "the next job: " + detail
	}
	return true, ""
}

// cancellingRecorder cancels its job at the first event.
type cancellingRecorder struct {
	Recorder
	cancel context.CancelFunc
}

func (c *cancellingRecorder) Progress(step, total uint64, unit string) error {
	c.cancel()
	return c.Recorder.Progress(step, total, unit)
}

func (c *cancellingRecorder) Log(level, message string) error {
	c.cancel()
	return c.Recorder.Log(level, message)
}

func (c *cancellingRecorder) Output(ext string, p []byte) error {
	c.cancel()
	return c.Recorder.Output(ext, p)
}

// runBounded runs req with a fresh Recorder under bound; a run that does
// not return within bound (its context cancelled, the engine deaf to it) is
// reported as errTooLong.
func runBounded(ctx context.Context, e plugins.Engine, req *plugins.RunRequest, bound time.Duration) (*Recorder, error) {
	rctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	rec := &Recorder{}
	done := make(chan error, 1)
	go func() { done <- e.Run(rctx, req, rec) }()
	select {
	case err := <-done:
		if boundHit(ctx, rctx, err) {
			return rec, errTooLong
		}
		return rec, err
	case <-time.After(bound + CancelBound):
		return rec, errTooLong
	}
}

var errTooLong = errors.New("did not finish within the bound")

// judgeRun says whether a sample job's outcome conforms.
func judgeRun(rec *Recorder, err error, bound time.Duration) (bool, string) {
	if errors.Is(err, errTooLong) {
		return false, fmt.Sprintf("the job did not finish within %v (it hangs, or ignores its deadline)", bound)
	}
	if err == nil {
		ext, out := rec.OutputBytes()
		js := rec.JSON()
		switch {
		case len(out) > 0:
			return true, fmt.Sprintf("ok: %d bytes of %s", len(out), ext)
		case js != nil:
			return true, fmt.Sprintf("ok: a %d-byte JSON result", len(js))
		}
		return false, "the job succeeded with neither an output nor a result"
	}
	je := plugins.AsJobError(err)
	switch {
	case je.Kind == plugins.ErrCrashed || je.Kind == plugins.ErrOutOfMemory || je.Kind == plugins.ErrStalled:
		return false, fmt.Sprintf("%s: %v", je.Kind, err)
	case strings.Contains(je.Message, "broke the engine contract"):
		return false, je.Message
	}
	var typed *plugins.JobError
	if !errors.As(err, &typed) {
		return false, fmt.Sprintf("untyped error: %v", err)
	}
	return true, fmt.Sprintf("ran and failed with a typed error: %s (retryable %v): %s", je.Kind, je.Retryable(), je.Message)
}

// errorKind names err's job-error kind.
func errorKind(err error) string {
	if err == nil {
		return "nil"
	}
	return string(plugins.AsJobError(err).Kind)
}

// describeProblems lists what is wrong with a Describe answer.
func describeProblems(d *plugins.Description) []string {
	var p []string
	if d.Name == "" || d.Version == "" {
		p = append(p, fmt.Sprintf("name %q version %q: both must be set", d.Name, d.Version))
	}
	if d.ContractVersion != plugins.ContractVersion {
		p = append(p, fmt.Sprintf("contract version %d, want %d", d.ContractVersion, plugins.ContractVersion))
	}
	if len(d.Engines) == 0 {
		p = append(p, "no engine ids: the supervisor could never route a job here")
	}
	if len(d.Kinds) == 0 {
		p = append(p, "no task kinds")
	}
	served := map[plugins.TaskKind]bool{}
	for _, k := range d.Kinds {
		if !known(k) {
			p = append(p, fmt.Sprintf("unknown task kind %q", k))
		}
		served[k] = true
	}
	for k := range d.Models {
		if !served[k] {
			p = append(p, fmt.Sprintf("models advertised for kind %q, which is not served", k))
		}
	}
	if !d.Ready && d.NotReadyReason == "" {
		p = append(p, "not ready and no reason given")
	}
	return p
}

func kindList(ks []plugins.TaskKind) string {
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = string(k)
	}
	return strings.Join(s, ",")
}

// request returns the sample task of kind for d.
func (o *Options) request(kind plugins.TaskKind, d *plugins.Description) *plugins.RunRequest {
	if r, ok := o.Requests[kind]; ok {
		c := *r
		return &c
	}
	req := requestFor(kind, d)
	req.Model = o.Model
	req.Files = o.Files
	if kind == plugins.KindSTT && o.audio != "" {
		req.Task.STT.InputURL = "file://" + o.audio
		req.Inputs.Audio = o.audio
	}
	return req
}

// writeSampleWAV writes the sample audio_stt input into dir: one second of
// a quiet 440 Hz tone, 16 kHz mono 16-bit PCM (what speech engines take).
func writeSampleWAV(dir string) (string, error) {
	const rate, n = 16000, 16000
	b := make([]byte, 44+2*n)
	copy(b, "RIFF")
	binary.LittleEndian.PutUint32(b[4:], uint32(36+2*n))
	copy(b[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(b[16:], 16)
	binary.LittleEndian.PutUint16(b[20:], 1) // PCM
	binary.LittleEndian.PutUint16(b[22:], 1) // mono
	binary.LittleEndian.PutUint32(b[24:], rate)
	binary.LittleEndian.PutUint32(b[28:], 2*rate)
	binary.LittleEndian.PutUint16(b[32:], 2)
	binary.LittleEndian.PutUint16(b[34:], 16)
	copy(b[36:], "data")
	binary.LittleEndian.PutUint32(b[40:], 2*n)
	for i := range n {
		v := int16(2000 * math.Sin(2*math.Pi*440*float64(i)/rate))
		binary.LittleEndian.PutUint16(b[44+2*i:], uint16(v))
	}
	path := filepath.Join(dir, "conformance.wav")
	return path, os.WriteFile(path, b, 0o644)
}

// PluginOptions tunes CheckPlugin.
type PluginOptions struct {
	Options
	// Env is the plugin's environment. (default: the allow-listed part of
	// this process's, see plugins.Env)
	Env []string
	// Args are the plugin's command-line arguments.
	Args []string
	// StartTimeout bounds the handshake. (default 10s)
	StartTimeout time.Duration
	// Stderr, if set, receives the plugin's stderr.
	Stderr io.Writer
}

// lockedBuffer is a bytes.Buffer safe for one writer and one reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]byte(nil), l.b.Bytes()...)
}

// CheckPlugin launches the plugin executable at path as the supervisor
// does and checks it: the handshake within the start-up bound, every check
// of Check, the process still alive after them, its exit on go-plugin's
// GRPCController.Shutdown (else the host waits 2 s and kills it), and
// nothing on its stdout after the handshake line (go-plugin reads that one line; a plugin that
// prints to stdout later writes into a pipe nobody reads). The plugin is
// killed before CheckPlugin returns.
func CheckPlugin(ctx context.Context, path string, opt PluginOptions) *Report {
	if opt.StartTimeout == 0 {
		opt.StartTimeout = 10 * time.Second
	}
	env := opt.Env
	if env == nil {
		env = hostEnv(nil)
	}
	r := &Report{}
	var stdout, stderr lockedBuffer
	var errOut io.Writer = &stderr
	if opt.Stderr != nil {
		errOut = io.MultiWriter(&stderr, opt.Stderr)
	}
	start := time.Now()
	p, err := plugins.Launch(plugins.LaunchConfig{
		Path: path, Args: opt.Args, Env: env, StartTimeout: opt.StartTimeout,
		Stdout: &stdout, Stderr: errOut,
	})
	if err != nil {
		detail := err.Error()
		if out := firstLines(stdout.Bytes(), 3); out != "" {
			detail += "; its stdout began " + out
		}
		if e := lastLines(stderr.Bytes(), 3); e != "" {
			detail += "; its stderr ended " + e
		}
		r.add("handshake", false, "%s", detail)
		return r
	}
	r.add("handshake", true, "gRPC with mutual TLS, contract %d, in %v", plugins.ContractVersion, time.Since(start).Round(time.Millisecond))
	defer p.Kill()
	opt.exited = p.Exited()
	rep := Check(ctx, p, opt.Options)
	r.Results = append(r.Results, rep.Results...)
	alive := false
	select {
	case <-p.Exited():
		r.add("alive", false, "the process exited during the checks (%s); the checks after that were not run", p.ExitStatus())
	default:
		alive = true
		r.add("alive", true, "the process lived through every check")
	}
	if alive {
		// Kill asks the plugin to exit (GRPCController.Shutdown), waits
		// 2 s for it, then kills its process group.
		stopStart := time.Now()
		p.Kill()
		took := time.Since(stopStart).Round(time.Millisecond)
		if st := p.ExitStatus(); st.Signal != "" {
			r.add("shutdown", false, "the process did not exit on GRPCController.Shutdown and was killed after %v (%s): every stop of this plugin costs 2 s", took, st)
		} else {
			r.add("shutdown", true, "exited on GRPCController.Shutdown in %v (%s)", took, st)
		}
	}
	p.Kill() // go-plugin's stdout reader has read everything once Kill returns
	out := stdout.Bytes()
	_, after, _ := bytes.Cut(out, []byte("\n"))
	if len(after) > 0 {
		r.add("stdout", false, "%d bytes on stdout after the handshake line (stdout is for the handshake line only; log to stderr): %s", len(after), firstLines(after, 3))
	} else {
		r.add("stdout", true, "nothing after the handshake line")
	}
	return r
}

// lastLines quotes up to n last lines of b, cut to 300 bytes.
func lastLines(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	s := string(bytes.Join(lines, []byte(" | ")))
	if s == "" {
		return ""
	}
	if len(s) > 300 {
		s = "…" + s[len(s)-300:]
	}
	return fmt.Sprintf("%q", s)
}

// firstLines quotes up to n lines of b, cut to 200 bytes.
func firstLines(b []byte, n int) string {
	if len(b) == 0 {
		return ""
	}
	lines := bytes.SplitN(b, []byte("\n"), n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	s := string(bytes.Join(lines, []byte(" | ")))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return fmt.Sprintf("%q", s)
}

// boundHit reports whether a call under bounded (a context with a deadline
// made from parent) ended by that deadline rather than by parent: bounded
// is done, or err says a deadline passed. The second matters over gRPC: the
// plugin enforces the deadline it was sent and can answer a moment before
// bounded's own timer fires, with DeadlineExceeded or, from a plugin that
// wraps every error alike, with anything else: an error that arrives once
// the deadline has passed counts as the bound's too.
func boundHit(parent, bounded context.Context, err error) bool {
	if parent.Err() != nil {
		return false
	}
	if bounded.Err() != nil || errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded {
		return true
	}
	dl, ok := bounded.Deadline()
	return err != nil && ok && !time.Now().Before(dl)
}
